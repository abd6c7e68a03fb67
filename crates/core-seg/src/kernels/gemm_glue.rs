//! Thin safe wrapper over `gemm::gemm` for strided row/column views of slices.

use std::mem::MaybeUninit;

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
    // SAFETY: `c` is initialised, so reading it (`accumulate`) is sound.
    unsafe { matmul_raw(m, n, k, c.as_mut_ptr(), c.len(), ldc, accumulate, a, b, par) }
}

/// `C[m, n] = A[m, k] · B[k, n]` into uninitialised memory (`C` row-major, row stride `ldc`): every element
/// `C[i, j]`, `i < m`, `j < n`, is written and none is read, so the output buffer needs no zero fill.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_uninit<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    c: &mut [MaybeUninit<T>],
    ldc: usize,
    a: View<'_, T>,
    b: View<'_, T>,
    par: Parallelism,
) {
    // SAFETY: `accumulate` is false, so `C` is only written (gemm does not read `dst` without `read_dst`).
    unsafe { matmul_raw(m, n, k, c.as_mut_ptr().cast::<T>(), c.len(), ldc, false, a, b, par) }
}

/// The GEMM behind [`matmul`] and [`matmul_uninit`] on a raw output pointer.
///
/// # Safety
///
/// `c` must be valid for writes of `c_len` elements, not alias `a` or `b`, and hold initialised values where
/// `accumulate` is true.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul_raw<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    c: *mut T,
    c_len: usize,
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
        (m - 1) * ldc + n <= c_len && a.fits(m, k) && b.fits(k, n),
        "kernels::matmul: operand views out of bounds (m={m}, n={n}, k={k})"
    );
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                for j in 0..n {
                    // SAFETY: `r·ldc + j < c_len` by the assert above.
                    unsafe { c.add(r * ldc + j).write(T::zero()) };
                }
            }
        }
        return;
    }
    // SAFETY: the assert above checks that every index the strided views touch lies inside the slices and
    // `c_len`; the caller guarantees `c` does not alias `a` or `b`; T is f32 or f64, both supported by gemm.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c,
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
