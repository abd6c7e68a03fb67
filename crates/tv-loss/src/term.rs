//! [`TvTerm`]: the TV loss as a plug-in [`AuxTerm`] on any framework (supervised, FixMatch, UniMatch,
//! mean teacher): `L = L_base + λ(t)·TV(softmax(z))` on the predictions `tv.apply_to` selects.
//!
//! In the paper's sparse-pixel setting the labelled masks are 255 except at a small fraction of pixels (the
//! `data` crate's sparse-label mode), so `L_base` is the CE mean over the labelled pixels only, while TV uses the
//! batch's `valid` map and therefore covers every non-padded pixel, labelled or not.

use candle_core::{DType, Tensor};
use core_seg::model::DeepLabV3Plus;
use core_seg::nn::Mode;
use core_seg::plugin::StepCtx;
use core_seg::plugin::{AuxTerm, StepTensors};
use core_seg::{bail_arg, Result};

use crate::config::{ApplyTo, TvAt, TvConfig};
use crate::contrast::contrast_weights;
use crate::tv::tv_loss_weighted;

/// The TV loss term. It has no parameters and draws nothing from the run's RNG.
#[derive(Debug, Clone)]
pub struct TvTerm {
    pub cfg: TvConfig,
}

impl TvTerm {
    /// A term for a validated config.
    pub fn new(cfg: TvConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Self { cfg })
    }

    /// The logits, valid maps and input images (`[B,K,h,w]`, `[B,h,w]`, `[B,3,H,W]`) the term is applied to, at
    /// the configured resolution.
    pub fn inputs(&self, model: &DeepLabV3Plus, step: &StepTensors) -> Result<(Tensor, Tensor, Tensor)> {
        let nl = step.n_labeled;
        let rows = step.out.logits.dim(0)?;
        let weak = step.unlabeled.as_ref().filter(|u| u.weak.dim(0).is_ok_and(|bu| rows >= nl + bu));
        let (lab, unl, strong) = match (self.cfg.apply_to, weak) {
            (ApplyTo::Auto, w) => (true, w.is_some(), false),
            (ApplyTo::Labeled, _) => (true, false, false),
            (ApplyTo::UnlabeledWeak, Some(_)) => (false, true, false),
            (ApplyTo::Both, Some(_)) => (true, true, false),
            (ApplyTo::AllViews, Some(_)) => (true, true, true),
            (a, None) => {
                bail_arg!("tv.apply_to = {a:?} needs the train-mode weak-view prediction (semi-supervised framework)")
            }
        };
        let at_dec = self.cfg.at == TvAt::Decoder;
        let pick = |logits: &Tensor, dec: &Tensor, start: usize, len: usize| -> Result<Tensor> {
            if at_dec {
                decoder_logits(&dec.narrow(0, start, len)?, model)
            } else {
                Ok(logits.narrow(0, start, len)?)
            }
        };
        let (mut zs, mut vs, mut xs) = (Vec::new(), Vec::new(), Vec::new());
        if lab {
            zs.push(pick(&step.out.logits, &step.out.dec, 0, nl)?);
            vs.push(step.labeled.valid.clone());
            xs.push(step.labeled.image.clone());
        }
        if let (true, Some(u)) = (unl, weak) {
            zs.push(pick(&step.out.logits, &step.out.dec, nl, u.weak.dim(0)?)?);
            vs.push(u.valid.clone());
            xs.push(u.weak.clone());
        }
        if let (true, Some(u)) = (strong, weak) {
            // The framework's CutMixed strong logits are not part of StepTensors: the un-mixed strong views get
            // one extra train-mode forward here.
            let out = model.forward_full(&Tensor::cat(&[&u.strong1, &u.strong2], 0)?, Mode::Train, None)?;
            zs.push(pick(&out.logits, &out.dec, 0, out.logits.dim(0)?)?);
            vs.push(u.valid.clone());
            vs.push(u.valid.clone());
            xs.push(u.strong1.clone());
            xs.push(u.strong2.clone());
        }
        let z = Tensor::cat(&zs, 0)?;
        let x = Tensor::cat(&xs, 0)?;
        let v = Tensor::cat(&vs.iter().map(|v| v.to_dtype(DType::U8)).collect::<candle_core::Result<Vec<_>>>()?, 0)?;
        let (_, _, h, w) = z.dims4()?;
        let v = if v.dims()[1..] == [h, w] { v } else { resample_valid(&v, h, w)? };
        Ok((z, v, x))
    }
}

/// Logits `classifier(dec)` at the decoder's resolution (stride 4 for DeepLabV3+), before upsampling: the model's
/// classifier re-applied to `SegOutput::dec`, exactly and differentiably.
pub fn decoder_logits(dec: &Tensor, model: &DeepLabV3Plus) -> Result<Tensor> {
    model.classifier().forward(dec)
}

/// The valid map `[B,H,W]` sampled at the `h × w` decoder grid (align_corners: low-res pixel `i` sits at full-res
/// `i·(H−1)/(h−1)`, nearest pixel).
pub fn resample_valid(v: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let (_, hh, ww) = v.dims3()?;
    let idx = |n: usize, full: usize| -> Result<Tensor> {
        let f = |i: usize| if n > 1 { ((i * (full - 1)) as f64 / (n - 1) as f64).round() as u32 } else { 0 };
        Ok(Tensor::from_vec((0..n).map(f).collect::<Vec<_>>(), n, v.device())?)
    };
    Ok(v.index_select(&idx(h, hh)?, 1)?.index_select(&idx(w, ww)?, 2)?)
}

impl AuxTerm for TvTerm {
    fn name(&self) -> &str {
        "tv"
    }

    /// `[("loss_tv", λ(t)·TV)]`. With `λ(t) = 0` the term is a constant 0 outside the graph, so the trajectory is
    /// bit-identical to the run without the term.
    fn losses(
        &mut self,
        model: &DeepLabV3Plus,
        step: &StepTensors,
        ctx: &mut StepCtx,
    ) -> Result<Vec<(String, Tensor)>> {
        let lambda = self.cfg.weight_at(ctx.iter, ctx.total_iters);
        let logits = &step.out.logits;
        if lambda == 0.0 {
            return Ok(vec![("loss_tv".into(), Tensor::zeros((), logits.dtype(), logits.device())?)]);
        }
        let (z, v, x) = self.inputs(model, step)?;
        let pairs = if self.cfg.contrast { Some(contrast_weights(&x)?) } else { None };
        let tv = tv_loss_weighted(&z, Some(&v), pairs.as_ref(), &self.cfg)?;
        Ok(vec![("loss_tv".into(), tv.affine(lambda, 0.0)?)])
    }
}

/// Fraction of valid pixels predicted as each class (`argmax_K z`) — a too large λ collapses P to a constant map,
/// visible here as one class near 1 (hence logged). `valid [N,H,W]` or `None`.
pub fn class_histogram(logits: &Tensor, valid: Option<&Tensor>) -> Result<Vec<f64>> {
    let (n, k, h, w) = logits.dims4()?;
    let pred: Vec<u32> = logits.argmax(1)?.flatten_all()?.to_vec1()?;
    let v: Vec<u8> = match valid {
        Some(v) if v.dims() == [n, h, w] => v.to_dtype(DType::U8)?.flatten_all()?.to_vec1()?,
        Some(v) => bail_arg!("class_histogram: valid {:?} vs logits {:?}", v.dims(), logits.dims()),
        None => vec![1; n * h * w],
    };
    let mut hist = vec![0.0; k];
    for (&c, &ok) in pred.iter().zip(&v) {
        if ok != 0 {
            hist[c as usize] += 1.0;
        }
    }
    let total: f64 = hist.iter().sum();
    Ok(hist.into_iter().map(|x| if total > 0.0 { x / total } else { 0.0 }).collect())
}

/// The TV term for a config (what `xtask` registers through `Trainer::add_aux_term`).
pub fn build(cfg: &TvConfig) -> Result<Box<dyn AuxTerm>> {
    Ok(Box::new(TvTerm::new(*cfg)?))
}
