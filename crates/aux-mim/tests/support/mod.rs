//! Helpers shared by the aux-mim integration tests.
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

/// Constant maps `[B,S,S]`.
pub fn const_u32(b: usize, s: usize, v: u32) -> Result<Tensor> {
    Ok(Tensor::full(v, (b, s, s), &Device::Cpu)?)
}

pub fn const_f32(b: usize, s: usize, v: f32) -> Result<Tensor> {
    Ok(Tensor::full(v, (b, s, s), &Device::Cpu)?)
}
