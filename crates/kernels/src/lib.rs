//! Fast CPU kernels for funmatch, each a candle custom op with an exact backward pass.
//!
//! - [`conv2d`]: convolution without bias as one GEMM per sample (over `im2col` columns, or
//!   straight over the input for 1×1 stride-1 convolutions); the input gradient is a GEMM
//!   followed by `col2im`, the weight gradient a GEMM over the columns. Samples run in parallel
//!   on rayon's pool; a batch smaller than the pool parallelises inside each GEMM instead.
//! - [`group_norm`]: GroupNorm with its affine transform and an optional ReLU fused into one
//!   op: per group, two reading passes for the statistics and one writing pass forward; the
//!   backward reuses the forward's statistics and makes one pass per channel for the masked
//!   gradient and its sums (in cache) and one for the input gradient. Its loops are built
//!   for the baseline and for AVX2, picked at run time.
//! - [`standardize_weight`]: weight standardization (per output channel, zero mean and unit
//!   biased variance) forward and backward.
//!
//! Every op also comes as a graph-free pair, `*_forward` and `*_backward`, for callers that
//! keep their own tape and run the backward pass by hand (candle's autograd allocates and
//! adds a zero gradient for every node, which costs as much as a GEMM layer here).
//!
//! The kernels run on the CPU for `f32` and `f64` (f64 so that tests can compare gradients
//! with finite differences). Callers choose them with [`supports`] and keep another path for
//! other devices and dtypes; on those the ops return an error rather than a wrong result.
//!
//! Errors and panics: every op returns a candle [`Result`](candle_core::Result); a shape,
//! dtype or device the kernel does not handle is an error that names the op and what it
//! expected. Panics are kept for broken invariants of this crate.

mod conv;
mod float;
mod gemm;
mod norm;
mod pool;

pub use conv::{conv2d, conv2d_backward, conv2d_forward, conv2d_forward_add, Pad4, Window};
pub use norm::{
    group_norm, group_norm_backward, group_norm_forward, standardize_weight,
    standardize_weight_backward, standardize_weight_forward, GroupNormSpec, GroupNormStats,
};
pub use pool::{max_pool2d, max_pool2d_backward, max_pool2d_forward};

use candle_core::{DType, Tensor};

/// Whether the kernels of this crate handle `t` (a CPU tensor of `f32` or `f64`).
pub fn supports(t: &Tensor) -> bool {
    t.device().is_cpu() && matches!(t.dtype(), DType::F32 | DType::F64)
}

/// Makes glibc's allocator keep freed activation-sized buffers for reuse instead of handing
/// them back to the kernel; returns whether it could.
///
/// A training step allocates and frees the same few dozen activation buffers every time. By
/// default glibc maps each large one afresh (and trims the heap after frees), so every step
/// pays a page fault and a kernel zeroing per 4 KiB of activations: ≈ 200 000 faults and an
/// eighth of the CPU time in ten Fashion-MNIST distillation steps. With buffers up to 32 MiB
/// (glibc's limit) served from the heap and the heap trimmed only above 1 GiB free, a step
/// reuses the memory of the last one. Peak memory is unchanged; the process keeps its
/// high-water mark until it exits. Call it once, early in `main`; a no-op (false) off
/// glibc.
pub fn tune_allocator() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets allocator parameters (glibc takes its own locks).
        let mmap = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) };
        // SAFETY: as above.
        let trim = unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30) };
        mmap == 1 && trim == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
