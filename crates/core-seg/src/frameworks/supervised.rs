//! The supervised baseline (`supervised.py`) and the loss on labelled pixels every framework uses ([`Criterion`]).

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::batch::TrainBatch;
use crate::model::DeepLabV3Plus;
use crate::nn::Mode;
use crate::ops::{cross_entropy_ignore, ohem_cross_entropy, OhemConfig};
use crate::plugin::{Framework, StepCtx, StepLosses, StepTensors};
use crate::Result;

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
