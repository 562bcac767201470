//! Row-major matrix products on slices, through the `gemm` crate.

use std::mem::MaybeUninit;

use gemm::Parallelism;

/// A row-major matrix view: `rows`×`cols`, optionally read transposed.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a, T> {
    pub data: &'a [T],
    /// Rows and columns of the stored (untransposed) matrix.
    pub rows: usize,
    pub cols: usize,
    pub transposed: bool,
}

impl<'a, T> Mat<'a, T> {
    pub fn new(data: &'a [T], rows: usize, cols: usize) -> Self {
        Self { data, rows, cols, transposed: false }
    }

    pub fn t(self) -> Self {
        Self { transposed: !self.transposed, ..self }
    }

    /// Shape as used in the product.
    fn shape(&self) -> (usize, usize) {
        if self.transposed {
            (self.cols, self.rows)
        } else {
            (self.rows, self.cols)
        }
    }

    /// (column stride, row stride) as used in the product.
    fn strides(&self) -> (isize, isize) {
        if self.transposed {
            (self.cols as isize, 1)
        } else {
            (1, self.cols as isize)
        }
    }
}

/// `dst = a·b` (or `dst += a·b` with `accumulate`), `dst` row-major `m`×`n`.
///
/// Panics when the shapes disagree: callers derive them from checked tensor shapes, so a
/// mismatch is a bug here, and the check keeps the unsafe call below in bounds.
pub(crate) fn matmul<T: 'static + Copy + crate::float::Float>(
    dst: &mut [T],
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    accumulate: bool,
    parallel: bool,
) {
    check(dst.len(), a, b);
    // SAFETY: `check` bounds every index; `dst` is initialised, so reading it is fine.
    unsafe { gemm_raw(dst.as_mut_ptr(), a, b, accumulate, parallel) }
}

/// `dst = a·b` into uninitialised memory: every element of the `m`×`n` destination is
/// written and none is read.
pub(crate) fn matmul_into<T: 'static + Copy + crate::float::Float>(
    dst: &mut [MaybeUninit<T>],
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    parallel: bool,
) {
    check(dst.len(), a, b);
    if a.shape().1 == 0 {
        dst.fill(MaybeUninit::new(T::ZERO));
        return;
    }
    // SAFETY: `check` bounds every index; with `accumulate = false` the GEMM only writes
    // the destination (MaybeUninit<T> has T's layout).
    unsafe { gemm_raw(dst.as_mut_ptr().cast::<T>(), a, b, false, parallel) }
}

fn check<T>(dst_len: usize, a: Mat<'_, T>, b: Mat<'_, T>) {
    let (m, k) = a.shape();
    let (kb, n) = b.shape();
    assert_eq!(k, kb, "matmul: inner dimensions {k} and {kb} differ");
    assert_eq!(dst_len, m * n, "matmul: destination holds {dst_len} values, not {m}x{n}");
    assert!(a.data.len() >= a.rows * a.cols && b.data.len() >= b.rows * b.cols);
}

/// # Safety
/// `dst` must point to `m·n` writable values (`m`, `n` from the shapes of `a` and `b`),
/// initialised when `accumulate`; the shapes must have passed [`check`].
unsafe fn gemm_raw<T: 'static + Copy + crate::float::Float>(
    dst: *mut T,
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    accumulate: bool,
    parallel: bool,
) {
    let (m, k) = a.shape();
    let n = b.shape().1;
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            std::slice::from_raw_parts_mut(dst, m * n).fill(T::ZERO);
        }
        return;
    }
    let (a_cs, a_rs) = a.strides();
    let (b_cs, b_rs) = b.strides();
    let parallelism = if parallel { Parallelism::Rayon(0) } else { Parallelism::None };
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        n as isize,
        accumulate,
        a.data.as_ptr(),
        a_cs,
        a_rs,
        b.data.as_ptr(),
        b_cs,
        b_rs,
        T::ONE,
        T::ONE,
        false,
        false,
        false,
        parallelism,
    )
}
