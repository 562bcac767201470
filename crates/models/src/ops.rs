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

use candle_core::{Result, Tensor, D};

pub use funmatch_kernels::{Pad4, Window};

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

/// `conv2d(x, weight) + residual` for inference (no gradient graph): one pass over the
/// output on the CPU, a convolution and an addition elsewhere.
pub fn conv2d_add_no_grad(
    x: &Tensor,
    weight: &Tensor,
    stride: usize,
    pad: Pad4,
    residual: &Tensor,
) -> Result<Tensor> {
    if uses_custom_kernels(x) && x.dtype() == weight.dtype() && x.dtype() == residual.dtype() {
        return funmatch_kernels::conv2d_forward_add(x, weight, stride, pad, residual);
    }
    conv2d(x, weight, stride, pad)? + residual
}

/// candle's own convolution, for devices and dtypes our kernels do not cover.
fn conv2d_candle(x: &Tensor, weight: &Tensor, window: Window) -> Result<Tensor> {
    let (t, b, l, r) = window.pad;
    let x = x.pad_with_zeros(2, t, b)?.pad_with_zeros(3, l, r)?;
    x.conv2d(weight, 0, window.stride.0, 1, 1)
}

// ---------------------------------------------------------------------------------------------
// Max pooling

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
        return funmatch_kernels::max_pool2d(x, window, pad_value);
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
