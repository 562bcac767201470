//! Row-major matrix products on slices, through the `gemm` crate.

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
    let (m, k) = a.shape();
    let (kb, n) = b.shape();
    assert_eq!(k, kb, "matmul: inner dimensions {k} and {kb} differ");
    assert_eq!(dst.len(), m * n, "matmul: destination holds {} values, not {m}x{n}", dst.len());
    assert!(a.data.len() >= a.rows * a.cols && b.data.len() >= b.rows * b.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.fill(T::ZERO);
        }
        return;
    }
    let (a_cs, a_rs) = a.strides();
    let (b_cs, b_rs) = b.strides();
    let parallelism = if parallel { Parallelism::Rayon(0) } else { Parallelism::None };
    // SAFETY: the asserts above bound every index the strides can reach: `a` is m×k, `b` is
    // k×n and `dst` m×n, all dense in row-major order (or its transpose).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
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
}
