//! Guards for the patched Candle sum reduction (`third_party/candle-core/PATCHES.md`, `reduce-runs.patch`): a sum
//! of a contiguous tensor over any set of dimensions (the per-channel sums of a bias or BatchNorm gradient reduce
//! dimensions 0, 2 and 3) runs by contiguous runs; it must equal a naive f64 sum for every subset of dimensions,
//! with size-1 dimensions anywhere, in f32 and f64, and for strided (transposed) inputs.

use candle_core::{DType, Device, Result, Tensor};

/// Deterministic values in [-5, 5).
fn values(n: usize) -> Vec<f64> {
    (0..n).map(|i| ((i as u64 * 2_654_435_761 + 12_345) % 1000) as f64 / 100.0 - 5.0).collect()
}

/// `sum_keepdim(dims)` of the row-major `x` of shape `shape`, summed in f64.
fn naive(x: &[f64], shape: &[usize], dims: &[usize]) -> Vec<f64> {
    let out_shape: Vec<usize> = shape.iter().enumerate().map(|(d, &s)| if dims.contains(&d) { 1 } else { s }).collect();
    let mut out = vec![0.0; out_shape.iter().product()];
    for (flat, &v) in x.iter().enumerate() {
        let (mut rem, mut o, mut ostride) = (flat, 0, 1);
        for d in (0..shape.len()).rev() {
            let i = rem % shape[d];
            rem /= shape[d];
            if !dims.contains(&d) {
                o += i * ostride;
            }
            ostride *= out_shape[d];
        }
        out[o] += v;
    }
    out
}

fn check(shape: &[usize], dtype: DType, tol: f64) -> Result<()> {
    let n: usize = shape.iter().product();
    let x = values(n);
    let t = Tensor::from_vec(x.clone(), shape, &Device::Cpu)?.to_dtype(dtype)?;
    let rank = shape.len();
    for mask in 1u32..(1 << rank) {
        let dims: Vec<usize> = (0..rank).filter(|d| mask & (1 << d) != 0).collect();
        let got = t.sum_keepdim(dims.clone())?.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
        let want = naive(&x, shape, &dims);
        assert_eq!(got.len(), want.len(), "{shape:?} over {dims:?}: output size");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((g - w).abs() <= tol * (1.0 + w.abs()), "{shape:?} {dtype:?} over {dims:?}: [{i}] {g} vs {w}");
        }
    }
    Ok(())
}

#[test]
fn sums_over_every_subset_of_dimensions_match_a_naive_sum() -> Result<()> {
    for shape in [&[2, 3, 4, 5][..], &[3, 1, 4, 2], &[1, 5, 1, 3], &[4, 6, 1, 1], &[2, 3, 2, 5, 2], &[7], &[1, 1]] {
        check(shape, DType::F64, 1e-12)?;
        check(shape, DType::F32, 1e-5)?;
    }
    Ok(())
}

#[test]
fn per_channel_sums_of_an_nchw_gradient() -> Result<()> {
    // The bias-gradient shape of a decoder classifier: [N, C, H, W] summed over N, H and W.
    let shape = [8usize, 6, 16, 16];
    let x = values(shape.iter().product());
    let t = Tensor::from_vec(x.clone(), &shape[..], &Device::Cpu)?;
    let got = t.sum_keepdim(vec![0, 2, 3])?.flatten_all()?.to_vec1::<f64>()?;
    let want = naive(&x, &shape, &[0, 2, 3]);
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-9, "{g} vs {w}");
    }
    Ok(())
}

#[test]
fn strided_inputs_still_sum_correctly() -> Result<()> {
    let x = values(2 * 3 * 4);
    let t = Tensor::from_vec(x.clone(), (2, 3, 4), &Device::Cpu)?;
    let tt = t.transpose(0, 2)?; // [4, 3, 2], not contiguous
    assert!(!tt.is_contiguous());
    let got = tt.sum_keepdim(vec![0, 2])?.flatten_all()?.to_vec1::<f64>()?;
    let want = naive(&x, &[2, 3, 4], &[0, 2]);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-12, "{g} vs {w}");
    }
    Ok(())
}
