//! The plug-in point for auxiliary methods (TV loss, reconstruction, MIM, GuidedMix, …).
//!
//! After the framework has run its forward passes, every [`AuxTerm`] receives the step's tensors —
//! labelled and unlabelled views, the train-mode output on `cat(x_l, x_w)` with encoder and decoder
//! features, the pseudo-labels and confidences — and may run extra forwards through the model. It returns
//! weighted loss terms that the loop adds to the framework's total. Terms compose: a config can stack
//! UniMatch + MIM + TV.

use candle_core::Tensor;

use crate::batch::{LabeledBatch, UnlabeledBatch};
use crate::model::{DeepLabV3Plus, SegOutput};
use crate::train::StepCtx;
use crate::Result;

/// Pseudo-labels of the weak unlabelled view.
#[derive(Debug, Clone)]
pub struct Pseudo {
    /// `[B_u, H, W]` u32 argmax.
    pub label: Tensor,
    /// `[B_u, H, W]` max softmax probability.
    pub conf: Tensor,
    /// `[B_u, H, W]` u32, 255 on padding.
    pub ignore: Tensor,
}

/// The strong views' gradient pass (FixMatch, mean teacher: one view; UniMatch: `cat(x_s1, x_s2)`).
#[derive(Debug, Clone)]
pub struct StrongPass {
    /// `[N_s, 3, H, W]`: the CutMixed strong views the student was trained on.
    pub images: Tensor,
    /// `[N_s, H, W]` u8 valid map of the CutMixed views (the mix partner's inside the box).
    pub valid: Tensor,
    /// The pasted pseudo-labels supervising them.
    pub pseudo: Pseudo,
    /// The train-mode output on `images`.
    pub out: SegOutput,
}

/// What one step computed, for auxiliary terms.
#[derive(Debug, Clone)]
pub struct StepTensors {
    pub labeled: LabeledBatch,
    pub unlabeled: Option<UnlabeledBatch>,
    /// Train-mode output on `cat(x_l, x_w)` (labelled only for supervised): rows `0..n_labeled` are labelled.
    pub out: SegOutput,
    pub n_labeled: usize,
    pub pseudo: Option<Pseudo>,
    pub conf_thresh: f64,
    /// The strong views' pass (semi-supervised frameworks).
    pub strong: Option<StrongPass>,
}

/// A loss term added to any framework.
pub trait AuxTerm {
    fn name(&self) -> &str;
    /// Weighted loss terms `(name, λ·L)`; names are logged as `train/loss_<name>`.
    fn losses(&mut self, model: &DeepLabV3Plus, step: &StepTensors, ctx: &mut StepCtx)
        -> Result<Vec<(String, Tensor)>>;
    /// Scalars to log from the last [`AuxTerm::losses`] call (not part of the loss, e.g. a PSNR).
    fn stats(&self) -> Vec<(String, f64)> {
        Vec::new()
    }
}
