//! The GuidedMix step as a [`Framework`]: one backbone pass on `cat(x_l, x_u)`, the main head on each half,
//! the mixed head on the mixture, the decoupled logits and the losses (`docs/guidedmix.md`).
//!
//! One difference from the code, in BN bookkeeping only: the code re-runs the main `image_pool` to build
//! `A_l` and `A_u` (same values, a second running-statistics update of that BN per half); here `A` is the
//! head's own first stage, so every BN sees each batch once. λ, the pairs and the classifier dropout masks are
//! drawn from the run's RNG (`ctx.rng`).

use candle_core::Tensor;
use candle_nn::VarBuilder;
use core_seg::batch::TrainBatch;
use core_seg::model::{DeepLabConfig, DeepLabV3Plus, EncoderFeatures, HeadFeatures, HeadKind, SegHead, SegOutput};
use core_seg::nn::Mode;
use core_seg::ops::resize_bilinear;
use core_seg::plugin::{Framework, StepCtx, StepLosses};
use core_seg::plugin::{Pseudo, StepTensors};
use core_seg::rng::SegRng;
use core_seg::Result;

use crate::config::{Direction, GuidedMixConfig, MixSpace, Pairing, UnsupLoss};
use crate::loss::{ce_all, labeled_ce, sigmoid_focal_loss};
use crate::mitrans::MITrans;
use crate::pairing::{align_loss, gap, pair_indices, random_pairs, sample_lambda, similar_pairs};

/// Values of λ and of the pairs fixed by the caller instead of drawn (tests, analyses).
#[derive(Debug, Clone, Default)]
pub struct Forced {
    pub lambda: Option<f64>,
    pub pairs: Option<Vec<(usize, usize)>>,
}

/// What the unlabelled branch computed (`None` in [`MixStep`] for the supervised baseline).
pub struct MixParts {
    pub lambda: f64,
    /// `(l_k, u_k)`: labelled and unlabelled row of pair `k`.
    pub pairs: Vec<(usize, usize)>,
    /// Main-head logits of the unlabelled images `[B_u, C, h, w]`.
    pub z_u: Tensor,
    /// The mixed head's input (after MITrans when on).
    pub a_m: HeadFeatures,
    /// Mixed-head logits `[P, C, h, w]`.
    pub z_m: Tensor,
    /// Decoupled logits `z_m − λ·z_l[l_k]`.
    pub zt_u: Tensor,
    pub loss_uns: Tensor,
    pub loss_ldec: Option<Tensor>,
    pub loss_align: Option<Tensor>,
}

/// One step's tensors and losses.
pub struct MixStep {
    /// Backbone output on `cat(x_l, x_u)` (labelled rows only without the unlabelled branch).
    pub enc: EncoderFeatures,
    /// Main-head feature map and logits `[B_l, C, h, w]` of the labelled images.
    pub dec_l: Tensor,
    pub z_l: Tensor,
    pub dec_u: Option<Tensor>,
    /// Projected ASPP map of the rows of `enc` ([`core_seg::model::SegHead::tail_full`]).
    pub aspp: Tensor,
    pub loss_sup: Tensor,
    pub mix: Option<MixParts>,
    pub total: Tensor,
}

/// GuidedMix-Net: the mixed head (`decode_head_mix.*`, or `head_mix.*` on DeepLabV3+) and MITrans.
pub struct GuidedMix {
    pub cfg: GuidedMixConfig,
    pub mix_head: SegHead,
    pub mitrans: Option<MITrans>,
}

/// Parameter prefix of the mixed head.
pub fn mix_head_prefix(kind: HeadKind) -> &'static str {
    match kind {
        HeadKind::Deeplabv3 => "decode_head_mix",
        HeadKind::Deeplabv3plus => "head_mix",
    }
}

impl GuidedMix {
    /// Builds the mixed head (a second, independently initialised head of the model's kind) and MITrans on
    /// `vb`, the model's store.
    pub fn new(cfg: &GuidedMixConfig, model: &DeepLabConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let c4 = model.encoder_channels()?[3];
        let a_width = 5 * model.aspp_channels.unwrap_or(c4 / 8);
        let (mitrans, tail_in) = if cfg.mitrans {
            let ch = cfg.mitrans_channels.unwrap_or(a_width);
            (Some(MITrans::new(a_width, ch, cfg.mitrans_reduction, vb.pp("mitrans"))?), Some(ch))
        } else {
            (None, None)
        };
        let mix_head = SegHead::new(model, tail_in, vb.pp(mix_head_prefix(model.head)))?;
        Ok(Self { cfg: cfg.clone(), mix_head, mitrans })
    }

    fn dropout<'r>(&self, mode: Mode, rng: &'r mut SegRng) -> Option<(f64, &'r mut SegRng)> {
        (mode.is_train() && self.cfg.cls_dropout > 0.0).then_some((self.cfg.cls_dropout, rng))
    }

    /// The whole step on labelled `(x_l, y_l)` and unlabelled `x_u`, BN in `mode`, draws from `rng` unless
    /// `forced`. Logit maps are at the head's resolution (stride 8 for DeepLabV3 at OS 8, 4 for DeepLabV3+).
    /// With `unsup_weight = align_weight = 0` (the supervised baseline of the same code) only `L_sup` is
    /// computed; the backbone still sees `cat(x_l, x_u)` when `x_u` is given.
    #[allow(clippy::too_many_arguments)]
    pub fn run_step(
        &self,
        model: &DeepLabV3Plus,
        x_l: &Tensor,
        y_l: &Tensor,
        x_u: Option<&Tensor>,
        mode: Mode,
        forced: &Forced,
        rng: &mut SegRng,
    ) -> Result<MixStep> {
        let cfg = &self.cfg;
        let nl = x_l.dim(0)?;
        // F = backbone(cat(x_l, x_u)): BN statistics over all 2B images.
        let enc = match x_u {
            Some(u) => model.backbone.forward_t(&Tensor::cat(&[x_l, u], 0)?, mode)?,
            None => model.backbone.forward_t(x_l, mode)?,
        };
        let rows = |t: &Tensor, s: usize, n: usize| -> Result<Tensor> { Ok(t.narrow(0, s, n)?) };
        let head = &model.head;
        let f_l = head.features(&rows(&enc.c1, 0, nl)?, &rows(&enc.c4, 0, nl)?, mode)?;
        let (aspp_l, dec_l, z_l) = head.tail_full(&f_l, mode, self.dropout(mode, rng))?;
        let (h, w) = (y_l.dim(1)?, y_l.dim(2)?);
        let loss_sup = labeled_ce(&resize_bilinear(&z_l, (h, w), head.align_corners())?, y_l, cfg.ce_reduction)?;
        let x_u = match x_u {
            Some(u) if cfg.unlabeled_active() => u,
            None if cfg.unlabeled_active() => core_seg::bail_arg!("guidedmix needs an unlabelled batch"),
            _ => {
                let total = loss_sup.clone();
                return Ok(MixStep { enc, dec_l, z_l, dec_u: None, aspp: aspp_l, total, loss_sup, mix: None });
            }
        };
        let nu = x_u.dim(0)?;
        let f_u = head.features(&rows(&enc.c1, nl, nu)?, &rows(&enc.c4, nl, nu)?, mode)?;
        let (aspp_u, dec_u, z_u) = head.tail_full(&f_u, mode, self.dropout(mode, rng))?;
        let aspp = Tensor::cat(&[aspp_l, aspp_u], 0)?;
        // λ and the pairs (l_k, u_k).
        let lambda = match forced.lambda {
            Some(l) => l,
            None => sample_lambda(rng, cfg.lambda_factor)?,
        };
        let (g_l, g_u) = (gap(&rows(&enc.c4, 0, nl)?)?, gap(&rows(&enc.c4, nl, nu)?)?);
        let pairs = match (&forced.pairs, cfg.pairing) {
            (Some(p), _) => p.clone(),
            (None, Pairing::Random) => random_pairs(rng, nl, nu)?,
            (None, Pairing::Similar) => similar_pairs(&g_l, &g_u)?,
        };
        if pairs.iter().any(|&(l, u)| l >= nl || u >= nu) || pairs.is_empty() {
            core_seg::bail_arg!("guidedmix: pairs {pairs:?} outside {nl} labelled × {nu} unlabelled rows");
        }
        let (li, ui) = pair_indices(&pairs, x_l.device())?;
        // A_m = λ·A_l[l_k] + (1 − λ)·A_u[u_k] (features), or the mixed head's own features of the mixed image.
        let a_m = match cfg.mix_space {
            MixSpace::Feature => {
                let sel = |f: &HeadFeatures, i: &Tensor| f.map(|t| Ok(t.index_select(i, 0)?));
                sel(&f_l, &li)?.affine_mix(lambda, &sel(&f_u, &ui)?, 1.0 - lambda)?
            }
            MixSpace::Image => {
                let x_m = ((x_l.index_select(&li, 0)? * lambda)? + (x_u.index_select(&ui, 0)? * (1.0 - lambda))?)?;
                let enc_m = model.backbone.forward_t(&x_m, mode)?;
                self.mix_head.features(&enc_m.c1, &enc_m.c4, mode)?
            }
        };
        let a_m = match &self.mitrans {
            Some(m) => HeadFeatures { aspp: m.forward(&a_m.aspp)?, low: a_m.low.clone() },
            None => a_m,
        };
        let (_, z_m) = self.mix_head.tail(&a_m, mode, self.dropout(mode, rng))?;
        let (z_lp, z_up) = (z_l.index_select(&li, 0)?, z_u.index_select(&ui, 0)?);
        // Decoupling: z̃_u = z_m − λ·z_l[l_k] (not divided by 1 − λ), or z_m − λ·sg(z_l[l_k]).
        let z_lp_dec = if cfg.detach_labeled { z_lp.detach() } else { z_lp.clone() };
        let zt_u = (&z_m - (&z_lp_dec * lambda)?)?;
        let unsup = |logits: &Tensor, t: &Tensor| -> Result<Tensor> {
            let l = match cfg.unsup_loss {
                UnsupLoss::Focal => sigmoid_focal_loss(logits, t, cfg.focal_gamma, cfg.focal_alpha)?,
                UnsupLoss::Ce => ce_all(logits, t)?,
            };
            Ok((l * cfg.unsup_weight)?)
        };
        let loss_uns = match cfg.direction {
            Direction::Code => unsup(&zt_u, &z_up.detach().argmax(1)?)?,
            Direction::Paper => unsup(&z_up, &zt_u.detach().argmax(1)?)?,
        };
        let w_ld = cfg.labeled_decouple_weight();
        let loss_ldec = if w_ld > 0.0 && cfg.unsup_weight > 0.0 {
            // λ·Focal(z_m − (1 − λ)·z_u[u_k], argmax sg(z_l[l_k])), the code's discarded labelled term.
            let zt_l = (&z_m - (&z_up * (1.0 - lambda))?)?;
            let f = sigmoid_focal_loss(&zt_l, &z_lp.detach().argmax(1)?, cfg.focal_gamma, cfg.focal_alpha)?;
            Some((f * (w_ld * lambda * cfg.unsup_weight))?)
        } else {
            None
        };
        let loss_align =
            if cfg.align_weight > 0.0 { Some((align_loss(&g_l, &g_u, &li, &ui)? * cfg.align_weight)?) } else { None };
        let mut total = (&loss_sup + &loss_uns)?;
        for l in loss_ldec.iter().chain(loss_align.iter()) {
            total = (total + l)?;
        }
        let mix = MixParts { lambda, pairs, z_u, a_m, z_m, zt_u, loss_uns, loss_ldec, loss_align };
        Ok(MixStep { enc, dec_l, z_l, dec_u: Some(dec_u), aspp, loss_sup, mix: Some(mix), total })
    }
}

/// The step's tensors for auxiliary terms: full-resolution logits of `cat(x_l, x_u)`, encoder and head
/// features, and the unlabelled prediction's argmax/confidence as pseudo-labels.
fn step_tensors(model: &DeepLabV3Plus, batch: &TrainBatch, s: &MixStep) -> Result<StepTensors> {
    let (h, w) = (batch.labeled.mask.dim(1)?, batch.labeled.mask.dim(2)?);
    let ac = model.head.align_corners();
    let nl = s.z_l.dim(0)?;
    let (logits, dec, pseudo, unlabeled) = match (&s.mix, &s.dec_u, &batch.unlabeled) {
        (Some(m), Some(dec_u), Some(u)) => {
            let up_u = resize_bilinear(&m.z_u, (h, w), ac)?;
            let (conf, label) = core_seg::frameworks::pseudo_label(&up_u)?;
            let logits = Tensor::cat(&[resize_bilinear(&s.z_l, (h, w), ac)?, up_u], 0)?;
            let pseudo = Pseudo { label, conf, ignore: u.ignore.clone() };
            (logits, Tensor::cat(&[&s.dec_l, dec_u], 0)?, Some(pseudo), Some(u.clone()))
        }
        _ => (resize_bilinear(&s.z_l, (h, w), ac)?, s.dec_l.clone(), None, None),
    };
    let enc = if unlabeled.is_some() {
        s.enc.clone()
    } else {
        let r = |t: &Tensor| -> Result<Tensor> { Ok(t.narrow(0, 0, nl)?) };
        let e = &s.enc;
        EncoderFeatures { c1: r(&e.c1)?, c2: r(&e.c2)?, c3: r(&e.c3)?, c4: r(&e.c4)? }
    };
    let out = SegOutput { logits, logits_fp: None, enc, dec, aspp: s.aspp.clone() };
    let labeled = batch.labeled.clone();
    Ok(StepTensors { labeled, unlabeled, out, n_labeled: nl, pseudo, conf_thresh: 0.0, strong: None })
}

impl Framework for GuidedMix {
    fn name(&self) -> &str {
        "guidedmix"
    }

    fn losses(&mut self, model: &DeepLabV3Plus, batch: &TrainBatch, ctx: &mut StepCtx) -> Result<StepLosses> {
        let x_u = batch.unlabeled.as_ref().map(|u| &u.weak);
        let (x_l, y_l) = (&batch.labeled.image, &batch.labeled.mask);
        let s = self.run_step(model, x_l, y_l, x_u, Mode::Train, &Forced::default(), ctx.rng)?;
        let mut terms = vec![("loss_x".to_string(), s.loss_sup.detach())];
        let mut stats = Vec::new();
        if let Some(m) = &s.mix {
            terms.push(("loss_uns".into(), m.loss_uns.detach()));
            for (name, l) in [("loss_ldec", &m.loss_ldec), ("loss_align", &m.loss_align)] {
                if let Some(l) = l {
                    terms.push((name.into(), l.detach()));
                }
            }
            stats.push(("lambda".to_string(), m.lambda));
        }
        let tensors = step_tensors(model, batch, &s)?;
        Ok(StepLosses { total: s.total.clone(), terms, stats, tensors: Some(tensors) })
    }
}

/// Builds the framework for a run (`semi.method = "guidedmix"`), to install with
/// [`core_seg::train::Trainer::with_framework`].
pub fn build(cfg: &GuidedMixConfig, model: &DeepLabConfig, vb: VarBuilder) -> Result<Box<dyn Framework>> {
    Ok(Box::new(GuidedMix::new(cfg, model, vb)?))
}
