//! The element types the kernels are generic over.

use std::ops::{Add, AddAssign, Div, Mul, Sub};

/// `f32` or `f64`.
pub(crate) trait Float:
    Copy
    + Send
    + Sync
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + AddAssign
    + 'static
{
    const ZERO: Self;
    const ONE: Self;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
}

impl Float for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
}

impl Float for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
}

/// Sum of `xs` in f64, over eight independent lanes so that the loop vectorises.
#[inline]
pub(crate) fn sum<T: Float>(xs: &[T]) -> f64 {
    let mut lanes = [0f64; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            lanes[i] += c[i].to_f64();
        }
    }
    lanes.iter().sum::<f64>() + rest.iter().map(|v| v.to_f64()).sum::<f64>()
}

/// Sum of `(x - centre)²` in f64, vectorised like [`sum`].
#[inline]
pub(crate) fn sum_sq_dev<T: Float>(xs: &[T], centre: f64) -> f64 {
    let mut lanes = [0f64; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            let d = c[i].to_f64() - centre;
            lanes[i] += d * d;
        }
    }
    let tail: f64 = rest.iter().map(|v| (v.to_f64() - centre).powi(2)).sum();
    lanes.iter().sum::<f64>() + tail
}

/// `len` zeros. Buffers that are overwritten whole (GEMM destinations, im2col columns) still
/// start zeroed: large zeroed allocations come from the allocator's zeroed pages, and writing
/// into uninitialised floats through a slice would be undefined behaviour in Rust.
pub(crate) fn zeroed<T: Float>(len: usize) -> Vec<T> {
    vec![T::ZERO; len]
}
