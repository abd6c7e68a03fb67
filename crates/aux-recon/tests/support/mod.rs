//! Helpers shared by the aux-recon integration tests.
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor};
use core_seg::batch::{LabeledBatch, UnlabeledBatch};
use core_seg::frameworks::{Pseudo, StepTensors};
use core_seg::model::DeepLabV3Plus;
use core_seg::nn::Mode;
use core_seg::Result;

pub fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

pub fn vec_f64(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?)
}

/// Deterministic values in [−2, 2) (xorshift), for tensors built by hand.
pub fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 4.0 - 2.0
        })
        .collect()
}

pub fn tensor(shape: &[usize], seed: u64, dtype: DType) -> Result<Tensor> {
    let n = shape.iter().product();
    Ok(Tensor::from_vec(values(n, seed), shape, &Device::Cpu)?.to_dtype(dtype)?)
}

/// A step's tensors built by hand: the clean train-mode forward on `cat(x_l, x_w)` and the given pseudo-labels.
pub fn manual_step(
    model: &DeepLabV3Plus,
    labeled: LabeledBatch,
    unlabeled: Option<UnlabeledBatch>,
    pseudo: Option<Pseudo>,
    tau: f64,
) -> Result<StepTensors> {
    let n_labeled = labeled.image.dim(0)?;
    let x = match &unlabeled {
        Some(u) => Tensor::cat(&[&labeled.image, &u.weak], 0)?,
        None => labeled.image.clone(),
    };
    let out = model.forward_full(&x, Mode::Train, None)?;
    Ok(StepTensors { labeled, unlabeled, out, n_labeled, pseudo, conf_thresh: tau, strong: None })
}
