//! Thin safe wrapper over `gemm::gemm` for strided row/column views of slices.

use super::Float;
pub(crate) use gemm::Parallelism;

/// A read-only matrix view: element `(i, j)` is `data[i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub(crate) struct View<'a, T> {
    pub data: &'a [T],
    pub rs: usize,
    pub cs: usize,
}

impl<'a, T> View<'a, T> {
    /// Row-major `[rows, cols]` with row stride `ld`.
    pub fn rm(data: &'a [T], ld: usize) -> Self {
        Self { data, rs: ld, cs: 1 }
    }
    /// The transpose of a row-major matrix with row stride `ld`.
    pub fn rm_t(data: &'a [T], ld: usize) -> Self {
        Self { data, rs: 1, cs: ld }
    }
    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// `C[m, n] (+)= A[m, k] · B[k, n]` with `C` row-major (row stride `ldc`); `accumulate` adds to `C`,
/// otherwise `C` is overwritten.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    c: &mut [T],
    ldc: usize,
    accumulate: bool,
    a: View<'_, T>,
    b: View<'_, T>,
    par: Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        (m - 1) * ldc + n <= c.len() && a.fits(m, k) && b.fits(k, n),
        "kernels::matmul: operand views out of bounds (m={m}, n={n}, k={k})"
    );
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                c[r * ldc..r * ldc + n].fill(T::zero());
            }
        }
        return;
    }
    // SAFETY: the assert above checks that every index the strided views touch lies inside the slices;
    // `c` is borrowed mutably and cannot alias `a` or `b`; T is f32 or f64, both supported by gemm.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            ldc as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            par,
        )
    }
}
