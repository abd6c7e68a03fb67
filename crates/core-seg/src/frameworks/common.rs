//! Pieces the semi-supervised frameworks share, each a pure function with the equation in its doc:
//! - [`paste_box`]: CutMix of pseudo-labels, confidences and ignore masks.
//! - [`unsup_loss`]: `Σ_p CE_px·[conf ≥ τ]·[ign ≠ 255] / Σ_p [ign ≠ 255]`.
//! - [`pseudo_label`]: confidence and argmax of a detached prediction.

use candle_core::{DType, Tensor};

use super::MixPredBn;
use crate::batch::{TrainBatch, UnlabeledBatch};
use crate::model::DeepLabV3Plus;
use crate::nn::Mode;
use crate::ops::{cross_entropy_per_pixel, masked_mean, IGNORE_INDEX};
use crate::plugin::{Pseudo, StepLosses, StepTensors, StrongPass};
use crate::Result;

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
pub fn paste_valid(boxes: &Tensor, mix: &UnlabeledBatch, u: &UnlabeledBatch) -> Result<Tensor> {
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
pub(super) fn semi_step_losses(
    batch: &TrainBatch,
    out: crate::model::SegOutput,
    weak: Pseudo,
    tau: f64,
    total: Tensor,
    terms: Vec<(&str, &Tensor)>,
    strong: StrongPass,
) -> Result<StepLosses> {
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
    Ok(StepLosses { total, terms, stats, tensors: Some(tensors) })
}

/// Pseudo-labels of the mix images, predicted without gradient (eval-mode BN by default).
pub(super) fn mix_prediction(model: &DeepLabV3Plus, mix: &UnlabeledBatch, bn: MixPredBn) -> Result<(Tensor, Tensor)> {
    let mode = if bn == MixPredBn::Eval { Mode::Eval } else { Mode::Train };
    pseudo_label(&model.forward_t(&mix.weak, mode)?.detach())
}
