//! Stacking augmented crops into the trainer's batch tensors (`core_seg::batch`).

use candle_core::{Device, Tensor};

use crate::augment::{LabeledCrop, UnlabeledCrop};
use crate::error::Result;
use core_seg::batch::{LabeledBatch, UnlabeledBatch};

fn stack_f32<'a>(
    parts: impl Iterator<Item = &'a [f32]>,
    shape: (usize, usize, usize, usize),
    d: &Device,
) -> Result<Tensor> {
    let v: Vec<f32> = parts.flat_map(|p| p.iter().copied()).collect();
    Ok(Tensor::from_vec(v, shape, d)?)
}

fn stack_u32<'a>(parts: impl Iterator<Item = &'a [u8]>, shape: (usize, usize, usize), d: &Device) -> Result<Tensor> {
    let v: Vec<u32> = parts.flat_map(|p| p.iter().map(|&x| x as u32)).collect();
    Ok(Tensor::from_vec(v, shape, d)?)
}

fn stack_u8<'a>(parts: impl Iterator<Item = &'a [u8]>, shape: (usize, usize, usize), d: &Device) -> Result<Tensor> {
    let v: Vec<u8> = parts.flat_map(|p| p.iter().copied()).collect();
    Ok(Tensor::from_vec(v, shape, d)?)
}

/// Stacks labelled crops.
pub fn labeled(crops: Vec<(String, LabeledCrop)>, s: usize, d: &Device) -> Result<LabeledBatch> {
    let b = crops.len();
    Ok(LabeledBatch {
        image: stack_f32(crops.iter().map(|c| c.1.image.as_slice()), (b, 3, s, s), d)?,
        mask: stack_u32(crops.iter().map(|c| c.1.mask.as_slice()), (b, s, s), d)?,
        valid: stack_u8(crops.iter().map(|c| c.1.valid.as_slice()), (b, s, s), d)?,
        ids: crops.into_iter().map(|c| c.0).collect(),
    })
}

/// Stacks unlabelled crops.
pub fn unlabeled(crops: Vec<(String, UnlabeledCrop)>, s: usize, d: &Device) -> Result<UnlabeledBatch> {
    let b = crops.len();
    let img = |f: fn(&UnlabeledCrop) -> &[f32]| stack_f32(crops.iter().map(|c| f(&c.1)), (b, 3, s, s), d);
    let boxes1: Vec<Vec<u8>> = crops.iter().map(|c| c.1.box1.to_map(s)).collect();
    let boxes2: Vec<Vec<u8>> = crops.iter().map(|c| c.1.box2.to_map(s)).collect();
    Ok(UnlabeledBatch {
        weak: img(|c| c.weak.as_slice())?,
        strong1: img(|c| c.strong1.as_slice())?,
        strong2: img(|c| c.strong2.as_slice())?,
        ignore: stack_u32(crops.iter().map(|c| c.1.ignore.as_slice()), (b, s, s), d)?,
        box1: stack_u8(boxes1.iter().map(|v| v.as_slice()), (b, s, s), d)?,
        box2: stack_u8(boxes2.iter().map(|v| v.as_slice()), (b, s, s), d)?,
        valid: stack_u8(crops.iter().map(|c| c.1.valid.as_slice()), (b, s, s), d)?,
        ids: crops.into_iter().map(|c| c.0).collect(),
    })
}
