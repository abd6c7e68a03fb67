//! FixMatch (`fixmatch.py`): one CutMixed strong view supervised by the weak view's confident
//! pseudo-labels; `L = (L_x + L_s) · w_out` (w_out = ½).

use candle_core::Tensor;

use super::common::{
    cutmix_images, mix_prediction, paste_pseudo, paste_valid, pseudo_label, semi_step_losses, unsup_loss,
};
use super::SemiConfig;
use crate::batch::TrainBatch;
use crate::model::DeepLabV3Plus;
use crate::nn::Mode;
use crate::plugin::{Framework, Pseudo, StepCtx, StepLosses, StrongPass};
use crate::Result;

/// The FixMatch framework.
pub struct FixMatch {
    pub cfg: SemiConfig,
}

impl FixMatch {
    pub fn new(cfg: SemiConfig) -> Self {
        Self { cfg }
    }
}

/// FixMatch's step given the mix pseudo-labels `(conf, label)`; `weak_pl = None` takes the weak ones from
/// the student's train-mode weak prediction (FixMatch), `Some` supplies a teacher's (mean teacher).
pub(super) fn fixmatch_step(
    cfg: &SemiConfig,
    model: &DeepLabV3Plus,
    batch: &TrainBatch,
    (conf_m, y_m): (Tensor, Tensor),
    weak_pl: Option<(Tensor, Tensor)>,
) -> Result<StepLosses> {
    let (u, mix) = batch.unlabeled_pair()?;
    let (nl, bu) = (batch.labeled.image.dim(0)?, u.weak.dim(0)?);
    let x_s = cutmix_images(&u.box1, &mix.strong1, &u.strong1)?;
    let out = model.forward_full(&Tensor::cat(&[&batch.labeled.image, &u.weak], 0)?, Mode::Train, None)?;
    let p_x = out.logits.narrow(0, 0, nl)?;
    let (conf_w, y_w) = match weak_pl {
        Some(pl) => pl,
        None => pseudo_label(&out.logits.narrow(0, nl, bu)?)?,
    };
    let out_s = model.forward_full(&x_s, Mode::Train, None)?;
    let weak = Pseudo { label: y_w, conf: conf_w, ignore: u.ignore.clone() };
    let s1 = paste_pseudo(&u.box1, &Pseudo { label: y_m, conf: conf_m, ignore: mix.ignore.clone() }, &weak)?;
    let tau = cfg.conf_thresh;
    let lx = cfg.criterion.loss(&p_x, &batch.labeled.mask)?;
    let ls = unsup_loss(&out_s.logits, &s1.label, &s1.conf, &s1.ignore, tau)?;
    let total = ((&lx + &ls)? * cfg.w_out)?;
    let strong = StrongPass { images: x_s, valid: paste_valid(&u.box1, mix, u)?, pseudo: s1, out: out_s };
    semi_step_losses(batch, out, weak, tau, total, vec![("loss_x", &lx), ("loss_s", &ls)], strong)
}

impl Framework for FixMatch {
    fn name(&self) -> &str {
        "fixmatch"
    }

    fn losses(&mut self, model: &DeepLabV3Plus, batch: &TrainBatch, _ctx: &mut StepCtx) -> Result<StepLosses> {
        let (_, mix) = batch.unlabeled_pair()?;
        let mix_pl = mix_prediction(model, mix, self.cfg.mix_pred_bn)?;
        fixmatch_step(&self.cfg, model, batch, mix_pl, None)
    }
}
