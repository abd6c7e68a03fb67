//! The tensors one training step consumes, with the ids of their samples. The `data` crate's loader produces
//! them and the trainer consumes them as they are; tests build them by hand.

use candle_core::Tensor;

/// Labelled crops: `image [B,3,S,S]` f32 (normalised), `mask [B,S,S]` u32 (255 = ignore, padding included),
/// `valid [B,S,S]` u8 (1 inside the original image, 0 on crop padding; VOC's 255 boundary band is not padding).
#[derive(Debug, Clone)]
pub struct LabeledBatch {
    pub image: Tensor,
    pub mask: Tensor,
    pub valid: Tensor,
    /// Sample ids, one per row.
    pub ids: Vec<String>,
}

/// Unlabelled crops (UniMatch `train_u`): weak view, two strong views, `ignore [B,S,S]` u32 (255 on
/// padding, else 0), CutMix boxes `box1`, `box2 [B,S,S]` u8 (1 inside the box).
#[derive(Debug, Clone)]
pub struct UnlabeledBatch {
    pub weak: Tensor,
    pub strong1: Tensor,
    pub strong2: Tensor,
    pub ignore: Tensor,
    pub box1: Tensor,
    pub box2: Tensor,
    /// `[B,S,S]` u8, 1 inside the original image.
    pub valid: Tensor,
    /// Sample ids, one per row.
    pub ids: Vec<String>,
}

/// Everything one iteration sees: labelled data, and for semi-supervised frameworks the unlabelled batch and
/// its "mix" partner (the same raw images under independent augmentation, whose crops are pasted in).
#[derive(Debug, Clone)]
pub struct TrainBatch {
    pub labeled: LabeledBatch,
    pub unlabeled: Option<UnlabeledBatch>,
    pub mix: Option<UnlabeledBatch>,
}

impl TrainBatch {
    /// The unlabelled batch and its mix partner; an error for a supervised batch (without them).
    pub fn unlabeled_pair(&self) -> crate::Result<(&UnlabeledBatch, &UnlabeledBatch)> {
        match (&self.unlabeled, &self.mix) {
            (Some(u), Some(m)) => Ok((u, m)),
            _ => {
                Err(crate::Error::InvalidArgument("semi-supervised framework needs unlabelled and mix batches".into()))
            }
        }
    }
}

/// A deterministic stream of training batches: `batch(it)` depends only on the run seed and `it`, so a
/// resumed run sees the same data as an uninterrupted one.
pub trait BatchSource {
    fn batch(&mut self, iter: usize) -> crate::Result<TrainBatch>;
}

/// A batch serves itself at every iteration: a hand-written loop fetches its data and passes each batch to
/// [`crate::train::Trainer::step`] (`trainer.step(&mut batch)`).
impl BatchSource for TrainBatch {
    fn batch(&mut self, _iter: usize) -> crate::Result<TrainBatch> {
        Ok(self.clone())
    }
}
