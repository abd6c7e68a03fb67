//! The plug-in contract of the one training loop: what a [`Framework`] and an [`AuxTerm`] implement, and what
//! they see ([`StepCtx`], [`StepTensors`]).
//!
//! A framework turns a batch into the step's weighted losses ([`StepLosses`]); the supervised baseline, FixMatch,
//! UniMatch and mean teacher are frameworks ([`crate::frameworks`]), and a method crate may bring its own (with
//! parameters of its own, [`crate::train::Trainer::with_framework`]). After the framework has run its forward
//! passes, every [`AuxTerm`] receives the step's tensors — labelled and unlabelled views, the train-mode output on
//! `cat(x_l, x_w)` with encoder and decoder features, the pseudo-labels and confidences — and may run extra
//! forwards through the model. It returns weighted loss terms that the loop adds to the framework's total. Terms
//! compose: a config can stack UniMatch + MIM + TV.
//!
//! This module depends on the model and the batch types only; frameworks, terms and the loop depend on it.

use std::collections::HashMap;

use candle_core::Tensor;

use crate::batch::{LabeledBatch, TrainBatch, UnlabeledBatch};
use crate::model::{DeepLabV3Plus, SegOutput};
use crate::nn::ParamStore;
use crate::rng::SegRng;
use crate::Result;

/// What a framework or a term sees besides the batch.
pub struct StepCtx<'a> {
    pub iter: usize,
    pub total_iters: usize,
    /// The run's RNG (dropout masks and any other draw inside the step).
    pub rng: &'a mut SegRng,
    /// The student's variables (e.g. to build an EMA teacher).
    pub store: &'a ParamStore,
}

/// The step's total loss (to differentiate) and its named terms (detached scalars, for logs).
pub struct StepLosses {
    pub total: Tensor,
    pub terms: Vec<(String, Tensor)>,
    /// Extra scalars to log (e.g. `mask_ratio`).
    pub stats: Vec<(String, f64)>,
    /// The step's tensors, handed to auxiliary terms.
    pub tensors: Option<StepTensors>,
}

/// A training framework: builds the step's losses from the model and a batch. `Send`: the step runs on a
/// worker thread of the rayon pool ([`crate::train::Trainer::step`]).
pub trait Framework: Send {
    fn name(&self) -> &str;
    fn losses(&mut self, model: &DeepLabV3Plus, batch: &TrainBatch, ctx: &mut StepCtx) -> Result<StepLosses>;
    /// Called after each optimiser step (e.g. an EMA teacher update).
    fn after_step(&mut self, _student: &ParamStore) -> Result<()> {
        Ok(())
    }
    /// Extra state saved in checkpoints (e.g. teacher weights), names without prefix.
    fn state_tensors(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
    /// Restores what [`Framework::state_tensors`] saved.
    fn load_state_tensors(
        &mut self,
        _student: &ParamStore,
        _model: &DeepLabV3Plus,
        _t: &HashMap<String, Tensor>,
    ) -> Result<()> {
        Ok(())
    }
}

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

/// A loss term added to any framework (`Send`, like [`Framework`]).
pub trait AuxTerm: Send {
    fn name(&self) -> &str;
    /// Weighted loss terms `(name, λ·L)`; names are logged as `train/loss_<name>`.
    fn losses(&mut self, model: &DeepLabV3Plus, step: &StepTensors, ctx: &mut StepCtx)
        -> Result<Vec<(String, Tensor)>>;
    /// Scalars to log from the last [`AuxTerm::losses`] call (not part of the loss, e.g. a PSNR).
    fn stats(&self) -> Vec<(String, f64)> {
        Vec::new()
    }
}
