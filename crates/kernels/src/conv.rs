//! Convolution as GEMMs, with its input and weight gradients.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::float::{filled, zeroed, Float};
use crate::gemm::{matmul, matmul_into, Mat};

/// Padding of the two spatial dimensions: `(top, bottom, left, right)`.
pub type Pad4 = (usize, usize, usize, usize);

/// Geometry of a sliding window over an `[N, C, H, W]` input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Kernel height and width.
    pub kernel: (usize, usize),
    /// Vertical and horizontal stride.
    pub stride: (usize, usize),
    /// Zero padding around the input.
    pub pad: Pad4,
}

impl Window {
    /// Output height and width for an input of `h`×`w`.
    pub fn output_size(&self, h: usize, w: usize) -> Result<(usize, usize)> {
        let (kh, kw) = self.kernel;
        let (t, b, l, r) = self.pad;
        let (ph, pw) = (h + t + b, w + l + r);
        if ph < kh || pw < kw {
            candle_core::bail!(
                "window {kh}x{kw} does not fit a padded input of {ph}x{pw} (input {h}x{w})"
            )
        }
        if self.stride.0 == 0 || self.stride.1 == 0 {
            candle_core::bail!("window stride must be positive, found {:?}", self.stride)
        }
        Ok(((ph - kh) / self.stride.0 + 1, (pw - kw) / self.stride.1 + 1))
    }

    /// Whether the columns of an input are the input itself (1×1, stride 1, no padding).
    fn is_pointwise(&self) -> bool {
        self.kernel == (1, 1) && self.stride == (1, 1) && self.pad == (0, 0, 0, 0)
    }
}

/// Sizes of one convolution, derived once from checked shapes.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    ho: usize,
    wo: usize,
    window: Window,
}

impl Geometry {
    /// Rows of the column matrix: `C·kh·kw`.
    fn k(&self) -> usize {
        self.c * self.window.kernel.0 * self.window.kernel.1
    }

    /// Output positions per sample.
    fn p(&self) -> usize {
        self.ho * self.wo
    }

    /// Samples run in parallel when there are enough for every thread; otherwise each GEMM
    /// parallelises internally.
    fn threads_over_batch(&self) -> Option<usize> {
        let threads = rayon::current_num_threads();
        (self.n >= threads && threads > 1).then(|| self.n.div_ceil(threads))
    }
}

/// One sample `[C, H, W]` → columns `[C·kh·kw, Ho·Wo]` (zeros where the window hits padding).
fn im2col<T: Float>(x: &[T], g: &Geometry, cols: &mut [T]) {
    let (kh, kw) = g.window.kernel;
    let (sh, sw) = g.window.stride;
    let (top, _, left, _) = g.window.pad;
    let (h, w, ho, wo) = (g.h, g.w, g.ho, g.wo);
    let plane = ho * wo;
    // Stride 1 with the output as wide as the input ("same" padding along x): each row of
    // the columns is the plane shifted by (ki − top, kj − left), so one copy of the flat
    // plane does it, with the columns that wrapped round from the next or previous image row
    // zeroed after.
    let shifted = sh == 1 && sw == 1 && wo == w;
    for ci in 0..g.c {
        let src = &x[ci * h * w..(ci + 1) * h * w];
        for ki in 0..kh {
            for kj in 0..kw {
                let r = (ci * kh + ki) * kw + kj;
                let row = &mut cols[r * plane..(r + 1) * plane];
                if shifted {
                    copy_shifted(
                        src,
                        row,
                        (h, w, ho),
                        ki as isize - top as isize,
                        kj as isize - left as isize,
                    );
                    continue;
                }
                // Output columns whose input column lies inside the image: ox in [lo, hi).
                let lo = left.saturating_sub(kj).div_ceil(sw).min(wo);
                let hi = ((w + left).saturating_sub(kj)).div_ceil(sw).clamp(lo, wo);
                for oy in 0..ho {
                    let dst = &mut row[oy * wo..(oy + 1) * wo];
                    let iy = (oy * sh + ki) as isize - top as isize;
                    if iy < 0 || iy >= h as isize {
                        dst.fill(T::ZERO);
                        continue;
                    }
                    let src_row = &src[iy as usize * w..(iy as usize + 1) * w];
                    dst[..lo].fill(T::ZERO);
                    dst[hi..].fill(T::ZERO);
                    if hi == lo {
                        continue;
                    }
                    let x0 = lo * sw + kj - left;
                    if sw == 1 {
                        dst[lo..hi].copy_from_slice(&src_row[x0..x0 + (hi - lo)]);
                    } else {
                        let src = src_row[x0..].iter().step_by(sw);
                        for (d, &v) in dst[lo..hi].iter_mut().zip(src) {
                            *d = v;
                        }
                    }
                }
            }
        }
    }
}

/// `dst[oy, ox] = src[oy + dy, ox + dx]`, zero outside the `h × w` source; `dst` is
/// `ho × w`. One flat copy for the rows inside the image, then the wrapped columns zeroed.
fn copy_shifted<T: Float>(
    src: &[T],
    dst: &mut [T],
    (h, w, ho): (usize, usize, usize),
    dy: isize,
    dx: isize,
) {
    let (hi, wi) = (h as isize, w as isize);
    // Output rows whose source row lies inside the image: [oy0, oy1).
    let oy0 = (-dy).clamp(0, ho as isize);
    let oy1 = (hi - dy).clamp(oy0, ho as isize);
    let off = dy * wi + dx;
    // Flat output range whose flat source index lies inside the plane.
    let k0 = (oy0 * wi).max(-off).min(oy1 * wi);
    let k1 = (oy1 * wi).min(hi * wi - off).max(k0);
    let (k0, k1) = (k0 as usize, k1 as usize);
    dst[..k0].fill(T::ZERO);
    dst[k1..].fill(T::ZERO);
    if k1 > k0 {
        // k0 ≥ −off here, so the source start is inside the plane.
        let s0 = (k0 as isize + off) as usize;
        dst[k0..k1].copy_from_slice(&src[s0..s0 + (k1 - k0)]);
    }
    // Columns whose source column is outside the image: ox < −dx or ox ≥ w − dx.
    let (c0, c1) = ((-dx).clamp(0, wi) as usize, (wi - dx).clamp(0, wi) as usize);
    for oy in oy0 as usize..oy1 as usize {
        let line = &mut dst[oy * w..(oy + 1) * w];
        line[..c0].fill(T::ZERO);
        line[c1.max(c0)..].fill(T::ZERO);
    }
}

/// The adjoint of [`im2col`]: adds columns `[C·kh·kw, Ho·Wo]` into one sample `[C, H, W]`.
fn col2im<T: Float>(cols: &[T], g: &Geometry, x: &mut [T]) {
    let (kh, kw) = g.window.kernel;
    let (sh, sw) = g.window.stride;
    let (top, _, left, _) = g.window.pad;
    let (h, w, ho, wo) = (g.h, g.w, g.ho, g.wo);
    let plane = ho * wo;
    x.fill(T::ZERO);
    for ci in 0..g.c {
        let dst = &mut x[ci * h * w..(ci + 1) * h * w];
        for ki in 0..kh {
            for kj in 0..kw {
                let r = (ci * kh + ki) * kw + kj;
                let row = &cols[r * plane..(r + 1) * plane];
                let lo = left.saturating_sub(kj).div_ceil(sw).min(wo);
                let hi = ((w + left).saturating_sub(kj)).div_ceil(sw).clamp(lo, wo);
                for oy in 0..ho {
                    let iy = (oy * sh + ki) as isize - top as isize;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    if hi == lo {
                        continue;
                    }
                    let dst_row = &mut dst[iy as usize * w..(iy as usize + 1) * w];
                    let x0 = lo * sw + kj - left;
                    let src = &row[oy * wo + lo..oy * wo + hi];
                    if sw == 1 {
                        for (d, &v) in dst_row[x0..x0 + src.len()].iter_mut().zip(src) {
                            *d += v;
                        }
                    } else {
                        for (i, &v) in src.iter().enumerate() {
                            dst_row[x0 + i * sw] += v;
                        }
                    }
                }
            }
        }
    }
}

/// Runs `f(sample, output chunk, scratch)` for every sample, in parallel over the batch when
/// it is large enough (then each GEMM runs on one thread), else serially with parallel GEMMs.
fn for_each_sample<T: Float, D: Send>(
    g: &Geometry,
    out: &mut [D],
    chunk: usize,
    scratch_len: usize,
    f: impl Fn(usize, &mut [D], &mut Vec<T>, bool) + Sync,
) {
    match g.threads_over_batch() {
        Some(per_thread) => out
            .par_chunks_mut(chunk)
            .enumerate()
            .with_min_len(per_thread)
            .for_each_init(|| zeroed(scratch_len), |scratch, (i, dst)| f(i, dst, scratch, false)),
        None => {
            let mut scratch = zeroed(scratch_len);
            for (i, dst) in out.chunks_mut(chunk).enumerate() {
                f(i, dst, &mut scratch, true)
            }
        }
    }
}

fn conv_forward<T: Float>(x: &[T], weight: &[T], g: &Geometry) -> Vec<T> {
    let (k, p) = (g.k(), g.p());
    let pointwise = g.window.is_pointwise();
    let scratch = if pointwise { 0 } else { k * p };
    let kernel = Mat::new(weight, g.o, k);
    // Each sample's [O, P] block is one GEMM destination, written whole.
    filled(g.n * g.o * p, |out| {
        for_each_sample(g, out, g.o * p, scratch, |i, dst, cols, parallel| {
            let xi = &x[i * g.c * g.h * g.w..(i + 1) * g.c * g.h * g.w];
            let cols: &[T] = if pointwise {
                xi
            } else {
                im2col(xi, g, cols);
                cols
            };
            matmul_into(dst, kernel, Mat::new(cols, k, p), parallel);
        })
    })
}

fn conv_forward_add<T: Float>(x: &[T], weight: &[T], residual: &[T], g: &Geometry) -> Vec<T> {
    let (k, p) = (g.k(), g.p());
    let pointwise = g.window.is_pointwise();
    let scratch = if pointwise { 0 } else { k * p };
    let kernel = Mat::new(weight, g.o, k);
    let mut out = residual[..g.n * g.o * p].to_vec();
    for_each_sample(g, &mut out, g.o * p, scratch, |i, dst, cols, parallel| {
        let xi = &x[i * g.c * g.h * g.w..(i + 1) * g.c * g.h * g.w];
        let cols: &[T] = if pointwise {
            xi
        } else {
            im2col(xi, g, cols);
            cols
        };
        matmul(dst, kernel, Mat::new(cols, k, p), true, parallel);
    });
    out
}

fn conv_grad_input<T: Float>(grad: &[T], weight: &[T], g: &Geometry) -> Vec<T> {
    let (k, p) = (g.k(), g.p());
    let sample = g.c * g.h * g.w;
    // Written whole: by the GEMM (1×1) or by col2im, which clears its sample first.
    let mut out = zeroed(g.n * sample);
    let pointwise = g.window.is_pointwise();
    let scratch = if pointwise { 0 } else { k * p };
    let kernel_t = Mat::new(weight, g.o, k).t();
    for_each_sample(g, &mut out, sample, scratch, |i, dst, cols, parallel| {
        let gi = Mat::new(&grad[i * g.o * p..(i + 1) * g.o * p], g.o, p);
        if pointwise {
            matmul(dst, kernel_t, gi, false, parallel);
        } else {
            matmul(cols, kernel_t, gi, false, parallel);
            col2im(cols, g, dst);
        }
    });
    out
}

fn conv_grad_weight<T: Float>(x: &[T], grad: &[T], g: &Geometry) -> Vec<T> {
    let (k, p) = (g.k(), g.p());
    let pointwise = g.window.is_pointwise();
    let sample = g.c * g.h * g.w;
    // Adds sample i's contribution g_i · cols_iᵀ to `acc`.
    let add_sample = |i: usize, acc: &mut [T], cols: &mut Vec<T>, parallel: bool| {
        let xi = &x[i * sample..(i + 1) * sample];
        let cols: &[T] = if pointwise {
            xi
        } else {
            im2col(xi, g, cols);
            cols
        };
        let gi = Mat::new(&grad[i * g.o * p..(i + 1) * g.o * p], g.o, p);
        matmul(acc, gi, Mat::new(cols, k, p).t(), true, parallel);
    };
    let scratch = if pointwise { 0 } else { k * p };
    match g.threads_over_batch() {
        Some(per_thread) => (0..g.n)
            .into_par_iter()
            .with_min_len(per_thread)
            .fold(
                || (vec![T::ZERO; g.o * k], zeroed(scratch)),
                |(mut acc, mut cols), i| {
                    add_sample(i, &mut acc, &mut cols, false);
                    (acc, cols)
                },
            )
            .map(|(acc, _)| acc)
            .reduce_with(|mut a, b| {
                a.iter_mut().zip(&b).for_each(|(a, &b)| *a += b);
                a
            })
            .unwrap_or_else(|| vec![T::ZERO; g.o * k]),
        None => {
            let mut acc = vec![T::ZERO; g.o * k];
            let mut cols = zeroed(scratch);
            for i in 0..g.n {
                add_sample(i, &mut acc, &mut cols, true);
            }
            acc
        }
    }
}

impl Geometry {
    /// The geometry of a forward convolution of input `l1` `[N, C, H, W]` by weight `l2`
    /// `[O, C, kh, kw]`, checked against `window`.
    fn of(op: &str, l1: &Layout, l2: &Layout, window: Window) -> Result<Geometry> {
        let (n, c, h, w) = dims4(l1, op, "input")?;
        let (o, wc, kh, kw) = dims4(l2, op, "weight")?;
        if wc != c || (kh, kw) != window.kernel {
            candle_core::bail!(
                "{op}: weight {:?} does not fit {c} input channels and kernel {:?}",
                l2.dims(),
                window.kernel
            )
        }
        let (ho, wo) = window.output_size(h, w)?;
        Ok(Geometry { n, c, h, w, o, ho, wo, window })
    }
}

pub(crate) fn dims4(layout: &Layout, op: &str, what: &str) -> Result<(usize, usize, usize, usize)> {
    if !layout.is_contiguous() {
        candle_core::bail!("{op}: {what} must be contiguous")
    }
    match layout.dims() {
        &[a, b, c, d] => Ok((a, b, c, d)),
        dims => candle_core::bail!("{op}: expected a 4-D {what}, found shape {dims:?}"),
    }
}

/// Slices of two CPU storages of the same float dtype, from their layouts' offsets, passed to
/// `f`; the result is wrapped back into a storage of that dtype.
macro_rules! with_two {
    ($op:expr, $s1:expr, $l1:expr, $s2:expr, $l2:expr, |$a:ident, $b:ident| $body:expr) => {
        match ($s1, $s2) {
            (CpuStorage::F32(a), CpuStorage::F32(b)) => {
                let ($a, $b) = (&a[$l1.start_offset()..], &b[$l2.start_offset()..]);
                CpuStorage::F32($body)
            }
            (CpuStorage::F64(a), CpuStorage::F64(b)) => {
                let ($a, $b) = (&a[$l1.start_offset()..], &b[$l2.start_offset()..]);
                CpuStorage::F64($body)
            }
            (a, b) => candle_core::bail!(
                "{}: expected two f32 or two f64 tensors, found {:?} and {:?}",
                $op,
                a.dtype(),
                b.dtype()
            ),
        }
    };
}
pub(crate) use with_two;

/// [`with_two!`] for three storages of one float dtype.
macro_rules! with_three {
    ($op:expr, $s1:expr, $l1:expr, $s2:expr, $l2:expr, $s3:expr, $l3:expr,
     |$a:ident, $b:ident, $c:ident| $body:expr) => {
        match ($s1, $s2, $s3) {
            (CpuStorage::F32(a), CpuStorage::F32(b), CpuStorage::F32(c)) => {
                let ($a, $b, $c) =
                    (&a[$l1.start_offset()..], &b[$l2.start_offset()..], &c[$l3.start_offset()..]);
                CpuStorage::F32($body)
            }
            (CpuStorage::F64(a), CpuStorage::F64(b), CpuStorage::F64(c)) => {
                let ($a, $b, $c) =
                    (&a[$l1.start_offset()..], &b[$l2.start_offset()..], &c[$l3.start_offset()..]);
                CpuStorage::F64($body)
            }
            (a, b, c) => candle_core::bail!(
                "{}: expected three f32 or three f64 tensors, found {:?}, {:?} and {:?}",
                $op,
                a.dtype(),
                b.dtype(),
                c.dtype()
            ),
        }
    };
}
pub(crate) use with_three;

/// The convolution itself: `(x [N, C, H, W], weight [O, C, kh, kw]) → [N, O, Ho, Wo]`.
struct Conv2d {
    window: Window,
}

/// `(x, weight, residual [N, O, Ho, Wo]) → conv(x, weight) + residual`, one pass: each
/// sample's GEMM accumulates onto a copy of the residual.
struct Conv2dAdd {
    window: Window,
}

/// `(grad [N, O, Ho, Wo], weight) → grad x [N, C, H, W]`.
struct Conv2dGradInput {
    window: Window,
    height: usize,
    width: usize,
}

/// `(x, grad [N, O, Ho, Wo]) → grad weight [O, C, kh, kw]`.
struct Conv2dGradWeight {
    window: Window,
}

impl CustomOp2 for Conv2d {
    fn name(&self) -> &'static str {
        "conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geometry::of("conv2d", l1, l2, self.window)?;
        let (n, o, ho, wo) = (g.n, g.o, g.ho, g.wo);
        let out = with_two!("conv2d", s1, l1, s2, l2, |x, wt| conv_forward(x, wt, &g));
        Ok((out, Shape::from((n, o, ho, wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // The input gradient of a first layer (an image batch) is never used: skip its GEMM.
        conv_grads(x, weight, grad, self.window, x.track_op(), weight.track_op())
    }
}

/// The input gradient (when `want_x`) and the weight gradient (when `want_w`) of a
/// convolution over `window`, given the gradient of its output. Records no graph.
fn conv_grads(
    x: &Tensor,
    weight: &Tensor,
    grad: &Tensor,
    window: Window,
    want_x: bool,
    want_w: bool,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let (_, _, height, width) = x.dims4()?;
    let grad = grad.contiguous()?;
    let grad_x = if want_x {
        let op = Conv2dGradInput { window, height, width };
        Some(grad.apply_op2_no_bwd(&weight.contiguous()?, &op)?)
    } else {
        None
    };
    let grad_w = if want_w {
        Some(x.contiguous()?.apply_op2_no_bwd(&grad, &Conv2dGradWeight { window })?)
    } else {
        None
    };
    Ok((grad_x, grad_w))
}

impl CustomOp2 for Conv2dGradInput {
    fn name(&self) -> &'static str {
        "conv2d-grad-input"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, o, ho, wo) = dims4(l1, "conv2d-grad-input", "gradient")?;
        let (wo_, c, _, _) = dims4(l2, "conv2d-grad-input", "weight")?;
        let (h, w) = (self.height, self.width);
        if wo_ != o || self.window.output_size(h, w)? != (ho, wo) {
            candle_core::bail!(
                "conv2d-grad-input: gradient {:?} does not fit weight {:?} and input {h}x{w}",
                l1.dims(),
                l2.dims()
            )
        }
        let g = Geometry { n, c, h, w, o, ho, wo, window: self.window };
        let out =
            with_two!("conv2d-grad-input", s1, l1, s2, l2, |gr, wt| conv_grad_input(gr, wt, &g));
        Ok((out, Shape::from((n, c, h, w))))
    }
}

impl CustomOp2 for Conv2dGradWeight {
    fn name(&self) -> &'static str {
        "conv2d-grad-weight"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = dims4(l1, "conv2d-grad-weight", "input")?;
        let (gn, o, ho, wo) = dims4(l2, "conv2d-grad-weight", "gradient")?;
        if gn != n || self.window.output_size(h, w)? != (ho, wo) {
            candle_core::bail!(
                "conv2d-grad-weight: gradient {:?} does not fit input {:?}",
                l2.dims(),
                l1.dims()
            )
        }
        let g = Geometry { n, c, h, w, o, ho, wo, window: self.window };
        let out =
            with_two!("conv2d-grad-weight", s1, l1, s2, l2, |x, gr| conv_grad_weight(x, gr, &g));
        let (kh, kw) = self.window.kernel;
        Ok((out, Shape::from((o, c, kh, kw))))
    }
}

impl candle_core::CustomOp3 for Conv2dAdd {
    fn name(&self) -> &'static str {
        "conv2d-add"
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
        let g = Geometry::of("conv2d-add", l1, l2, self.window)?;
        let (n, o, ho, wo) = (g.n, g.o, g.ho, g.wo);
        if dims4(l3, "conv2d-add", "residual")? != (n, o, ho, wo) {
            candle_core::bail!(
                "conv2d-add: residual {:?} does not match the output [{n}, {o}, {ho}, {wo}]",
                l3.dims()
            )
        }
        let out = with_three!("conv2d-add", s1, l1, s2, l2, s3, l3, |x, wt, res| {
            conv_forward_add(x, wt, res, &g)
        });
        Ok((out, Shape::from((n, o, ho, wo))))
    }
}

/// `conv2d(x, weight) + residual` in one pass, without a gradient graph (inference, and
/// callers with their own backward pass: the sum's gradient is the output gradient for both
/// terms). `residual` has the convolution's output shape.
pub fn conv2d_forward_add(
    x: &Tensor,
    weight: &Tensor,
    stride: usize,
    pad: Pad4,
    residual: &Tensor,
) -> Result<Tensor> {
    let (_, _, kh, kw) = weight.dims4()?;
    let window = Window { kernel: (kh, kw), stride: (stride, stride), pad };
    x.contiguous()?.apply_op3_no_bwd(
        &weight.contiguous()?,
        &residual.contiguous()?,
        &Conv2dAdd { window },
    )
}

/// 2-D convolution without bias: `x` `[N, C, H, W]`, `weight` `[O, C, kh, kw]`, zero padding
/// `pad` (may be asymmetric) → `[N, O, Ho, Wo]`.
///
/// Differentiable in both arguments. CPU `f32`/`f64` only (see [`crate::supports`]).
pub fn conv2d(x: &Tensor, weight: &Tensor, stride: usize, pad: Pad4) -> Result<Tensor> {
    let (_, _, kh, kw) = weight.dims4()?;
    let window = Window { kernel: (kh, kw), stride: (stride, stride), pad };
    x.contiguous()?.apply_op2(&weight.contiguous()?, Conv2d { window })
}

/// [`conv2d`] without a gradient graph, for callers that run their own backward pass with
/// [`conv2d_backward`].
pub fn conv2d_forward(x: &Tensor, weight: &Tensor, stride: usize, pad: Pad4) -> Result<Tensor> {
    let (_, _, kh, kw) = weight.dims4()?;
    let window = Window { kernel: (kh, kw), stride: (stride, stride), pad };
    x.contiguous()?.apply_op2_no_bwd(&weight.contiguous()?, &Conv2d { window })
}

/// Gradients of [`conv2d_forward`] from the gradient `grad` `[N, O, Ho, Wo]` of its output:
/// `(grad x, grad weight)`, the input gradient only when `want_input` (a first layer's input
/// is an image batch that needs none). Records no graph.
pub fn conv2d_backward(
    x: &Tensor,
    weight: &Tensor,
    grad: &Tensor,
    stride: usize,
    pad: Pad4,
    want_input: bool,
) -> Result<(Option<Tensor>, Tensor)> {
    let (_, _, kh, kw) = weight.dims4()?;
    let window = Window { kernel: (kh, kw), stride: (stride, stride), pad };
    let (grad_x, grad_w) = conv_grads(x, weight, grad, window, want_input, true)?;
    let grad_w =
        grad_w.ok_or_else(|| candle_core::Error::Msg("conv2d: no weight gradient".into()))?;
    Ok((grad_x, grad_w))
}
