//! GroupNorm (+ ReLU) and weight standardization, fused forward and backward.

use candle_core::backend::BackendStorage;
use candle_core::Tensor;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape};
use rayon::prelude::*;

use crate::conv::{with_three, with_two};
use crate::float::{dot, filled, sum, sum_sq_dev, vectorized, zeroed, Float};
use std::mem::MaybeUninit;
use std::sync::Mutex;

/// Mean and `1 / sqrt(biased variance + eps)` of `xs`, two-pass for accuracy.
#[inline(always)]
fn moments<T: Float>(xs: &[T], eps: f64) -> (f64, f64) {
    let len = xs.len().max(1) as f64;
    let mean = sum(xs) / len;
    let var = sum_sq_dev(xs, mean) / len;
    (mean, 1.0 / (var + eps).sqrt())
}

// ---------------------------------------------------------------------------------------------
// GroupNorm

/// `(x [N, C, ...], weight [C], bias [C]) → relu?((x − μ_g) / σ_g · weight + bias)`.
struct GroupNorm {
    groups: usize,
    eps: f64,
    relu: bool,
    /// `(mean, rstd)` of each (sample, group), kept by the forward pass for the backward one.
    stats: Mutex<Vec<(f64, f64)>>,
}

/// `(x, y, grad y) → [grad x (N·C·S values), grad weight (C), grad bias (C)]` flattened, with
/// the GroupNorm's scale held here (it is small) since a custom op takes three tensors.
struct GroupNormGrad {
    groups: usize,
    eps: f64,
    relu: bool,
    weight: Vec<f64>,
    /// The forward pass's statistics; recomputed from the input when absent.
    stats: Vec<(f64, f64)>,
}

/// `[N, C, S...]` as `(N, C, S)`, contiguous.
fn dims_ncs(layout: &Layout, op: &str, what: &str) -> Result<(usize, usize, usize)> {
    if !layout.is_contiguous() {
        candle_core::bail!("{op}: {what} must be contiguous")
    }
    match layout.dims() {
        [n, c, rest @ ..] => Ok((*n, *c, rest.iter().product())),
        dims => candle_core::bail!("{op}: expected {what} of shape [N, C, ...], found {dims:?}"),
    }
}

fn group_norm_slices<T: Float>(
    x: &[T],
    (n, c, s): (usize, usize, usize),
    weight: &[T],
    bias: &[T],
    op: &GroupNorm,
) -> Vec<T> {
    let cpg = c / op.groups;
    if n * c * s == 0 {
        return Vec::new();
    }
    let mut stats = vec![(0.0, 0.0); n * op.groups];
    // Every output element is written once below.
    let out = filled(n * c * s, |out| {
        out.par_chunks_mut(cpg * s).zip(stats.par_iter_mut()).enumerate().for_each(
            |(ng, (dst, st))| {
                let src = &x[ng * cpg * s..(ng + 1) * cpg * s];
                let channels = (ng % op.groups) * cpg..(ng % op.groups + 1) * cpg;
                let (w, b) = (&weight[channels.clone()], &bias[channels]);
                *st = if op.relu {
                    norm_group::<T, true>(src, dst, w, b, s, op.eps)
                } else {
                    norm_group::<T, false>(src, dst, w, b, s, op.eps)
                };
            },
        )
    });
    *op.stats.lock().unwrap_or_else(|e| e.into_inner()) = stats;
    out
}

vectorized! {
    /// One (sample, group) of the forward pass: its statistics, then every channel's
    /// `relu?(x · scale + shift)` into `dst`; returns `(mean, rstd)`.
    fn norm_group<T: Float, const RELU: bool>(
        src: &[T],
        dst: &mut [MaybeUninit<T>],
        weight: &[T],
        bias: &[T],
        s: usize,
        eps: f64,
    ) -> (f64, f64) {
        let (mean, rstd) = moments(src, eps);
        let channels = src.chunks_exact(s).zip(dst.chunks_exact_mut(s));
        for ((src, dst), (&w, &b)) in channels.zip(weight.iter().zip(bias)) {
            let scale = rstd * w.to_f64();
            let shift = b.to_f64() - mean * scale;
            let (scale, shift) = (T::from_f64(scale), T::from_f64(shift));
            for (d, &v) in dst.iter_mut().zip(src) {
                let y = v * scale + shift;
                d.write(if RELU && !(y > T::ZERO) { T::ZERO } else { y });
            }
        }
        (mean, rstd)
    }
}

fn group_norm_grad_slices<T: Float>(
    x: &[T],
    y: &[T],
    gy: &[T],
    (n, c, s): (usize, usize, usize),
    op: &GroupNormGrad,
) -> Vec<T> {
    let cpg = c / op.groups;
    let total = n * c * s;
    let mut out = zeroed(total + 2 * c);
    if total == 0 {
        return out;
    }
    let (dx, rest) = out.split_at_mut(total);
    // Per-sample partial sums of the affine gradients, [N, C] each; summed over N at the end.
    let mut partial = vec![T::ZERO; 2 * n * c];
    let (pw, pb) = partial.split_at_mut(n * c);

    dx.par_chunks_mut(cpg * s)
        .zip(pw.par_chunks_mut(cpg))
        .zip(pb.par_chunks_mut(cpg))
        .enumerate()
        .for_each(|(ng, ((dst, dw), db))| {
            let range = ng * cpg * s..(ng + 1) * cpg * s;
            let (x, y, gy) = (&x[range.clone()], &y[range.clone()], &gy[range]);
            let stats = op.stats.get(ng).copied().unwrap_or_else(|| moments(x, op.eps));
            let first = (ng % op.groups) * cpg;
            let gamma = &op.weight[first..first + cpg];
            let grads = GroupGrads { dx: dst, dw, db };
            if op.relu {
                norm_grad_group::<T, true>(x, y, gy, grads, gamma, s, stats)
            } else {
                norm_grad_group::<T, false>(x, y, gy, grads, gamma, s, stats)
            }
        });

    // Σ over the batch, serially: N·C values.
    let (rw, rb) = rest.split_at_mut(c);
    for i in 0..n {
        for j in 0..c {
            rw[j] += pw[i * c + j];
            rb[j] += pb[i * c + j];
        }
    }
    out
}

/// Where [`norm_grad_group`] writes: the group's input gradient and its channels' affine
/// gradients.
struct GroupGrads<'a, T> {
    dx: &'a mut [T],
    dw: &'a mut [T],
    db: &'a mut [T],
}

vectorized! {
    /// One (sample, group) of the backward pass, with `gamma` the group's scales and
    /// `(mean, rstd)` its forward statistics.
    fn norm_grad_group<T: Float, const RELU: bool>(
        x: &[T],
        y: &[T],
        gy: &[T],
        grads: GroupGrads<'_, T>,
        gamma: &[f64],
        s: usize,
        stats: (f64, f64),
    ) -> () {
        let (mean, rstd) = stats;
        let m = (gamma.len() * s) as f64;
        // Per channel: g, the gradient through the ReLU, into dx (overwritten below), then
        // Σ g and Σ g·x̂ from it while it is in cache.
        let (mut a, mut b) = (0.0, 0.0);
        let channels = grads.dx.chunks_exact_mut(s).zip(x.chunks_exact(s));
        for (j, ((dst, x), (y, gy))) in
            channels.zip(y.chunks_exact(s).zip(gy.chunks_exact(s))).enumerate()
        {
            for ((d, &yv), &g) in dst.iter_mut().zip(y).zip(gy) {
                *d = if RELU && !(yv > T::ZERO) { T::ZERO } else { g };
            }
            let sg = sum(dst);
            let sgx = (dot(dst, x) - mean * sg) * rstd;
            grads.dw[j] = T::from_f64(sgx);
            grads.db[j] = T::from_f64(sg);
            a += gamma[j] * sg;
            b += gamma[j] * sgx;
        }

        // dx = rstd·(γ·g − a/M − x̂·b/M), with x̂ = (x − μ)·rstd.
        let k_x = T::from_f64(-rstd * rstd * b / m);
        let k_0 = T::from_f64(-rstd * a / m + mean * rstd * rstd * b / m);
        let channels = grads.dx.chunks_exact_mut(s).zip(x.chunks_exact(s));
        for ((dst, x), &gamma) in channels.zip(gamma) {
            let k_g = T::from_f64(rstd * gamma);
            for (d, &xv) in dst.iter_mut().zip(x) {
                *d = k_g * *d + k_x * xv + k_0;
            }
        }
    }
}

fn slice1<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    len: usize,
    op: &str,
) -> Result<&'a CpuStorage> {
    if !layout.is_contiguous() || layout.shape().elem_count() != len {
        candle_core::bail!(
            "{op}: expected a contiguous vector of {len} values, found {:?}",
            layout.dims()
        )
    }
    Ok(storage)
}

impl CustomOp3 for GroupNorm {
    fn name(&self) -> &'static str {
        "group-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = dims_ncs(l1, "group-norm", "input")?;
        let c = dims.1;
        slice1(s2, l2, c, "group-norm weight")?;
        slice1(s3, l3, c, "group-norm bias")?;
        let out = with_three!("group-norm", s1, l1, s2, l2, s3, l3, |x, w, b| {
            group_norm_slices(x, dims, &w[..c], &b[..c], self)
        });
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let stats = std::mem::take(&mut *self.stats.lock().unwrap_or_else(|e| e.into_inner()));
        let spec = GroupNormSpec { groups: self.groups, eps: self.eps, relu: self.relu };
        let (grad_x, grad_w, grad_b) =
            group_norm_grads(x, res, grad, weight, spec, GroupNormStats(stats))?;
        Ok((Some(grad_x), Some(grad_w), Some(grad_b)))
    }
}

/// `(grad x, grad weight, grad bias)` of a GroupNorm with input `x` and output `y`, from the
/// gradient `grad` of its output. Records no graph.
fn group_norm_grads(
    x: &Tensor,
    y: &Tensor,
    grad: &Tensor,
    weight: &Tensor,
    spec: GroupNormSpec,
    stats: GroupNormStats,
) -> Result<(Tensor, Tensor, Tensor)> {
    let c = weight.elem_count();
    let op = GroupNormGrad {
        groups: spec.groups,
        eps: spec.eps,
        relu: spec.relu,
        weight: weight.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?,
        stats: stats.0,
    };
    let packed = x.contiguous()?.apply_op3_no_bwd(&y.contiguous()?, &grad.contiguous()?, &op)?;
    let total = x.elem_count();
    let grad_x = packed.narrow(0, 0, total)?.reshape(x.shape())?;
    let grad_w = packed.narrow(0, total, c)?.reshape(weight.shape())?;
    let grad_b = packed.narrow(0, total + c, c)?.reshape(weight.shape())?;
    Ok((grad_x, grad_w, grad_b))
}

/// The settings of one GroupNorm (+ ReLU), for [`group_norm_forward`] and
/// [`group_norm_backward`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupNormSpec {
    /// Number of groups; must divide the channels.
    pub groups: usize,
    /// Added to the variance.
    pub eps: f64,
    /// Whether a ReLU follows the affine transform.
    pub relu: bool,
}

/// What [`group_norm_forward`] keeps for [`group_norm_backward`]: the mean and reciprocal
/// standard deviation of every (sample, group).
#[derive(Debug, Clone, Default)]
pub struct GroupNormStats(Vec<(f64, f64)>);

/// [`group_norm`] without a gradient graph; also returns the statistics its backward pass
/// needs. CPU `f32`/`f64` only.
pub fn group_norm_forward(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    spec: GroupNormSpec,
) -> Result<(Tensor, GroupNormStats)> {
    let c = x.dim(1)?;
    if spec.groups == 0 || c % spec.groups != 0 {
        candle_core::bail!("group_norm: {c} channels do not split into {} groups", spec.groups)
    }
    let op = GroupNorm {
        groups: spec.groups,
        eps: spec.eps,
        relu: spec.relu,
        stats: Mutex::new(Vec::new()),
    };
    let y = x.contiguous()?.apply_op3_no_bwd(&weight.contiguous()?, &bias.contiguous()?, &op)?;
    let stats = std::mem::take(&mut *op.stats.lock().unwrap_or_else(|e| e.into_inner()));
    Ok((y, GroupNormStats(stats)))
}

/// Gradients of [`group_norm_forward`] (input `x`, output `y`, `stats` from that call) from
/// the gradient `grad` of its output: `(grad x, grad weight, grad bias)`. Records no graph.
pub fn group_norm_backward(
    x: &Tensor,
    y: &Tensor,
    grad: &Tensor,
    weight: &Tensor,
    spec: GroupNormSpec,
    stats: GroupNormStats,
) -> Result<(Tensor, Tensor, Tensor)> {
    if x.dims() != y.dims() || x.dims() != grad.dims() {
        candle_core::bail!(
            "group_norm_backward: input {:?}, output {:?} and gradient {:?} must have one shape",
            x.dims(),
            y.dims(),
            grad.dims()
        )
    }
    group_norm_grads(x, y, grad, weight, spec, stats)
}

impl CustomOp3 for GroupNormGrad {
    fn name(&self) -> &'static str {
        "group-norm-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = dims_ncs(l1, "group-norm-grad", "input")?;
        if l2.dims() != l1.dims() || l3.dims() != l1.dims() {
            candle_core::bail!(
                "group-norm-grad: output {:?} and gradient {:?} must match input {:?}",
                l2.dims(),
                l3.dims(),
                l1.dims()
            )
        }
        dims_ncs(l2, "group-norm-grad", "output")?;
        dims_ncs(l3, "group-norm-grad", "gradient")?;
        let out = with_three!("group-norm-grad", s1, l1, s2, l2, s3, l3, |x, y, g| {
            group_norm_grad_slices(x, y, g, dims, self)
        });
        let len = dims.0 * dims.1 * dims.2 + 2 * dims.1;
        Ok((out, Shape::from(len)))
    }
}

/// GroupNorm of `x` `[N, C, ...]` over `groups` groups with per-channel affine `weight` and
/// `bias`, followed by a ReLU when `relu`. Differentiable in all three tensors.
///
/// CPU `f32`/`f64` only (see [`crate::supports`]).
pub fn group_norm(
    x: &Tensor,
    groups: usize,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<Tensor> {
    let c = x.dim(1)?;
    if groups == 0 || c % groups != 0 {
        candle_core::bail!("group_norm: {c} channels do not split into {groups} groups")
    }
    let op = GroupNorm { groups, eps, relu, stats: Mutex::new(Vec::new()) };
    x.contiguous()?.apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)
}

// ---------------------------------------------------------------------------------------------
// Weight standardization

/// `w [O, ...] → (w − μ_o) / sqrt(σ²_o + eps)` per output channel.
struct WeightStd {
    eps: f64,
}

/// `(w, grad ŵ) → grad w`.
struct WeightStdGrad {
    eps: f64,
}

fn rows(layout: &Layout, op: &str) -> Result<(usize, usize)> {
    if !layout.is_contiguous() {
        candle_core::bail!("{op}: weight must be contiguous")
    }
    match layout.dims() {
        [o, rest @ ..] if !rest.is_empty() => Ok((*o, rest.iter().product())),
        dims => candle_core::bail!("{op}: expected a weight of shape [O, ...], found {dims:?}"),
    }
}

fn standardize_forward<T: Float>(w: &[T], (o, k): (usize, usize), eps: f64) -> Vec<T> {
    let mut out = vec![T::ZERO; o * k];
    out.par_chunks_mut(k.max(1)).enumerate().for_each(|(r, dst)| {
        let src = &w[r * k..(r + 1) * k];
        let (mean, rstd) = moments(src, eps);
        let (scale, shift) = (T::from_f64(rstd), T::from_f64(-mean * rstd));
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = v * scale + shift;
        }
    });
    out
}

fn standardize_backward<T: Float>(w: &[T], g: &[T], (o, k): (usize, usize), eps: f64) -> Vec<T> {
    let mut out = vec![T::ZERO; o * k];
    out.par_chunks_mut(k.max(1)).enumerate().for_each(|(r, dst)| {
        let (w, g) = (&w[r * k..(r + 1) * k], &g[r * k..(r + 1) * k]);
        let (mean, rstd) = moments(w, eps);
        let sg = sum(g);
        let sgw: f64 = w.iter().zip(g).map(|(&w, &g)| g.to_f64() * w.to_f64()).sum();
        let sgx = (sgw - mean * sg) * rstd;
        let len = k as f64;
        // dw = rstd·(g − Σg/K − ŵ·Σ(g·ŵ)/K), with ŵ = (w − μ)·rstd.
        let k_g = T::from_f64(rstd);
        let k_w = T::from_f64(-rstd * rstd * sgx / len);
        let k_0 = T::from_f64(-rstd * sg / len + mean * rstd * rstd * sgx / len);
        for ((d, &wv), &gv) in dst.iter_mut().zip(w).zip(g) {
            *d = k_g * gv + k_w * wv + k_0;
        }
    });
    out
}

impl CustomOp1 for WeightStd {
    fn name(&self) -> &'static str {
        "standardize-weight"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = rows(layout, "standardize-weight")?;
        let start = layout.start_offset();
        let out = match storage {
            CpuStorage::F32(w) => CpuStorage::F32(standardize_forward(&w[start..], dims, self.eps)),
            CpuStorage::F64(w) => CpuStorage::F64(standardize_forward(&w[start..], dims, self.eps)),
            s => candle_core::bail!("standardize-weight: unsupported dtype {:?}", s.dtype()),
        };
        Ok((out, layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let op = WeightStdGrad { eps: self.eps };
        Ok(Some(arg.apply_op2_no_bwd(&grad.contiguous()?, &op)?))
    }
}

impl CustomOp2 for WeightStdGrad {
    fn name(&self) -> &'static str {
        "standardize-weight-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = rows(l1, "standardize-weight-grad")?;
        if l2.dims() != l1.dims() || !l2.is_contiguous() {
            candle_core::bail!(
                "standardize-weight-grad: gradient {:?} must match weight {:?}",
                l2.dims(),
                l1.dims()
            )
        }
        let eps = self.eps;
        let out = with_two!("standardize-weight-grad", s1, l1, s2, l2, |w, g| {
            standardize_backward(w, g, dims, eps)
        });
        Ok((out, l1.shape().clone()))
    }
}

/// Weight standardization of `weight` `[O, ...]`: per output channel, subtract the mean and
/// divide by `sqrt(biased variance + eps)`. Differentiable.
///
/// CPU `f32`/`f64` only (see [`crate::supports`]).
pub fn standardize_weight(weight: &Tensor, eps: f64) -> Result<Tensor> {
    weight.contiguous()?.apply_op1(WeightStd { eps })
}

/// [`standardize_weight`] without a gradient graph.
pub fn standardize_weight_forward(weight: &Tensor, eps: f64) -> Result<Tensor> {
    weight.contiguous()?.apply_op1_no_bwd(&WeightStd { eps })
}

/// Gradient of the raw `weight` from the gradient `grad` of its standardized form.
pub fn standardize_weight_backward(weight: &Tensor, grad: &Tensor, eps: f64) -> Result<Tensor> {
    weight.contiguous()?.apply_op2_no_bwd(&grad.contiguous()?, &WeightStdGrad { eps })
}
