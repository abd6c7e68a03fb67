//! MIM in semantic space and hand-computed values.

mod support;
use core_seg::testing as toy;

use aux_mim::semantic::{mask_features, mask_images, s2_masked_logits, sem_loss};
use aux_mim::{FaConfig, FaMode, MaskConfig, MimConfig, MimMode, MimTerm, SemConfig, SemMode};
use candle_core::{DType, Device, Tensor};
use core_seg::frameworks::{pseudo_label, unsup_loss};
use core_seg::model::DeepLabV3Plus;
use core_seg::nn::{Mode, ParamStore};
use core_seg::ops::resize_bilinear;
use core_seg::plugin::StepCtx;
use core_seg::plugin::{AuxTerm, Pseudo, StepTensors};
use core_seg::rng::SegRng;
use core_seg::Result;
use support::{manual_step, scalar, vec_f64};

/// 2×2 crop, one padded pixel, uniform logits (K = 2), conf [0.99, 0.5, 0.99] on the valid pixels, τ = 0.95:
/// L = 2·ln 2 / 3. masked_only with M' on pixels 0 and 1: ln 2 / 2; with M' on the padded pixel only: 0.
#[test]
fn sem_loss_hand_example() -> Result<()> {
    let dev = Device::Cpu;
    let logits = Tensor::zeros((1, 2, 2, 2), DType::F64, &dev)?;
    let label = Tensor::from_vec(vec![0u32, 1, 0, 1], (1, 2, 2), &dev)?;
    let conf = Tensor::from_vec(vec![0.99f64, 0.5, 0.99, 0.99], (1, 2, 2), &dev)?;
    let ign = Tensor::from_vec(vec![0u32, 0, 0, 255], (1, 2, 2), &dev)?;
    let ln2 = 2f64.ln();
    let l = scalar(&sem_loss(&logits, &label, &conf, &ign, 0.95, None)?)?;
    assert!((l - 2.0 * ln2 / 3.0).abs() < 1e-12, "{l}");
    let l = scalar(&sem_loss(&logits, &label, &conf, &ign, 0.95, Some(&[1, 1, 0, 0]))?)?;
    assert!((l - ln2 / 2.0).abs() < 1e-12, "{l}");
    let l = scalar(&sem_loss(&logits, &label, &conf, &ign, 0.95, Some(&[0, 0, 0, 1]))?)?;
    assert_eq!(l, 0.0);
    Ok(())
}

/// Image and feature masking zero exactly the masked cells (feature cells sampled at their top-left pixel).
#[test]
fn masking_images_and_features_by_hand() -> Result<()> {
    let dev = Device::Cpu;
    let x = Tensor::ones((1, 2, 4, 4), DType::F32, &dev)?;
    let m: Vec<u8> = (0..16).map(|p| u8::from(p % 4 < 2 && p / 4 < 2)).collect(); // top-left 2×2
    let xm = vec_f64(&mask_images(&x, &m)?)?;
    for ch in 0..2 {
        for p in 0..16 {
            assert_eq!(xm[ch * 16 + p], if m[p] == 1 { 0.0 } else { 1.0 });
        }
    }
    // Stride 2: 2×2 feature map, only cell (0,0) masked.
    let f = Tensor::ones((1, 3, 2, 2), DType::F32, &dev)?;
    assert_eq!(vec_f64(&mask_features(&f, &m, (4, 4))?)?, [0., 1., 1., 1.].repeat(3));
    assert!(mask_images(&x, &m[..8]).is_err());
    Ok(())
}

fn setup() -> Result<(ParamStore, DeepLabV3Plus)> {
    let store = ParamStore::new(21);
    let model = DeepLabV3Plus::new(&toy::tiny_model(3), store.var_builder(DType::F32, &Device::Cpu))?;
    Ok((store, model))
}

fn sem_cfg(mode: SemMode, ratio: f64, masked_only: bool) -> MimConfig {
    MimConfig {
        mode: MimMode::Off,
        mask: MaskConfig { patch: 8, ratio, ..Default::default() },
        fa: FaConfig { mode: FaMode::Off, ..Default::default() },
        sem: SemConfig { mode, masked_only, ..Default::default() },
        weight_sem: 1.0,
        warmup_epochs: 0.0,
        ..Default::default()
    }
}

/// A step on toy labelled and unlabelled images whose pseudo-labels are the model's own train-mode prediction on
/// the weak view, with those logits.
fn self_labelled_step(model: &DeepLabV3Plus, tau: f64) -> Result<(StepTensors, Tensor)> {
    let (dev, s) = (Device::Cpu, 32);
    let u = toy::toy_unlabeled(&[3, 4], s, 0, &dev)?;
    let logits = model.forward_t(&u.weak, Mode::Train)?;
    let (conf, label) = pseudo_label(&logits)?;
    let pseudo = Pseudo { label, conf, ignore: u.ignore.clone() };
    let l = toy::toy_batch(&[1, 2], s, DType::F32, &dev)?;
    Ok((manual_step(model, l, Some(u), Some(pseudo), tau)?, logits))
}

/// `loss_mim_sem` of a fresh term with `cfg` on `step` (the only loss it returns).
fn sem_term_loss(store: &ParamStore, model: &DeepLabV3Plus, step: &StepTensors, cfg: &MimConfig) -> Result<f64> {
    let mut term = MimTerm::new(cfg, &toy::tiny_model(3), None, store.var_builder(DType::F32, &Device::Cpu))?;
    let mut rng = SegRng::new(1);
    let mut ctx = StepCtx { iter: 0, total_iters: 1, rng: &mut rng, store };
    let out = term.losses(model, step, &mut ctx)?;
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, "loss_mim_sem");
    scalar(&out[0].1)
}

/// S1 with r = 0: x_m = x_w and L_sem equals the UniMatch-normalised CE of model(x_w) against its own
/// pseudo-labels; `masked_only` with r = 0 gives 0; r = 0.5 gives a different, finite value.
#[test]
fn s1_with_zero_ratio_is_self_training_on_the_weak_view() -> Result<()> {
    let (store, model) = setup()?;
    let tau = 0.5;
    let (step, logits) = self_labelled_step(&model, tau)?;
    let p = step.pseudo.as_ref().ok_or_else(|| core_seg::Error::InvalidArgument("no pseudo-labels".into()))?;
    let expected = scalar(&unsup_loss(&logits, &p.label, &p.conf, &p.ignore, tau)?)?;
    assert!(expected > 0.0);
    let run = |cfg: MimConfig| sem_term_loss(&store, &model, &step, &cfg);
    let got = run(sem_cfg(SemMode::S1, 0.0, false))?;
    assert!((got - expected).abs() < 1e-6 * expected, "{got} vs {expected}");
    assert_eq!(run(sem_cfg(SemMode::S1, 0.0, true))?, 0.0);
    let masked = run(sem_cfg(SemMode::S1, 0.5, false))?;
    assert!(masked.is_finite() && (masked - expected).abs() > 1e-6);
    Ok(())
}

/// S2 with r = 0: the masked decode equals the clean decode; r = 1 differs from it.
#[test]
fn s2_with_zero_ratio_equals_clean_decode() -> Result<()> {
    let (_, model) = setup()?;
    let dev = Device::Cpu;
    let s = 32;
    let x = toy::toy_batch(&[5, 6], s, DType::F32, &dev)?.image;
    let enc = model.backbone.forward_t(&x, Mode::Train)?;
    let (_, lo) = model.decode(&enc.c1, &enc.c4, Mode::Train)?;
    let clean = vec_f64(&resize_bilinear(&lo, (s, s), true)?)?;
    let zeros = vec![0u8; 2 * s * s];
    let masked = vec_f64(&s2_masked_logits(&model, &enc.c1, &enc.c4, &zeros, (s, s), Mode::Train)?)?;
    assert_eq!(clean, masked);
    let ones = vec![1u8; 2 * s * s];
    let all = vec_f64(&s2_masked_logits(&model, &enc.c1, &enc.c4, &ones, (s, s), Mode::Train)?)?;
    assert_ne!(clean, all);
    Ok(())
}

/// `sem.bn = train` lets the masked forward (S1 and S2) update the BN running statistics evaluation reads;
/// `train_no_update` leaves every one as it was and gives the same loss.
#[test]
fn semantic_forward_bn_statistics_follow_sem_bn() -> Result<()> {
    use aux_mim::term::{restore_bn, snapshot_bn};
    use aux_mim::MimBn;
    let (store, model) = setup()?;
    let (step, _) = self_labelled_step(&model, 0.5)?;
    let stats = || -> Result<Vec<Vec<f64>>> { snapshot_bn(&store)?.iter().map(|(_, t)| vec_f64(t)).collect() };
    let before = stats()?;
    for mode in [SemMode::S1, SemMode::S2] {
        let mut losses = Vec::new();
        for (bn, same) in [(MimBn::Train, false), (MimBn::TrainNoUpdate, true)] {
            let mut cfg = sem_cfg(mode, 0.5, false);
            cfg.sem.bn = bn;
            let snap = snapshot_bn(&store)?;
            losses.push(sem_term_loss(&store, &model, &step, &cfg)?);
            assert_eq!(stats()? == before, same, "{mode:?} {bn:?}");
            restore_bn(&snap)?;
        }
        assert!(losses[0].is_finite() && losses[0] == losses[1], "{mode:?}: {losses:?}");
    }
    assert_eq!(SemConfig::default().bn, MimBn::Train);
    Ok(())
}
