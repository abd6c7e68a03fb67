//! Helpers shared by the aux-mim integration tests.
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor};
use core_seg::Result;

pub fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

pub fn vec_f64(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?)
}

#[allow(unused_imports)]
pub use core_seg::testing::manual_step;

/// Constant maps `[B,S,S]`.
pub fn const_u32(b: usize, s: usize, v: u32) -> Result<Tensor> {
    Ok(Tensor::full(v, (b, s, s), &Device::Cpu)?)
}

pub fn const_f32(b: usize, s: usize, v: f32) -> Result<Tensor> {
    Ok(Tensor::full(v, (b, s, s), &Device::Cpu)?)
}
