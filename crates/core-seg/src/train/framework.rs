//! The plug-in point of the one training loop: a [`Framework`] turns a batch into weighted loss terms.
//! Supervised, FixMatch and UniMatch are frameworks; auxiliary methods add terms on top of them.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use std::collections::HashMap;

use crate::batch::TrainBatch;
use crate::frameworks::StepTensors;
use crate::model::DeepLabV3Plus;
use crate::nn::{Mode, ParamStore};
use crate::ops::{cross_entropy_ignore, ohem_cross_entropy, OhemConfig};
use crate::rng::SegRng;
use crate::Result;

/// What a framework sees besides the batch.
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

/// A training framework: builds the step's losses from the model and a batch.
pub trait Framework {
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

/// Loss on labelled pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Criterion {
    /// Cross-entropy, mean over pixels ≠ 255.
    #[default]
    Ce,
    /// OHEM cross-entropy (UniMatch Cityscapes).
    Ohem(OhemConfig),
}

impl Criterion {
    pub fn loss(&self, logits: &Tensor, target: &Tensor) -> Result<Tensor> {
        match self {
            Criterion::Ce => cross_entropy_ignore(logits, target),
            Criterion::Ohem(c) => ohem_cross_entropy(logits, target, *c),
        }
    }
}

/// Supervised baseline (`supervised.py`): `L = L_x` on labelled images only.
pub struct Supervised {
    pub criterion: Criterion,
}

impl Framework for Supervised {
    fn name(&self) -> &str {
        "supervised"
    }

    fn losses(&mut self, model: &DeepLabV3Plus, batch: &TrainBatch, _ctx: &mut StepCtx) -> Result<StepLosses> {
        let out = model.forward_full(&batch.labeled.image, Mode::Train, None)?;
        let loss_x = self.criterion.loss(&out.logits, &batch.labeled.mask)?;
        let n_labeled = batch.labeled.image.dim(0)?;
        let tensors = StepTensors {
            labeled: batch.labeled.clone(),
            unlabeled: None,
            out,
            n_labeled,
            pseudo: None,
            conf_thresh: 1.0,
            strong: None,
        };
        Ok(StepLosses {
            total: loss_x.clone(),
            terms: vec![("loss_x".into(), loss_x.detach())],
            stats: vec![],
            tensors: Some(tensors),
        })
    }
}
