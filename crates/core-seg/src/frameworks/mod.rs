//! Semi-supervised frameworks on the one training loop (UniMatch's `fixmatch.py` / `unimatch.py`, and a
//! mean-teacher base), plus the plug-in point through which method crates add loss terms ([`AuxTerm`]).
//!
//! Shared pieces, each a pure function with the equation in its doc:
//! - [`paste_box`]: CutMix of pseudo-labels, confidences and ignore masks.
//! - [`unsup_loss`]: `Σ_p CE_px·[conf ≥ τ]·[ign ≠ 255] / Σ_p [ign ≠ 255]`.
//! - [`pseudo_label`]: confidence and argmax of a detached prediction.

mod aux;
mod fixmatch;
mod mean_teacher;
mod unimatch;

pub use aux::{AuxTerm, Pseudo, StepTensors, StrongPass};
pub use fixmatch::FixMatch;
pub use mean_teacher::{ema_update, MeanTeacher};
pub use unimatch::{combine as combine_unimatch, UniMatch};

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::ops::{cross_entropy_per_pixel, masked_mean, IGNORE_INDEX};
use crate::train::Criterion;
use crate::Result;

/// Which framework trains the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Supervised,
    Fixmatch,
    #[default]
    Unimatch,
    MeanTeacher,
    /// GuidedMix-Net: its framework (with parameters of its own) lives in the `guidedmix` crate and is
    /// installed with [`crate::train::Trainer::set_framework`]; [`build`] gives a placeholder for it.
    Guidedmix,
}

/// BN mode of the no-grad prediction on the mix images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MixPredBn {
    /// Running statistics (the official code).
    #[default]
    Eval,
    /// Batch statistics ("not a necessity", issue #68).
    Train,
}

/// Which view the feature perturbation is applied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FpOn {
    /// The weak view (UniMatch).
    #[default]
    Weak,
    /// No FP stream (UniMatch without FP = dual-strong FixMatch).
    None,
}

/// Framework hyper-parameters (defaults = UniMatch's VOC config, `LiheYoung/UniMatch` `configs/pascal.yaml`;
/// `docs/frameworks.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SemiConfig {
    pub method: Method,
    pub criterion: Criterion,
    /// τ: pseudo-labels with confidence below it contribute 0 (but count in the denominator).
    pub conf_thresh: f64,
    pub w_s: f64,
    pub w_fp: f64,
    pub w_out: f64,
    pub fp_dropout: f64,
    pub fp_on: FpOn,
    pub mix_pred_bn: MixPredBn,
    /// EMA decay of the mean teacher.
    pub ema_decay: f64,
}

impl Default for SemiConfig {
    fn default() -> Self {
        Self {
            method: Method::Unimatch,
            criterion: Criterion::Ce,
            conf_thresh: 0.95,
            w_s: 0.25,
            w_fp: 0.5,
            w_out: 0.5,
            fp_dropout: 0.5,
            fp_on: FpOn::Weak,
            mix_pred_bn: MixPredBn::Eval,
            ema_decay: 0.99,
        }
    }
}

/// `(conf, label) = (max_k softmax(z), argmax_k z)` of detached logits `[B, K, H, W]` → `[B, H, W]` each.
pub fn pseudo_label(logits: &Tensor) -> Result<(Tensor, Tensor)> {
    let p = candle_nn::ops::softmax(&logits.detach(), 1)?;
    Ok((p.max(1)?, p.argmax(1)?))
}

/// CutMix pasting: `where(box, inside, outside)` for `[B, H, W]` maps (`box` is 0/1, any dtype).
pub fn paste_box(boxes: &Tensor, inside: &Tensor, outside: &Tensor) -> Result<Tensor> {
    let b = boxes.to_dtype(DType::U8)?;
    Ok(b.where_cond(inside, &outside.to_dtype(inside.dtype())?)?)
}

/// Weak-to-strong loss with UniMatch's normalisation:
/// `L = Σ_p CE_px(z_p, y_p)·[conf_p ≥ τ]·[ign_p ≠ 255] / Σ_p [ign_p ≠ 255]`.
/// Low-confidence pixels contribute 0 but count in the denominator; padded pixels do neither.
pub fn unsup_loss(logits: &Tensor, y: &Tensor, conf: &Tensor, ign: &Tensor, tau: f64) -> Result<Tensor> {
    let (ce, _) = cross_entropy_per_pixel(logits, y)?;
    let not_pad = ign.to_dtype(DType::U32)?.ne(IGNORE_INDEX)?.to_dtype(ce.dtype())?;
    let confident = conf.ge(tau)?.to_dtype(ce.dtype())?;
    masked_mean(&ce, &(confident * &not_pad)?, &not_pad)
}

/// Fraction of non-padded pixels whose confidence passes τ (UniMatch's logged `mask_ratio`).
pub fn mask_ratio(conf: &Tensor, ign: &Tensor, tau: f64) -> Result<f64> {
    let not_pad = ign.to_dtype(DType::U32)?.ne(IGNORE_INDEX)?.to_dtype(DType::F64)?;
    let confident = conf.ge(tau)?.to_dtype(DType::F64)?;
    let den = not_pad.sum_all()?.to_scalar::<f64>()?;
    Ok(if den > 0.0 { (confident * &not_pad)?.sum_all()?.to_scalar::<f64>()? / den } else { 0.0 })
}

/// CutMix in image space: `where(box, mixed_view, view)` on all channels (`box [B, H, W]`).
pub fn cutmix_images(boxes: &Tensor, mixed_view: &Tensor, view: &Tensor) -> Result<Tensor> {
    let b = boxes.to_dtype(DType::U8)?.unsqueeze(1)?.broadcast_as(view.shape())?;
    Ok(b.where_cond(mixed_view, view)?)
}

/// Valid map of a CutMixed view: the mix partner's inside the box.
pub fn paste_valid(
    boxes: &Tensor,
    mix: &crate::batch::UnlabeledBatch,
    u: &crate::batch::UnlabeledBatch,
) -> Result<Tensor> {
    paste_box(boxes, &mix.valid, &u.valid)
}

/// Pseudo-label triple `(label, conf, ignore)` with the mix partner's values pasted inside the box.
pub fn paste_pseudo(boxes: &Tensor, mix: &Pseudo, weak: &Pseudo) -> Result<Pseudo> {
    Ok(Pseudo {
        label: paste_box(boxes, &mix.label, &weak.label)?,
        conf: paste_box(boxes, &mix.conf, &weak.conf)?,
        ignore: paste_box(boxes, &mix.ignore, &weak.ignore)?,
    })
}

/// A semi-supervised step's result: the total, detached terms, `mask_ratio`, and the step's tensors.
pub(crate) fn semi_step_losses(
    batch: &crate::batch::TrainBatch,
    out: crate::model::SegOutput,
    weak: Pseudo,
    tau: f64,
    total: Tensor,
    terms: Vec<(&str, &Tensor)>,
    strong: StrongPass,
) -> Result<crate::train::StepLosses> {
    let stats = vec![("mask_ratio".to_string(), mask_ratio(&weak.conf, &weak.ignore, tau)?)];
    let terms = terms.into_iter().map(|(n, t)| (n.to_string(), t.detach())).collect();
    let tensors = StepTensors {
        labeled: batch.labeled.clone(),
        unlabeled: batch.unlabeled.clone(),
        n_labeled: batch.labeled.image.dim(0)?,
        out,
        pseudo: Some(weak),
        conf_thresh: tau,
        strong: Some(strong),
    };
    Ok(crate::train::StepLosses { total, terms, stats, tensors: Some(tensors) })
}

/// Builds the framework a config names.
pub fn build(cfg: &SemiConfig) -> Box<dyn crate::train::Framework> {
    match cfg.method {
        Method::Supervised => Box::new(crate::train::Supervised { criterion: cfg.criterion }),
        Method::Fixmatch => Box::new(FixMatch::new(cfg.clone())),
        Method::Unimatch => Box::new(UniMatch::new(cfg.clone())),
        Method::MeanTeacher => Box::new(MeanTeacher::new(cfg.clone())),
        Method::Guidedmix => Box::new(External { name: "guidedmix", provider: "guidedmix::build" }),
    }
}

/// Stands in for a framework built outside `core-seg` (see [`Method::Guidedmix`]): every step is an error
/// naming the function that builds the real one.
pub struct External {
    pub name: &'static str,
    pub provider: &'static str,
}

impl crate::train::Framework for External {
    fn name(&self) -> &str {
        self.name
    }

    fn losses(
        &mut self,
        _model: &crate::model::DeepLabV3Plus,
        _batch: &crate::batch::TrainBatch,
        _ctx: &mut crate::train::StepCtx,
    ) -> Result<crate::train::StepLosses> {
        Err(crate::Error::Config(format!(
            "semi.method = {}: install its framework with Trainer::set_framework({})",
            self.name, self.provider
        )))
    }
}
