//! Differentiable building blocks that candle lacks or gets wrong on the CPU.
//!
//! - [`conv2d`]: convolution. On the CPU (f32/f64) it is `funmatch-kernels`' GEMM
//!   convolution, whose own backward computes the input gradient with a GEMM + `col2im` and
//!   the weight gradient with a GEMM over `im2col` columns (candle's conv backward goes through
//!   a slow direct transposed convolution and fails on some stride-2 shapes).
//! - [`max_pool2d`]: max pooling with padding and a backward pass (candle has one only when
//!   kernel == stride, and BiT's stem pool is 3×3 stride 2).
//! - [`group_norm`], [`group_norm_relu`] and [`standardize_weight`]: fused CPU kernels with
//!   exact backward passes; elsewhere chains of candle ops, which differentiate too.
//!
//! The fast kernels run on the CPU for `f32` and `f64`; on other devices every op falls back
//! to candle's kernels (forward is exact there too).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

pub use funmatch_kernels::{Pad4, Window};

/// Element types the CPU kernels support.
trait Float: Copy + Send + Sync + std::ops::AddAssign + PartialOrd + 'static {
    const ZERO: Self;
    fn from_f32(v: f32) -> Self;
}

impl Float for f32 {
    const ZERO: Self = 0.0;
    fn from_f32(v: f32) -> Self {
        v
    }
}

impl Float for f64 {
    const ZERO: Self = 0.0;
    fn from_f32(v: f32) -> Self {
        v as f64
    }
}

fn contiguous_dims4(layout: &Layout, op: &str) -> Result<(usize, usize, usize, usize)> {
    if !layout.is_contiguous() {
        candle_core::bail!("{op}: input must be contiguous")
    }
    match layout.dims() {
        &[n, c, h, w] => Ok((n, c, h, w)),
        dims => candle_core::bail!("{op}: expected a 4-D [N, C, H, W] input, found {dims:?}"),
    }
}

fn uses_custom_kernels(t: &Tensor) -> bool {
    funmatch_kernels::supports(t)
}

/// 2-D convolution without bias, `x` `[N, C, H, W]`, `weight` `[O, C, kh, kw]`.
///
/// Differentiable in both arguments for any stride and any (asymmetric) padding.
pub fn conv2d(x: &Tensor, weight: &Tensor, stride: usize, pad: Pad4) -> Result<Tensor> {
    let (_, c, h, w) = x.dims4()?;
    let (_, wc, kh, kw) = weight.dims4()?;
    if wc != c {
        candle_core::bail!(
            "conv2d: input has {c} channels, weight {:?} expects {wc}",
            weight.dims()
        )
    }
    let window = Window { kernel: (kh, kw), stride: (stride, stride), pad };
    window.output_size(h, w)?;

    if uses_custom_kernels(x) && x.dtype() == weight.dtype() {
        return funmatch_kernels::conv2d(x, weight, stride, pad);
    }
    conv2d_candle(x, weight, window)
}

/// candle's own convolution, for devices and dtypes our kernels do not cover.
fn conv2d_candle(x: &Tensor, weight: &Tensor, window: Window) -> Result<Tensor> {
    let (t, b, l, r) = window.pad;
    let x = x.pad_with_zeros(2, t, b)?.pad_with_zeros(3, l, r)?;
    x.conv2d(weight, 0, window.stride.0, 1, 1)
}

// ---------------------------------------------------------------------------------------------
// Max pooling

/// Max pooling over a padded window; padded cells hold `pad_value`.
struct MaxPool {
    window: Window,
    pad_value: f32,
}

/// Gradient of [`MaxPool`] with respect to its input: each output's gradient goes to the
/// first input cell (in scan order) that holds the window's maximum; none goes to padding.
struct MaxPoolGrad {
    window: Window,
    pad_value: f32,
}

/// For each output cell, the flat index of the winning input cell within its plane, or
/// `usize::MAX` when the padding won.
fn max_pool_argmax<T: Float>(
    x: &[T],
    dims: (usize, usize, usize, usize),
    win: Window,
    pad_value: T,
) -> Result<(Vec<T>, Vec<usize>)> {
    let (n, c, h, w) = dims;
    let (ho, wo) = win.output_size(h, w)?;
    let (kh, kw) = win.kernel;
    let (sh, sw) = win.stride;
    let (top, _, left, _) = win.pad;
    let mut values = vec![T::ZERO; n * c * ho * wo];
    let mut argmax = vec![usize::MAX; n * c * ho * wo];

    values.par_chunks_mut(ho * wo).zip(argmax.par_chunks_mut(ho * wo)).enumerate().for_each(
        |(nc, (vals, args))| {
            let src = &x[nc * h * w..(nc + 1) * h * w];
            for oy in 0..ho {
                for ox in 0..wo {
                    let (mut best, mut best_at) = (None::<T>, usize::MAX);
                    for ki in 0..kh {
                        let iy = (oy * sh + ki) as isize - top as isize;
                        for kj in 0..kw {
                            let ix = (ox * sw + kj) as isize - left as isize;
                            let inside = iy >= 0 && iy < h as isize && ix >= 0 && ix < w as isize;
                            let (v, at) = if inside {
                                let at = iy as usize * w + ix as usize;
                                (src[at], at)
                            } else {
                                (pad_value, usize::MAX)
                            };
                            // NaN wins, so that a NaN upstream is not hidden by the pool.
                            let better = match best {
                                None => true,
                                Some(b) => v > b || (v != v && b == b),
                            };
                            if better {
                                best = Some(v);
                                best_at = at;
                            }
                        }
                    }
                    vals[oy * wo + ox] = best.unwrap_or(pad_value);
                    args[oy * wo + ox] = best_at;
                }
            }
        },
    );
    Ok((values, argmax))
}

fn max_pool_grad<T: Float>(
    x: &[T],
    grad: &[T],
    dims: (usize, usize, usize, usize),
    win: Window,
    pad_value: T,
) -> Result<Vec<T>> {
    let (_, _, h, w) = dims;
    let (ho, wo) = win.output_size(h, w)?;
    let (_, argmax) = max_pool_argmax(x, dims, win, pad_value)?;
    let mut out = vec![T::ZERO; x.len()];
    out.par_chunks_mut(h * w).enumerate().for_each(|(nc, dst)| {
        let args = &argmax[nc * ho * wo..(nc + 1) * ho * wo];
        let grads = &grad[nc * ho * wo..(nc + 1) * ho * wo];
        for (&at, &g) in args.iter().zip(grads) {
            if at != usize::MAX {
                dst[at] += g;
            }
        }
    });
    Ok(out)
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "max-pool2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = contiguous_dims4(layout, "max-pool2d")?;
        let (ho, wo) = self.window.output_size(dims.2, dims.3)?;
        let start = layout.start_offset();
        let out = match storage {
            CpuStorage::F32(x) => {
                let pad = self.pad_value;
                CpuStorage::F32(max_pool_argmax(&x[start..], dims, self.window, pad)?.0)
            }
            CpuStorage::F64(x) => {
                let pad = f64::from_f32(self.pad_value);
                CpuStorage::F64(max_pool_argmax(&x[start..], dims, self.window, pad)?.0)
            }
            s => candle_core::bail!("max-pool2d: unsupported dtype {:?}", s.dtype()),
        };
        Ok((out, Shape::from((dims.0, dims.1, ho, wo))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let op = MaxPoolGrad { window: self.window, pad_value: self.pad_value };
        Ok(Some(arg.contiguous()?.apply_op2_no_bwd(&grad.contiguous()?, &op)?))
    }
}

impl CustomOp2 for MaxPoolGrad {
    fn name(&self) -> &'static str {
        "max-pool2d-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = contiguous_dims4(l1, "max-pool2d-grad")?;
        contiguous_dims4(l2, "max-pool2d-grad")?;
        let (o1, o2) = (l1.start_offset(), l2.start_offset());
        let out = match (s1, s2) {
            (CpuStorage::F32(x), CpuStorage::F32(g)) => {
                let pad = self.pad_value;
                CpuStorage::F32(max_pool_grad(&x[o1..], &g[o2..], dims, self.window, pad)?)
            }
            (CpuStorage::F64(x), CpuStorage::F64(g)) => {
                let pad = f64::from_f32(self.pad_value);
                CpuStorage::F64(max_pool_grad(&x[o1..], &g[o2..], dims, self.window, pad)?)
            }
            (s, _) => candle_core::bail!("max-pool2d-grad: unsupported dtype {:?}", s.dtype()),
        };
        Ok((out, l1.shape().clone()))
    }
}

/// Max pooling of `x` `[N, C, H, W]` with a square `kernel`, `stride` and padding filled with
/// `pad_value` (BiT pads its stem pool with zeros; "SAME" pools pad with −∞).
pub fn max_pool2d(
    x: &Tensor,
    kernel: usize,
    stride: usize,
    pad: Pad4,
    pad_value: f32,
) -> Result<Tensor> {
    let window = Window { kernel: (kernel, kernel), stride: (stride, stride), pad };
    if uses_custom_kernels(x) {
        return x.contiguous()?.apply_op1(MaxPool { window, pad_value });
    }

    // Other devices: pad explicitly, then candle's pool (no backward when kernel != stride).
    let (t, b, l, r) = pad;
    let padded = if pad_value == 0.0 {
        x.pad_with_zeros(2, t, b)?.pad_with_zeros(3, l, r)?
    } else {
        pad_with_value(x, pad, pad_value)?
    };
    padded.max_pool2d_with_stride(kernel, stride)
}

fn pad_with_value(x: &Tensor, pad: Pad4, value: f32) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (t, b, l, r) = pad;
    let fill = |rows: usize, cols: usize| {
        Tensor::full(value, (n, c, rows, cols), x.device())?.to_dtype(x.dtype())
    };
    let mut parts = Vec::new();
    if l > 0 {
        parts.push(fill(h, l)?);
    }
    parts.push(x.clone());
    if r > 0 {
        parts.push(fill(h, r)?);
    }
    let x = Tensor::cat(&parts, 3)?;
    let wp = w + l + r;
    let mut parts = Vec::new();
    if t > 0 {
        parts.push(fill(t, wp)?);
    }
    parts.push(x);
    if b > 0 {
        parts.push(fill(b, wp)?);
    }
    Tensor::cat(&parts, 2)
}

// ---------------------------------------------------------------------------------------------
// Normalisation

/// Weight standardization: per output channel, subtract the mean and divide by
/// `sqrt(biased variance + eps)` over (in, kh, kw).
pub fn standardize_weight(weight: &Tensor, eps: f64) -> Result<Tensor> {
    if uses_custom_kernels(weight) {
        return funmatch_kernels::standardize_weight(weight, eps);
    }
    let dims = weight.dims().to_vec();
    let flat = weight.flatten_from(1)?;
    let mean = flat.mean_keepdim(1)?;
    let centred = flat.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(1)?;
    centred.broadcast_div(&(var + eps)?.sqrt()?)?.reshape(dims)
}

/// Group normalisation of `x` `[N, C, H, W]` with per-channel affine `weight` and `bias`.
pub fn group_norm(
    x: &Tensor,
    groups: usize,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    if fused_norm_applies(x, weight, bias) {
        return funmatch_kernels::group_norm(x, groups, weight, bias, eps, false);
    }
    group_norm_candle(x, groups, weight, bias, eps)
}

/// [`group_norm`] followed by ReLU; one fused pass (and one fused backward) on the CPU.
pub fn group_norm_relu(
    x: &Tensor,
    groups: usize,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    if fused_norm_applies(x, weight, bias) {
        return funmatch_kernels::group_norm(x, groups, weight, bias, eps, true);
    }
    group_norm_candle(x, groups, weight, bias, eps)?.relu()
}

fn fused_norm_applies(x: &Tensor, weight: &Tensor, bias: &Tensor) -> bool {
    uses_custom_kernels(x) && weight.dtype() == x.dtype() && bias.dtype() == x.dtype()
}

/// GroupNorm as a chain of candle ops, for devices and dtypes the fused kernel does not cover.
fn group_norm_candle(
    x: &Tensor,
    groups: usize,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    if c % groups != 0 {
        candle_core::bail!("group_norm: {c} channels do not split into {groups} groups")
    }
    let grouped = x.reshape((n, groups, (c / groups) * h * w))?;
    let mean = grouped.mean_keepdim(D::Minus1)?;
    let centred = grouped.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centred.broadcast_div(&(var + eps)?.sqrt()?)?.reshape((n, c, h, w))?;
    normed
        .broadcast_mul(&weight.reshape((1, c, 1, 1))?)?
        .broadcast_add(&bias.reshape((1, c, 1, 1))?)
}
