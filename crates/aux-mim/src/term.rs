//! `MimTerm`: the three S4MIM components as one [`AuxTerm`] on any semi-supervised framework (`docs/aux-mim.md`).

use candle_core::{DType, Tensor, Var};
use candle_nn::VarBuilder;
use core_seg::batch::UnlabeledBatch;
use core_seg::frameworks::{FpOn, Method, SemiConfig};
use core_seg::model::{DeepLabConfig, DeepLabV3Plus};
use core_seg::nn::{Mode, ParamStore};
use core_seg::plugin::StepCtx;
use core_seg::plugin::{AuxTerm, StepTensors};
use core_seg::rng::SegRng;
use core_seg::{Error, Result};

use crate::aggregation::{feature_aggregation, weights_tensor};
use crate::classwise::{build_inputs, classwise_samples, masked_rec_loss, plain_samples, region_labels, Masks, Sample};
use crate::config::{FaMode, FeatureLevel, MimBn, MimConfig, MimMode, S2Fp, SemForward, SemMode, Source, VisibleFrom};
use crate::head::RecHead;
use crate::mask::{patch_mask, pool_weights, stride_of};
use crate::semantic::{mask_images, s2_masked_logits, sem_loss};

/// Tag of the MIM random stream.
const MIM_STREAM: u64 = 0x4d49_4d00;

/// The MIM branch's own generator for this step: a stream keyed by the run RNG's current state and the
/// iteration. `ctx.rng` is read, never advanced, so data, dropout and init draws are the same with and
/// without MIM, and a resumed run (which restores `ctx.rng`) redraws the same masks.
pub fn mim_rng(ctx: &StepCtx) -> SegRng {
    let s = ctx.rng.state();
    let key = s[0] ^ s[1].rotate_left(16) ^ s[2].rotate_left(32) ^ s[3].rotate_left(48);
    SegRng::stream(key, &[MIM_STREAM, ctx.iter as u64])
}

/// Copies of every BN running statistic of `store` (restored by [`restore_bn`]).
pub fn snapshot_bn(store: &ParamStore) -> Result<Vec<(Var, Tensor)>> {
    let mut out = Vec::new();
    for (name, v) in store.named_vars() {
        if name.ends_with("running_mean") || name.ends_with("running_var") {
            let copy = v.as_tensor().copy()?;
            out.push((v, copy));
        }
    }
    Ok(out)
}

/// Writes the snapshot back (`mim.bn = train_no_update`).
pub fn restore_bn(snapshot: &[(Var, Tensor)]) -> Result<()> {
    for (v, t) in snapshot {
        v.set(t)?;
    }
    Ok(())
}

/// Runs `forward` (a train-mode pass on masked inputs); with `bn = train_no_update` the BN running statistics
/// are put back afterwards, whether the pass succeeded or not.
fn with_bn<T>(store: &ParamStore, bn: MimBn, forward: impl FnOnce() -> Result<T>) -> Result<T> {
    let snapshot = if bn == MimBn::TrainNoUpdate { Some(snapshot_bn(store)?) } else { None };
    let out = forward();
    if let Some(s) = &snapshot {
        restore_bn(s)?;
    }
    out
}

/// The stacked source images of the reconstruction branch, with host label data.
struct SourceSet {
    images: Tensor,
    regions: Vec<Vec<u32>>,
    valid: Vec<Vec<u8>>,
    /// Row of each source image in the step's clean forward (`step.out`).
    clean_rows: Vec<usize>,
}

fn host_u32(t: &Tensor) -> Result<Vec<u32>> {
    Ok(t.flatten_all()?.to_dtype(DType::U32)?.to_vec1::<u32>()?)
}

fn chunks<T: Clone>(v: &[T], n: usize) -> Vec<Vec<T>> {
    v.chunks(n.max(1)).map(|c| c.to_vec()).collect()
}

/// S4MIM as an auxiliary term: class-wise (or plain) MIM, feature aggregation, MIM in semantic space.
pub struct MimTerm {
    pub cfg: MimConfig,
    /// Present when `mim.mode ≠ off` (parameters `mim_head.weight`, `mim_head.bias`).
    pub head: Option<RecHead>,
    /// Weight of the S2 `replace` loss (`w_fp·w_out` of the framework).
    pub fp_replace_weight: f64,
}

impl MimTerm {
    /// Builds the term; `semi` (when known) is checked for compatibility and supplies the `replace` weight.
    pub fn new(cfg: &MimConfig, model_cfg: &DeepLabConfig, semi: Option<&SemiConfig>, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let replace = cfg.sem.mode == SemMode::S2 && cfg.sem.s2_fp == S2Fp::Replace;
        let default_semi = SemiConfig::default();
        let semi_cfg = semi.unwrap_or(&default_semi);
        if replace && semi.is_some() && (semi_cfg.method != Method::Unimatch || semi_cfg.fp_on != FpOn::None) {
            return Err(Error::Config(
                "mim.sem.s2_fp = replace needs semi.method = unimatch with semi.fp_on = none (the masked stream \
                 replaces Dropout2d FP)"
                    .into(),
            ));
        }
        let head = match cfg.mode {
            MimMode::Off => None,
            _ => Some(RecHead::for_model(model_cfg, cfg.rec.feature, vb.pp("mim_head"))?),
        };
        Ok(Self { cfg: cfg.clone(), head, fp_replace_weight: semi_cfg.w_fp * semi_cfg.w_out })
    }

    fn sources(&self, step: &StepTensors, tau_m: f64) -> Result<SourceSet> {
        let (mut images, mut regions, mut valid, mut clean_rows) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for src in &self.cfg.sources {
            match src {
                Source::Unlabeled => {
                    let (Some(u), Some(p)) = (&step.unlabeled, &step.pseudo) else { continue };
                    let (b, h, w) = p.label.dims3()?;
                    let lab = chunks(&host_u32(&p.label)?, h * w);
                    let conf = chunks(&p.conf.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?, h * w);
                    let val = chunks(&u.valid.flatten_all()?.to_dtype(DType::U8)?.to_vec1::<u8>()?, h * w);
                    for i in 0..b {
                        regions.push(region_labels(&lab[i], &val[i], Some((&conf[i], tau_m))));
                        clean_rows.push(step.n_labeled + i);
                    }
                    valid.extend(val);
                    images.push(u.weak.clone());
                }
                Source::Labeled => {
                    let l = &step.labeled;
                    let (b, h, w) = l.mask.dims3()?;
                    let lab = chunks(&host_u32(&l.mask)?, h * w);
                    let val = chunks(&l.valid.flatten_all()?.to_dtype(DType::U8)?.to_vec1::<u8>()?, h * w);
                    for i in 0..b {
                        regions.push(region_labels(&lab[i], &val[i], None));
                        clean_rows.push(i);
                    }
                    valid.extend(val);
                    images.push(l.image.clone());
                }
            }
        }
        if images.is_empty() {
            return Err(Error::InvalidArgument("mim: no source images (check mim.sources and the framework)".into()));
        }
        Ok(SourceSet { images: Tensor::cat(&images, 0)?, regions, valid, clean_rows })
    }

    /// Encoder c4 and (when needed) the `fuse` map of `x` in train mode; a single sample is run twice so that
    /// the ASPP image-pooling BN sees two values (the statistics equal those of the one sample).
    fn masked_features(&self, model: &DeepLabV3Plus, x: &Tensor, need_fuse: bool) -> Result<(Tensor, Option<Tensor>)> {
        let n = x.dim(0)?;
        let xin = if n == 1 { Tensor::cat(&[x, x], 0)? } else { x.clone() };
        let enc = model.backbone.forward_t(&xin, Mode::Train)?;
        let fuse = if need_fuse { Some(model.decode(&enc.c1, &enc.c4, Mode::Train)?.0.narrow(0, 0, n)?) } else { None };
        Ok((enc.c4.narrow(0, 0, n)?, fuse))
    }

    /// `(L_rec, L_fa)` of the class-wise (or plain) pass, unweighted; `None` when no sample is eligible.
    fn reconstruction(
        &self,
        model: &DeepLabV3Plus,
        step: &StepTensors,
        ctx: &StepCtx,
        rng: &mut SegRng,
    ) -> Result<Option<(Tensor, Tensor)>> {
        let cfg = &self.cfg;
        let head = self.head.as_ref().ok_or_else(|| Error::InvalidArgument("mim: no reconstruction head".into()))?;
        let tau_m = cfg.region_conf.unwrap_or(step.conf_thresh);
        let src = self.sources(step, tau_m)?;
        let (_, _, h, w) = src.images.dims4()?;
        let b_u = step.unlabeled.as_ref().map(|u| u.weak.dim(0)).transpose()?;
        let n_max = cfg.n_max.unwrap_or(b_u.unwrap_or(step.n_labeled)).max(1);
        let samples: Vec<Sample> = if cfg.mode == MimMode::Plain || !cfg.mask.per_class {
            let masks = chunks(&patch_mask(rng, src.regions.len(), (h, w), &cfg.mask)?, h * w);
            if cfg.mode == MimMode::Plain {
                plain_samples(rng, &src.valid, &masks, n_max)?
            } else {
                classwise_samples(rng, &src.regions, (h, w), Masks::Shared(&masks), cfg.kmax, n_max)?
            }
        } else {
            classwise_samples(rng, &src.regions, (h, w), Masks::PerClass(&cfg.mask), cfg.kmax, n_max)?
        };
        if samples.is_empty() {
            return Ok(None);
        }
        let (x_tilde, target, vis, msk) = build_inputs(&src.images, &samples)?;
        let fa_on = cfg.fa.mode != FaMode::Off;
        let need_fuse = cfg.rec.feature == FeatureLevel::Fuse || (fa_on && cfg.fa.feature == FeatureLevel::Fuse);
        let (c4, fuse) = with_bn(ctx.store, cfg.bn, || self.masked_features(model, &x_tilde, need_fuse))?;
        let pick = |level: FeatureLevel| -> Result<Tensor> {
            match level {
                FeatureLevel::C4 => Ok(c4.clone()),
                FeatureLevel::Fuse => fuse.clone().ok_or_else(|| Error::InvalidArgument("mim: fuse map".into())),
            }
        };
        let x_hat = head.forward(&pick(cfg.rec.feature)?, (h, w))?;
        let l_rec = masked_rec_loss(&x_hat, &target, &msk, cfg.rec.loss)?;
        let l_fa = if fa_on {
            let f = pick(cfg.fa.feature)?;
            let (n, _, fh, fw) = f.dims4()?;
            let s = stride_of(h, fh);
            let host = |t: &Tensor| -> Result<Vec<f32>> { Ok(t.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?) };
            let (dt, dev) = (f.dtype(), f.device());
            let vis_w = pool_weights(&host(&vis)?, n, (h, w), (fh, fw), s, cfg.fa.binarize)?;
            let msk_w = pool_weights(&host(&msk)?, n, (h, w), (fh, fw), s, cfg.fa.binarize)?;
            let vis_w = weights_tensor(vis_w, n, (fh, fw), dt, dev)?;
            let msk_w = weights_tensor(msk_w, n, (fh, fw), dt, dev)?;
            let clean = match cfg.fa.visible_from {
                VisibleFrom::MaskedPass => None,
                VisibleFrom::CleanPass => {
                    let all = match cfg.fa.feature {
                        FeatureLevel::Fuse => &step.out.dec,
                        FeatureLevel::C4 => &step.out.enc.c4,
                    };
                    let rows: Vec<u32> = samples.iter().map(|s| src.clean_rows[s.row] as u32).collect();
                    Some(all.index_select(&Tensor::from_vec(rows, n, dev)?, 0)?)
                }
            };
            feature_aggregation(&f, &vis_w, &msk_w, cfg.fa.mode, cfg.fa.stopgrad, clean.as_ref())?
        } else {
            l_rec.zeros_like()?
        };
        Ok(Some((l_rec, l_fa)))
    }

    /// `L_sem` (S1, or S2 complement / replace), unweighted.
    fn semantic(
        &self,
        model: &DeepLabV3Plus,
        step: &StepTensors,
        store: &ParamStore,
        rng: &mut SegRng,
    ) -> Result<Tensor> {
        let cfg = &self.cfg;
        let (Some(u), Some(p)) = (&step.unlabeled, &step.pseudo) else {
            return Err(Error::InvalidArgument("mim.sem needs a semi-supervised framework (pseudo-labels)".into()));
        };
        let (b, _, h, w) = u.weak.dims4()?;
        let m = patch_mask(rng, b, (h, w), &cfg.mask)?;
        let logits = with_bn(store, cfg.sem.bn, || self.masked_logits(model, step, u, &m))?;
        let only = cfg.sem.masked_only.then_some(m.as_slice());
        sem_loss(&logits, &p.label, &p.conf, &p.ignore, step.conf_thresh, only)
    }

    /// Logits of the semantic branch's forward on the masked images (S1) or masked features (S2).
    fn masked_logits(&self, model: &DeepLabV3Plus, step: &StepTensors, u: &UnlabeledBatch, m: &[u8]) -> Result<Tensor> {
        let (b, _, h, w) = u.weak.dims4()?;
        Ok(match self.cfg.sem.mode {
            SemMode::Off => return Err(Error::InvalidArgument("mim.sem is off".into())),
            SemMode::S1 => {
                let x_m = mask_images(&u.weak, m)?;
                match self.cfg.sem.forward {
                    SemForward::Separate => model.forward_t(&x_m, Mode::Train)?,
                    SemForward::WithStrong => {
                        let x = Tensor::cat(&[&u.strong1, &u.strong2, &x_m], 0)?;
                        model.forward_t(&x, Mode::Train)?.narrow(0, 2 * b, b)?
                    }
                }
            }
            SemMode::S2 => {
                let nl = step.n_labeled;
                let (c1, c4) = (step.out.enc.c1.narrow(0, nl, b)?, step.out.enc.c4.narrow(0, nl, b)?);
                s2_masked_logits(model, &c1, &c4, m, (h, w), Mode::Train)?
            }
        })
    }
}

impl AuxTerm for MimTerm {
    fn name(&self) -> &str {
        "mim"
    }

    /// `λ_rec(t)·L_rec`, `λ_fa(t)·L_fa`, `λ_sem(t)·L_sem` (or `w_fp·w_out·L_sem` for S2 `replace`), logged as
    /// `loss_mim_rec`, `loss_mim_fa`, `loss_mim_sem` / `loss_mim_fp`.
    fn losses(
        &mut self,
        model: &DeepLabV3Plus,
        step: &StepTensors,
        ctx: &mut StepCtx,
    ) -> Result<Vec<(String, Tensor)>> {
        let cfg = &self.cfg;
        let ramp = cfg.ramp(ctx.iter);
        let mut rng = mim_rng(ctx);
        let mut out = Vec::new();
        if cfg.mode != MimMode::Off {
            let zero = || Tensor::zeros((), step.out.logits.dtype(), step.out.logits.device());
            let (l_rec, l_fa) = match self.reconstruction(model, step, ctx, &mut rng)? {
                Some(l) => l,
                None => (zero()?, zero()?),
            };
            out.push(("loss_mim_rec".to_string(), (l_rec * (cfg.weight_rec * ramp))?));
            if cfg.fa.mode != FaMode::Off {
                out.push(("loss_mim_fa".to_string(), (l_fa * (cfg.weight_fa * ramp))?));
            }
        }
        if cfg.sem.mode != SemMode::Off {
            let l = self.semantic(model, step, ctx.store, &mut rng)?;
            if cfg.sem.mode == SemMode::S2 && cfg.sem.s2_fp == S2Fp::Replace {
                out.push(("loss_mim_fp".to_string(), (l * self.fp_replace_weight)?));
            } else {
                out.push(("loss_mim_sem".to_string(), (l * (cfg.weight_sem * ramp))?));
            }
        }
        Ok(out)
    }
}

/// The term for the trainer (`Trainer::add_aux_term(|vb| aux_mim::build(&cfg, &model_cfg, vb))`). For S2
/// `replace`, prefer [`build_with_semi`], which checks the framework and takes its FP weight.
pub fn build(cfg: &MimConfig, model_cfg: &DeepLabConfig, vb: VarBuilder) -> Result<Box<dyn AuxTerm>> {
    Ok(Box::new(MimTerm::new(cfg, model_cfg, None, vb)?))
}

/// [`build`] with the framework's configuration: rejects `s2_fp = replace` unless UniMatch runs without its
/// Dropout2d FP stream (`semi.fp_on = none`), and weights `replace` by `w_fp·w_out`.
pub fn build_with_semi(
    cfg: &MimConfig,
    semi: &SemiConfig,
    model_cfg: &DeepLabConfig,
    vb: VarBuilder,
) -> Result<Box<dyn AuxTerm>> {
    Ok(Box::new(MimTerm::new(cfg, model_cfg, Some(semi), vb)?))
}
