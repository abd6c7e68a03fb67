//! UniMatch (`unimatch.py`): FixMatch with two independently CutMixed strong views and a feature-
//! perturbation stream on the weak view.
//!
//! `L = (L_x + w_s·L_s1 + w_s·L_s2 + w_fp·L_fp) · w_out` with `L_x` the labelled criterion and the
//! unsupervised terms normalised by non-padded pixels ([`super::unsup_loss`]).

use candle_core::Tensor;

use super::aux::{Pseudo, StepTensors};
use super::{mask_ratio, paste_box, pseudo_label, unsup_loss, FpOn, MixPredBn, SemiConfig};
use crate::batch::{TrainBatch, UnlabeledBatch};
use crate::model::DeepLabV3Plus;
use crate::nn::Mode;
use crate::train::{Framework, StepCtx, StepLosses};
use crate::{Error, Result};

/// `(L_x + w_s·L_s1 + w_s·L_s2 + w_fp·L_fp) · w_out`.
pub fn combine(cfg: &SemiConfig, lx: &Tensor, ls1: &Tensor, ls2: &Tensor, lfp: &Tensor) -> Result<Tensor> {
    let s = ((ls1 + ls2)? * cfg.w_s)?;
    Ok(((lx + s)? + (lfp * cfg.w_fp)?)?.affine(cfg.w_out, 0.0)?)
}

/// The UniMatch framework.
pub struct UniMatch {
    pub cfg: SemiConfig,
}

impl UniMatch {
    pub fn new(cfg: SemiConfig) -> Self {
        Self { cfg }
    }
}

/// Pseudo-labels of the mix images, predicted without gradient (eval-mode BN by default).
pub(super) fn mix_prediction(model: &DeepLabV3Plus, mix: &UnlabeledBatch, bn: MixPredBn) -> Result<(Tensor, Tensor)> {
    let mode = if bn == MixPredBn::Eval { Mode::Eval } else { Mode::Train };
    pseudo_label(&model.forward_t(&mix.weak, mode)?.detach())
}

pub(super) fn unlabeled_parts(batch: &TrainBatch) -> Result<(&UnlabeledBatch, &UnlabeledBatch)> {
    match (&batch.unlabeled, &batch.mix) {
        (Some(u), Some(m)) => Ok((u, m)),
        _ => Err(Error::InvalidArgument("semi-supervised framework needs unlabelled and mix batches".into())),
    }
}

impl Framework for UniMatch {
    fn name(&self) -> &str {
        "unimatch"
    }

    fn losses(&mut self, model: &DeepLabV3Plus, batch: &TrainBatch, ctx: &mut StepCtx) -> Result<StepLosses> {
        let cfg = &self.cfg;
        let (u, mix) = unlabeled_parts(batch)?;
        let nl = batch.labeled.image.dim(0)?;
        // (a) mix pseudo-labels; (b) CutMix in image space.
        let (conf_m, y_m) = mix_prediction(model, mix, cfg.mix_pred_bn)?;
        let b1 = u.box1.unsqueeze(1)?.broadcast_as(u.strong1.shape())?.to_dtype(candle_core::DType::U8)?;
        let b2 = u.box2.unsqueeze(1)?.broadcast_as(u.strong2.shape())?.to_dtype(candle_core::DType::U8)?;
        let x_s1 = b1.where_cond(&mix.strong1, &u.strong1)?;
        let x_s2 = b2.where_cond(&mix.strong2, &u.strong2)?;
        // (c) one encoder pass on cat(x_l, x_w) with the FP decoder stream, one on the strong views.
        let x = Tensor::cat(&[&batch.labeled.image, &u.weak], 0)?;
        let fp = match cfg.fp_on {
            FpOn::Weak => Some((cfg.fp_dropout, &mut *ctx.rng)),
            FpOn::None => None,
        };
        let out = model.forward_full(&x, Mode::Train, fp)?;
        let p_x = out.logits.narrow(0, 0, nl)?;
        let p_w = out.logits.narrow(0, nl, u.weak.dim(0)?)?;
        let p_s = model.forward_t(&Tensor::cat(&[&x_s1, &x_s2], 0)?, Mode::Train)?;
        let bu = u.weak.dim(0)?;
        let (p_s1, p_s2) = (p_s.narrow(0, 0, bu)?, p_s.narrow(0, bu, bu)?);
        // (d) pseudo-labels from the train-mode weak prediction, pasted with the mix ones inside the boxes.
        let (conf_w, y_w) = pseudo_label(&p_w)?;
        let tau = cfg.conf_thresh;
        let pasted = |bx: &Tensor| -> Result<(Tensor, Tensor, Tensor)> {
            Ok((paste_box(bx, &y_m, &y_w)?, paste_box(bx, &conf_m, &conf_w)?, paste_box(bx, &mix.ignore, &u.ignore)?))
        };
        let (y1, c1, i1) = pasted(&u.box1)?;
        let (y2, c2, i2) = pasted(&u.box2)?;
        // (e) losses.
        let lx = cfg.criterion.loss(&p_x, &batch.labeled.mask)?;
        let ls1 = unsup_loss(&p_s1, &y1, &c1, &i1, tau)?;
        let ls2 = unsup_loss(&p_s2, &y2, &c2, &i2, tau)?;
        let lfp = match &out.logits_fp {
            Some(fp) => unsup_loss(&fp.narrow(0, nl, bu)?, &y_w, &conf_w, &u.ignore, tau)?,
            None => lx.zeros_like()?,
        };
        let total = combine(cfg, &lx, &ls1, &ls2, &lfp)?;
        let ls = ((&ls1 + &ls2)? * 0.5)?;
        let stats = vec![("mask_ratio".to_string(), mask_ratio(&conf_w, &u.ignore, tau)?)];
        let pseudo = Some(Pseudo { label: y_w, conf: conf_w, ignore: u.ignore.clone() });
        let tensors = StepTensors {
            labeled: batch.labeled.clone(),
            unlabeled: Some(u.clone()),
            out,
            n_labeled: nl,
            pseudo,
            conf_thresh: tau,
        };
        Ok(StepLosses {
            total,
            terms: vec![
                ("loss_x".into(), lx.detach()),
                ("loss_s".into(), ls.detach()),
                ("loss_w_fp".into(), lfp.detach()),
            ],
            stats,
            tensors: Some(tensors),
        })
    }
}
