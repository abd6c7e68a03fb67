//! UniMatch (`unimatch.py`): FixMatch with two independently CutMixed strong views and a feature-
//! perturbation stream on the weak view.
//!
//! `L = (L_x + w_s·L_s1 + w_s·L_s2 + w_fp·L_fp) · w_out` with `L_x` the labelled criterion and the
//! unsupervised terms normalised by non-padded pixels ([`super::unsup_loss`]).

use candle_core::Tensor;

use super::common::{
    cutmix_images, mix_prediction, paste_pseudo, paste_valid, pseudo_label, semi_step_losses, unsup_loss,
};
use super::{FpOn, SemiConfig};
use crate::batch::TrainBatch;
use crate::model::DeepLabV3Plus;
use crate::nn::Mode;
use crate::plugin::{Framework, Pseudo, StepCtx, StepLosses, StrongPass};
use crate::Result;

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

impl Framework for UniMatch {
    fn name(&self) -> &str {
        "unimatch"
    }

    fn losses(&mut self, model: &DeepLabV3Plus, batch: &TrainBatch, ctx: &mut StepCtx) -> Result<StepLosses> {
        let cfg = &self.cfg;
        let (u, mix) = batch.unlabeled_pair()?;
        let (nl, bu) = (batch.labeled.image.dim(0)?, u.weak.dim(0)?);
        // (a) mix pseudo-labels (no grad); (b) CutMix in image space.
        let (conf_m, y_m) = mix_prediction(model, mix, cfg.mix_pred_bn)?;
        let x_s1 = cutmix_images(&u.box1, &mix.strong1, &u.strong1)?;
        let x_s2 = cutmix_images(&u.box2, &mix.strong2, &u.strong2)?;
        // (c) one encoder pass on cat(x_l, x_w) with the FP decoder stream, one on the strong views.
        let fp = match cfg.fp_on {
            FpOn::Weak => Some((cfg.fp_dropout, &mut *ctx.rng)),
            FpOn::None => None,
        };
        let out = model.forward_full(&Tensor::cat(&[&batch.labeled.image, &u.weak], 0)?, Mode::Train, fp)?;
        let p_x = out.logits.narrow(0, 0, nl)?;
        let x_s = Tensor::cat(&[&x_s1, &x_s2], 0)?;
        let out_s = model.forward_full(&x_s, Mode::Train, None)?;
        let p_s = &out_s.logits;
        // (d) pseudo-labels from the train-mode weak prediction, pasted with the mix ones inside the boxes.
        let (conf_w, y_w) = pseudo_label(&out.logits.narrow(0, nl, bu)?)?;
        let weak = Pseudo { label: y_w, conf: conf_w, ignore: u.ignore.clone() };
        let mixp = Pseudo { label: y_m, conf: conf_m, ignore: mix.ignore.clone() };
        let (s1, s2) = (paste_pseudo(&u.box1, &mixp, &weak)?, paste_pseudo(&u.box2, &mixp, &weak)?);
        // (e) losses.
        let tau = cfg.conf_thresh;
        let lx = cfg.criterion.loss(&p_x, &batch.labeled.mask)?;
        let ls1 = unsup_loss(&p_s.narrow(0, 0, bu)?, &s1.label, &s1.conf, &s1.ignore, tau)?;
        let ls2 = unsup_loss(&p_s.narrow(0, bu, bu)?, &s2.label, &s2.conf, &s2.ignore, tau)?;
        let lfp = match &out.logits_fp {
            Some(fp) => unsup_loss(&fp.narrow(0, nl, bu)?, &weak.label, &weak.conf, &weak.ignore, tau)?,
            None => lx.zeros_like()?,
        };
        let total = combine(cfg, &lx, &ls1, &ls2, &lfp)?;
        let ls = ((&ls1 + &ls2)? * 0.5)?;
        let valid = Tensor::cat(&[paste_valid(&u.box1, mix, u)?, paste_valid(&u.box2, mix, u)?], 0)?;
        let pseudo = Pseudo {
            label: Tensor::cat(&[&s1.label, &s2.label], 0)?,
            conf: Tensor::cat(&[&s1.conf, &s2.conf], 0)?,
            ignore: Tensor::cat(&[&s1.ignore, &s2.ignore], 0)?,
        };
        let strong = StrongPass { images: x_s, valid, pseudo, out: out_s };
        let terms = vec![("loss_x", &lx), ("loss_s", &ls), ("loss_w_fp", &lfp)];
        semi_step_losses(batch, out, weak, tau, total, terms, strong)
    }
}
