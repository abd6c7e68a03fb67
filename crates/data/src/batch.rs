//! Stacking augmented crops into Candle tensors.

use candle_core::{Device, Tensor};

use crate::augment::{LabeledCrop, UnlabeledCrop};
use crate::error::Result;
use crate::loader::{LabeledBatch, SemiBatch, UnlabeledBatch};

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

/// The training loop's labelled batch (the sample ids are dropped).
impl From<LabeledBatch> for core_seg::batch::LabeledBatch {
    fn from(b: LabeledBatch) -> Self {
        Self { image: b.image, mask: b.mask, valid: b.valid }
    }
}

/// The training loop's unlabelled batch (the sample ids are dropped).
impl From<UnlabeledBatch> for core_seg::batch::UnlabeledBatch {
    fn from(b: UnlabeledBatch) -> Self {
        Self {
            weak: b.weak,
            strong1: b.strong1,
            strong2: b.strong2,
            ignore: b.ignore,
            box1: b.box1,
            box2: b.box2,
            valid: b.valid,
        }
    }
}

/// One semi-supervised step's batch for the training loop: labelled, unlabelled and mix partner.
impl From<SemiBatch> for core_seg::batch::TrainBatch {
    fn from(b: SemiBatch) -> Self {
        Self { labeled: b.labeled.into(), unlabeled: Some(b.unlabeled.into()), mix: Some(b.mix.into()) }
    }
}

/// A supervised step's batch for the training loop.
impl From<LabeledBatch> for core_seg::batch::TrainBatch {
    fn from(b: LabeledBatch) -> Self {
        Self { labeled: b.into(), unlabeled: None, mix: None }
    }
}
