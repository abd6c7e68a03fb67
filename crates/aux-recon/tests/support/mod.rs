//! Helpers shared by the aux-recon integration tests.
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor};
use core_seg::rng::SegRng;
use core_seg::Result;

pub fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

pub fn vec_f64(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?)
}

/// Deterministic values in [−2, 2) from the project RNG, for tensors built by hand.
pub fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = SegRng::new(seed);
    (0..n).map(|_| rng.uniform_range(-2.0, 2.0)).collect()
}

pub fn tensor(shape: &[usize], seed: u64, dtype: DType) -> Result<Tensor> {
    let n = shape.iter().product();
    Ok(Tensor::from_vec(values(n, seed), shape, &Device::Cpu)?.to_dtype(dtype)?)
}

#[allow(unused_imports)]
pub use core_seg::testing::manual_step;
