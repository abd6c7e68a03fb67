//! FixMatch (`fixmatch.py`): one CutMixed strong view supervised by the weak view's confident
//! pseudo-labels; `L = (L_x + L_s) · w_out` (w_out = ½).

use candle_core::Tensor;

use super::aux::{Pseudo, StepTensors};
use super::unimatch::{mix_prediction, unlabeled_parts};
use super::{mask_ratio, paste_box, pseudo_label, unsup_loss, SemiConfig};
use crate::batch::{TrainBatch, UnlabeledBatch};
use crate::model::DeepLabV3Plus;
use crate::nn::Mode;
use crate::train::{Framework, StepCtx, StepLosses};
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

/// FixMatch's step given the weak and mix pseudo-labels `(conf, label)`; `None` for the weak ones means
/// "take them from the student's train-mode weak prediction" (FixMatch), `Some` supplies a teacher's.
pub(super) fn fixmatch_step(
    cfg: &SemiConfig,
    model: &DeepLabV3Plus,
    batch: &TrainBatch,
    mix_pl: (Tensor, Tensor),
    weak_pl: Option<(Tensor, Tensor)>,
) -> Result<StepLosses> {
    let (u, mix): (&UnlabeledBatch, &UnlabeledBatch) = unlabeled_parts(batch)?;
    let (conf_m, y_m) = mix_pl;
    let nl = batch.labeled.image.dim(0)?;
    let bu = u.weak.dim(0)?;
    let b1 = u.box1.unsqueeze(1)?.broadcast_as(u.strong1.shape())?.to_dtype(candle_core::DType::U8)?;
    let x_s = b1.where_cond(&mix.strong1, &u.strong1)?;
    let x = Tensor::cat(&[&batch.labeled.image, &u.weak], 0)?;
    let out = model.forward_full(&x, Mode::Train, None)?;
    let p_x = out.logits.narrow(0, 0, nl)?;
    let (conf_w, y_w) = match weak_pl {
        Some(pl) => pl,
        None => pseudo_label(&out.logits.narrow(0, nl, bu)?)?,
    };
    let p_s = model.forward_t(&x_s, Mode::Train)?;
    let y1 = paste_box(&u.box1, &y_m, &y_w)?;
    let c1 = paste_box(&u.box1, &conf_m, &conf_w)?;
    let i1 = paste_box(&u.box1, &mix.ignore, &u.ignore)?;
    let tau = cfg.conf_thresh;
    let lx = cfg.criterion.loss(&p_x, &batch.labeled.mask)?;
    let ls = unsup_loss(&p_s, &y1, &c1, &i1, tau)?;
    let total = ((&lx + &ls)? * cfg.w_out)?;
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
        terms: vec![("loss_x".into(), lx.detach()), ("loss_s".into(), ls.detach())],
        stats,
        tensors: Some(tensors),
    })
}

impl Framework for FixMatch {
    fn name(&self) -> &str {
        "fixmatch"
    }

    fn losses(&mut self, model: &DeepLabV3Plus, batch: &TrainBatch, _ctx: &mut StepCtx) -> Result<StepLosses> {
        let (_, mix) = unlabeled_parts(batch)?;
        let mix_pl = mix_prediction(model, mix, self.cfg.mix_pred_bn)?;
        fixmatch_step(&self.cfg, model, batch, mix_pl, None)
    }
}
