//! Max pooling with padding and an exact backward pass (candle has a backward only when
//! kernel == stride; BiT's stem pool is 3×3 stride 2).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::conv::{dims4, Window};
use crate::float::Float;

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
                                Some(b) => v > b || (is_nan(v) && !is_nan(b)),
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
        let dims = dims4(layout, "max-pool2d", "input")?;
        let (ho, wo) = self.window.output_size(dims.2, dims.3)?;
        let start = layout.start_offset();
        let out = match storage {
            CpuStorage::F32(x) => {
                let pad = self.pad_value;
                CpuStorage::F32(max_pool_argmax(&x[start..], dims, self.window, pad)?.0)
            }
            CpuStorage::F64(x) => {
                let pad = f64::from(self.pad_value);
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
        let dims = dims4(l1, "max-pool2d-grad", "input")?;
        dims4(l2, "max-pool2d-grad", "gradient")?;
        let (o1, o2) = (l1.start_offset(), l2.start_offset());
        let out = match (s1, s2) {
            (CpuStorage::F32(x), CpuStorage::F32(g)) => {
                let pad = self.pad_value;
                CpuStorage::F32(max_pool_grad(&x[o1..], &g[o2..], dims, self.window, pad)?)
            }
            (CpuStorage::F64(x), CpuStorage::F64(g)) => {
                let pad = f64::from(self.pad_value);
                CpuStorage::F64(max_pool_grad(&x[o1..], &g[o2..], dims, self.window, pad)?)
            }
            (s, _) => candle_core::bail!("max-pool2d-grad: unsupported dtype {:?}", s.dtype()),
        };
        Ok((out, l1.shape().clone()))
    }
}

/// NaN is the only value not comparable with itself.
fn is_nan<T: Float>(v: T) -> bool {
    v.partial_cmp(&v).is_none()
}

/// Max pooling of `x` `[N, C, H, W]` (CPU, f32 or f64) over `window`, padding filled with
/// `pad_value`. Differentiable in `x`.
pub fn max_pool2d(x: &Tensor, window: Window, pad_value: f32) -> Result<Tensor> {
    x.contiguous()?.apply_op1(MaxPool { window, pad_value })
}

/// [`max_pool2d`] without a gradient graph.
pub fn max_pool2d_forward(x: &Tensor, window: Window, pad_value: f32) -> Result<Tensor> {
    x.contiguous()?.apply_op1_no_bwd(&MaxPool { window, pad_value })
}

/// Gradient of the input `x` of [`max_pool2d_forward`] from the gradient `grad` of its
/// output (ties go to the first maximum in scan order, as in [`max_pool2d`]).
pub fn max_pool2d_backward(
    x: &Tensor,
    grad: &Tensor,
    window: Window,
    pad_value: f32,
) -> Result<Tensor> {
    let op = MaxPoolGrad { window, pad_value };
    x.contiguous()?.apply_op2_no_bwd(&grad.contiguous()?, &op)
}
