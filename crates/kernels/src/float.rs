//! The element types the kernels are generic over.

use std::mem::MaybeUninit;
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

/// Elements summed in the element type before the partial sum joins the f64 total: short
/// enough that f32 rounding stays far below the tolerances of the parity tests, long enough
/// that the inner loop runs in full-width vector registers without conversions.
pub(crate) const BLOCK: usize = 512;

/// Sum of `f(x)` over `xs`: sixteen lanes in the element type within each block (so the loop
/// vectorises), blocks joined in f64.
#[inline(always)]
fn block_sum<T: Float>(xs: &[T], f: impl Fn(T) -> T) -> f64 {
    let mut total = 0f64;
    for block in xs.chunks(BLOCK) {
        let mut lanes = [T::ZERO; 16];
        let chunks = block.chunks_exact(16);
        let rest = chunks.remainder();
        for c in chunks {
            for i in 0..16 {
                lanes[i] += f(c[i]);
            }
        }
        total += lanes.iter().map(|v| v.to_f64()).sum::<f64>();
        total += rest.iter().map(|&v| f(v).to_f64()).sum::<f64>();
    }
    total
}

/// `Σ a·b`, accumulated as [`block_sum`] does. (One accumulator per loop: LLVM vectorises
/// that, but not two running side by side.)
#[inline(always)]
pub(crate) fn dot<T: Float>(a: &[T], b: &[T]) -> f64 {
    let mut total = 0f64;
    for (a, b) in a.chunks(BLOCK).zip(b.chunks(BLOCK)) {
        let mut lanes = [T::ZERO; 16];
        let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
        let rest = ca.remainder().iter().zip(cb.remainder());
        for (a, b) in ca.zip(cb) {
            for i in 0..16 {
                lanes[i] += a[i] * b[i];
            }
        }
        total += lanes.iter().map(|v| v.to_f64()).sum::<f64>();
        total += rest.map(|(&a, &b)| (a * b).to_f64()).sum::<f64>();
    }
    total
}

/// Sum of `xs`, accumulated as [`block_sum`] does.
#[inline(always)]
pub(crate) fn sum<T: Float>(xs: &[T]) -> f64 {
    block_sum(xs, |v| v)
}

/// Sum of `(x - centre)²`, accumulated as [`block_sum`] does.
#[inline(always)]
pub(crate) fn sum_sq_dev<T: Float>(xs: &[T], centre: f64) -> f64 {
    let c = T::from_f64(centre);
    block_sum(xs, |v| {
        let d = v - c;
        d * d
    })
}

/// `len` zeros. Buffers that are overwritten whole (GEMM destinations, im2col columns) still
/// start zeroed: large zeroed allocations come from the allocator's zeroed pages, and writing
/// into uninitialised floats through a slice would be undefined behaviour in Rust.
pub(crate) fn zeroed<T: Float>(len: usize) -> Vec<T> {
    vec![T::ZERO; len]
}

/// A vector of `len` values written exactly once each by `fill`, which gets them as
/// uninitialised slots: activation-sized outputs skip the memset (or the page clearing) that
/// a zeroed allocation costs.
///
/// `fill` must write every slot; the callers below write each output element exactly once
/// (element-wise loops over the whole output, or GEMMs that overwrite their whole
/// destination).
pub(crate) fn filled<T: Float>(len: usize, fill: impl FnOnce(&mut [MaybeUninit<T>])) -> Vec<T> {
    let mut out = Vec::with_capacity(len);
    fill(&mut out.spare_capacity_mut()[..len]);
    // SAFETY: capacity ≥ len, and `fill` initialised every one of the first `len` slots.
    unsafe { out.set_len(len) };
    out
}

/// Whether this CPU runs AVX2 code (checked once). The crate is built for the baseline
/// x86-64 (SSE2) so that one binary runs everywhere; [`vectorized`] uses this to pick the
/// wider build of its loops at run time.
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| std::arch::is_x86_feature_detected!("avx2"))
}

/// Defines a function whose body is compiled twice, for the baseline and for AVX2, and that
/// runs the AVX2 build when the CPU has it: the memory-bound loops of the normalisation
/// kernels run in 256-bit registers instead of SSE's 128. Both builds perform the same
/// operations in the same order (Rust never fuses a multiply and an add on its own), so their
/// results are identical.
///
/// Arguments must be plain identifiers (they are passed on); generics are `T: Float` plus any
/// const generics.
macro_rules! vectorized {
    (
        $(#[$meta:meta])*
        fn $name:ident<T: Float $(, const $c:ident: $cty:ty)*>($($arg:ident: $ty:ty),* $(,)?)
            -> $ret:ty $body:block
    ) => {
        $(#[$meta])*
        fn $name<T: Float $(, const $c: $cty)*>($($arg: $ty),*) -> $ret {
            #[inline(always)]
            fn body<T: Float $(, const $c: $cty)*>($($arg: $ty),*) -> $ret $body

            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn avx2<T: Float $(, const $c: $cty)*>($($arg: $ty),*) -> $ret {
                    body::<T $(, $c)*>($($arg),*)
                }
                if $crate::float::has_avx2() {
                    // SAFETY: this CPU has AVX2, checked at run time just above.
                    return unsafe { avx2::<T $(, $c)*>($($arg),*) };
                }
            }
            body::<T $(, $c)*>($($arg),*)
        }
    };
}
pub(crate) use vectorized;
