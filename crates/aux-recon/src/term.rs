//! `ReconTerm`: the reconstruction branch as an [`AuxTerm`] on any framework (`docs/aux-recon.md`).

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;
use core_seg::frameworks::{Method, SemiConfig};
use core_seg::model::{DeepLabConfig, DeepLabV3Plus, SegOutput};
use core_seg::nn::{Mode, ParamStore};
use core_seg::plugin::StepCtx;
use core_seg::plugin::{AuxTerm, StepTensors};
use core_seg::{Error, Result};

use crate::config::{ReconConfig, ReconInput, ReconMode, ValidFrom, Views};
use crate::decoder::{ReconDecoder, ReconOutput};
use crate::foreground;
use crate::loss::{compose, masked_rec_loss, psnr};

/// Tag of the branch's own initialisation stream (`SegRng::stream(seed, &[RECON_STREAM])`).
pub const RECON_STREAM: u64 = 0x5245_434f;

/// Parameter prefix of R in the model's store and in checkpoints.
pub const PREFIX: &str = "recon";

/// A `VarBuilder` on `store` whose new variables (R's) draw from the branch's own stream of `seed`, so R's
/// initialisation neither depends on nor changes any other draw; the variables still live in `store` (trained
/// in the head group, saved under `recon.*`).
pub fn var_builder(store: &ParamStore, seed: u64, dtype: DType, device: &candle_core::Device) -> VarBuilder<'static> {
    store.with_stream(seed, &[RECON_STREAM]).var_builder(dtype, device)
}

/// The images one step reconstructs, stacked: features, targets, valid map and (disentangled modes) `m`.
struct Gathered {
    feat: Tensor,
    target: Tensor,
    valid: Tensor,
    fg: Option<Tensor>,
}

fn cat(parts: &[Tensor]) -> Result<Tensor> {
    match parts {
        [one] => Ok(one.clone()),
        _ => Ok(Tensor::cat(parts, 0)?),
    }
}

fn not_ignored(mask: &Tensor, codes: &[u32]) -> Result<Tensor> {
    let mask = mask.to_dtype(DType::U32)?;
    let mut v = mask.ones_like()?.to_dtype(DType::F32)?;
    for &c in codes {
        v = (v * mask.ne(c)?.to_dtype(DType::F32)?)?;
    }
    Ok(v)
}

/// One step's reconstruction: unweighted `L_rec`, `x̂` (composed for `fgbg`), the stacked targets `x`, the valid
/// map `V` and the foreground map `m` (disentangled modes), rows = labelled, weak, strong views in that order.
#[derive(Debug, Clone)]
pub struct ReconStep {
    pub loss: Tensor,
    pub x_hat: Tensor,
    pub target: Tensor,
    pub valid: Tensor,
    pub fg: Option<Tensor>,
}

/// The reconstruction branch: the decoder R and the loss `λ(t)·L_rec`.
pub struct ReconTerm {
    pub cfg: ReconConfig,
    pub decoder: ReconDecoder,
    fg: Vec<u32>,
    stats: Vec<(String, f64)>,
}

impl ReconTerm {
    /// Builds the term; R's parameters are created through `vb` under `recon.` (see [`var_builder`]). With
    /// `semi`, settings the framework cannot serve are rejected here, naming the key.
    pub fn new(cfg: &ReconConfig, semi: Option<&SemiConfig>, model: &DeepLabConfig, vb: VarBuilder) -> Result<Self> {
        let g = cfg.geometry(model)?;
        if semi.is_some_and(|s| s.method == Method::Supervised) {
            if cfg.views == Views::LabeledWeak {
                return Err(Error::Config("recon.views = labeled+weak needs a semi-supervised semi.method".into()));
            }
            if cfg.on_strong {
                return Err(Error::Config("recon.on_strong needs a framework with strong views".into()));
            }
        }
        let decoder = ReconDecoder::new(&g, vb.pp(PREFIX))?;
        Ok(Self { cfg: cfg.clone(), decoder, fg: cfg.foreground(model.nclass), stats: Vec::new() })
    }

    fn feature<'a>(&self, out: &'a SegOutput) -> &'a Tensor {
        match self.cfg.input {
            ReconInput::C4 => &out.enc.c4,
            ReconInput::Aspp => &out.aspp,
        }
    }

    fn needs_fg(&self) -> bool {
        self.cfg.mode != ReconMode::Plain
    }

    /// Rows of the clean forward and, with `on_strong`, the strong views.
    fn gather(&self, step: &StepTensors) -> Result<Gathered> {
        let cfg = &self.cfg;
        let nl = step.n_labeled;
        let l = &step.labeled;
        let weak = match (cfg.views, &step.unlabeled, &step.pseudo) {
            (Views::Labeled, _, _) => None,
            (_, Some(u), Some(p)) => Some((u, p)),
            (Views::LabeledWeak, _, _) => {
                return Err(Error::InvalidArgument("recon.views = labeled+weak: the framework has no weak view".into()))
            }
            (Views::Auto, _, _) => None,
        };
        let rows = nl + weak.map(|(u, _)| u.weak.dim(0)).transpose()?.unwrap_or(0);
        let mut feat = vec![self.feature(&step.out).narrow(0, 0, rows)?];
        let mut target = vec![l.image.clone()];
        let mut valid = vec![match cfg.valid_from {
            ValidFrom::ValidMap => l.valid.to_dtype(DType::F32)?,
            ValidFrom::Mask => not_ignored(&l.mask, &[254, 255])?,
        }];
        let mut fg = Vec::new();
        if self.needs_fg() {
            let logits = step.out.logits.narrow(0, 0, nl)?;
            fg.push(foreground::labeled(&l.mask, &logits, &self.fg, cfg.fg_source_l)?);
        }
        if let Some((u, p)) = weak {
            target.push(u.weak.clone());
            valid.push(match cfg.valid_from {
                ValidFrom::ValidMap => u.valid.to_dtype(DType::F32)?,
                ValidFrom::Mask => not_ignored(&u.ignore, &[255])?,
            });
            if self.needs_fg() {
                let logits = step.out.logits.narrow(0, nl, u.weak.dim(0)?)?;
                fg.push(foreground::unlabeled(p, &logits, &self.fg, step.conf_thresh, cfg.fg_source_u)?);
            }
        }
        if cfg.on_strong {
            let s = step.strong.as_ref().ok_or_else(|| {
                Error::InvalidArgument("recon.on_strong: the framework has no strong views (supervised)".into())
            })?;
            feat.push(self.feature(&s.out).clone());
            target.push(s.images.clone());
            valid.push(match cfg.valid_from {
                ValidFrom::ValidMap => s.valid.to_dtype(DType::F32)?,
                ValidFrom::Mask => not_ignored(&s.pseudo.ignore, &[255])?,
            });
            if self.needs_fg() {
                fg.push(foreground::unlabeled(&s.pseudo, &s.out.logits, &self.fg, step.conf_thresh, cfg.fg_source_u)?);
            }
        }
        let fg = if fg.is_empty() { None } else { Some(cat(&fg)?) };
        Ok(Gathered { feat: cat(&feat)?, target: cat(&target)?, valid: cat(&valid)?, fg })
    }

    /// Unweighted `L_rec` of a step, with what it was computed from.
    pub fn loss(&self, step: &StepTensors) -> Result<ReconStep> {
        let v = self.gather(step)?;
        let (_, _, h, w) = v.target.dims4()?;
        let feat = if self.cfg.detach { v.feat.detach() } else { v.feat.clone() };
        let out = self.decoder.forward(&feat, (h, w), Mode::Train)?;
        let need = || v.fg.clone().ok_or_else(|| Error::InvalidArgument("recon: no foreground map".into()));
        let x_hat = match out {
            ReconOutput::Plain(x) => x,
            ReconOutput::Split { obj, bg } => compose(&need()?, &obj, &bg)?,
        };
        let weight = match self.cfg.mode {
            ReconMode::Fgonly => (&v.valid * need()?)?,
            ReconMode::Plain | ReconMode::Fgbg => v.valid.clone(),
        };
        let loss = masked_rec_loss(&x_hat, &v.target, &weight, self.cfg.loss)?;
        Ok(ReconStep { loss, x_hat, target: v.target, valid: v.valid, fg: v.fg })
    }
}

impl AuxTerm for ReconTerm {
    fn name(&self) -> &str {
        "recon"
    }

    /// `λ_rec(t)·L_rec`, logged as `loss_recon`; stats `recon_loss` (unweighted `L_rec`), `recon_psnr` (dB, valid
    /// pixels, [0, 1] scale) and, in the disentangled modes, `recon_fg_fraction` (`Σ V·m / Σ V`).
    fn losses(
        &mut self,
        _model: &DeepLabV3Plus,
        step: &StepTensors,
        ctx: &mut StepCtx,
    ) -> Result<Vec<(String, Tensor)>> {
        let r = self.loss(step)?;
        let scalar = |t: &Tensor| -> Result<f64> { Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?) };
        self.stats = vec![
            ("recon_loss".to_string(), scalar(&r.loss)?),
            ("recon_psnr".to_string(), psnr(&r.x_hat, &r.target, &r.valid)?),
        ];
        if let Some(m) = &r.fg {
            let fg = scalar(&(m * &r.valid)?.sum_all()?)? / scalar(&r.valid.sum_all()?)?.max(1.0);
            self.stats.push(("recon_fg_fraction".to_string(), fg));
        }
        Ok(vec![("loss_recon".to_string(), (r.loss * self.cfg.weight_at(ctx.iter))?)])
    }

    fn stats(&self) -> Vec<(String, f64)> {
        self.stats.clone()
    }
}

/// The term for the trainer: `Trainer::add_aux_term(|vb| aux_recon::build(&cfg, Some(&semi), &model_cfg, vb))`,
/// ideally with `vb` from [`var_builder`] so R has its own initialisation stream.
pub fn build(
    cfg: &ReconConfig,
    semi: Option<&SemiConfig>,
    model: &DeepLabConfig,
    vb: VarBuilder,
) -> Result<Box<dyn AuxTerm>> {
    Ok(Box::new(ReconTerm::new(cfg, semi, model, vb)?))
}
