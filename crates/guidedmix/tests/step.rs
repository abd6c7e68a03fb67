//! The GuidedMix step on the tiny DeepLabV3 (ResNetV1c, OS 8) and DeepLabV3+ models, and short training runs on
//! the toy data.

use std::collections::BTreeMap;

use candle_core::{backprop::GradStore, DType, Device, Tensor, Var};
use core_seg::batch::BatchSource;
use core_seg::model::{DeepLabConfig, DeepLabV3Plus, HeadKind, Stem};
use core_seg::nn::{Mode, ParamStore};
use core_seg::optim::OptimConfig;
use core_seg::rng::SegRng;
use core_seg::testing::{tiny_model, ToySemiSource};
use core_seg::train::{TrainConfig, Trainer};
use core_seg::Result;
use guidedmix::{Direction, Forced, GuidedMix, GuidedMixConfig, MixSpace, Pairing};

fn v3_model() -> DeepLabConfig {
    DeepLabConfig { stem: Stem::V1c, head: HeadKind::Deeplabv3, ..tiny_model(3) }
}

struct Setup {
    store: ParamStore,
    model: DeepLabV3Plus,
    gm: GuidedMix,
}

fn setup(model_cfg: &DeepLabConfig, cfg: &GuidedMixConfig, dtype: DType) -> Result<Setup> {
    let store = ParamStore::new(3);
    let vb = store.var_builder(dtype, &Device::Cpu);
    let model = DeepLabV3Plus::new(model_cfg, vb.clone())?;
    let gm = GuidedMix::new(cfg, model_cfg, vb)?;
    Ok(Setup { store, model, gm })
}

fn vars(store: &ParamStore) -> BTreeMap<String, Var> {
    store.named_vars().into_iter().collect()
}

/// Copies the main head's tail (`bottleneck`, `conv_seg`; v3+: `head.project`, `fuse`, `classifier`) into
/// the mixed head, BN buffers included.
fn copy_tail_to_mix_head(store: &ParamStore, kind: HeadKind) -> Result<()> {
    let v = vars(store);
    let (main, mix, parts): (&str, &str, &[&str]) = match kind {
        HeadKind::Deeplabv3 => ("decode_head.", "decode_head_mix.", &["bottleneck.", "conv_seg."]),
        HeadKind::Deeplabv3plus => ("", "head_mix.", &["head.project.", "fuse.", "classifier."]),
    };
    let mut n = 0;
    for (name, var) in &v {
        if let Some(rest) = name.strip_prefix(mix) {
            if parts.iter().any(|p| rest.starts_with(p)) {
                var.set(v[&format!("{main}{rest}")].as_tensor())?;
                n += 1;
            }
        }
    }
    assert!(n >= 6, "copied only {n} tensors");
    Ok(())
}

fn max_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    assert_eq!(a.dims(), b.dims());
    Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

fn batch(seed: usize) -> Result<core_seg::batch::TrainBatch> {
    ToySemiSource { batch: 3, size: 24 }.batch(seed)
}

/// λ = 0: A_m = A_u[perm]; with the mixed tail copied from the main head and no dropout the decoupled logits
/// equal z_u[perm] (exactly with eval-mode BN, to 1e-6 in train mode); L_uns gives exactly zero gradient to
/// the main bottleneck and classifier.
#[test]
fn lambda_zero_mixes_to_the_unlabelled_features_and_prediction() -> Result<()> {
    for kind in [HeadKind::Deeplabv3, HeadKind::Deeplabv3plus] {
        let model_cfg = DeepLabConfig { head: kind, ..v3_model() };
        let cfg = GuidedMixConfig { cls_dropout: 0.0, ..Default::default() };
        let s = setup(&model_cfg, &cfg, DType::F64)?;
        copy_tail_to_mix_head(&s.store, kind)?;
        let b = batch(0)?;
        let (x_l, y_l, x_u) =
            (b.labeled.image.to_dtype(DType::F64)?, &b.labeled.mask, b.unlabeled.as_ref().map(|u| &u.weak));
        let x_u = x_u.map(|x| x.to_dtype(DType::F64)).transpose()?;
        let perm = vec![(0, 2), (1, 0), (2, 1)];
        let forced = Forced { lambda: Some(0.0), pairs: Some(perm.clone()) };
        for (mode, tol) in [(Mode::Eval, 0.0), (Mode::Train, 1e-6)] {
            let mut rng = SegRng::new(1);
            let st = s.gm.run_step(&s.model, &x_l, y_l, x_u.as_ref(), mode, &forced, &mut rng)?;
            let m = st.mix.as_ref().expect("unlabelled branch");
            let idx = Tensor::new(vec![2u32, 0, 1], &Device::Cpu)?;
            let enc_u = st.enc.c4.narrow(0, 3, 3)?;
            let a_u = s.model.head.features(&st.enc.c1.narrow(0, 3, 3)?, &enc_u, mode)?;
            assert_eq!(max_diff(&m.a_m.aspp, &a_u.aspp.index_select(&idx, 0)?)?, 0.0, "{kind:?} {mode:?}: A_m");
            let d = max_diff(&m.zt_u, &m.z_u.index_select(&idx, 0)?)?;
            assert!(d <= tol, "{kind:?} {mode:?}: decoupled logits differ from z_u[perm] by {d:e}");
            if mode == Mode::Train {
                let grads = m.loss_uns.backward()?;
                let v = vars(&s.store);
                let main_tail =
                    if kind == HeadKind::Deeplabv3 { "decode_head.conv_seg.weight" } else { "classifier.weight" };
                assert_eq!(grad_norm(&grads, &v[main_tail])?, 0.0, "{kind:?}: {main_tail}");
            }
        }
    }
    Ok(())
}

fn grad_norm(grads: &GradStore, v: &Var) -> Result<f64> {
    Ok(match grads.get(v.as_tensor()) {
        Some(g) => g.sqr()?.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?.sqrt(),
        None => 0.0,
    })
}

/// λ = 0.3: L_uns reaches the mixed head, the main ASPP and image pool, the main tail (via z_l) and the backbone.
/// In paper direction the mixed head learns (from the labelled decoupling term).
#[test]
fn unlabelled_loss_gradients_reach_every_trained_part() -> Result<()> {
    for direction in [Direction::Code, Direction::Paper] {
        let cfg = GuidedMixConfig { direction, ..Default::default() };
        let s = setup(&v3_model(), &cfg, DType::F32)?;
        let b = batch(1)?;
        let forced = Forced { lambda: Some(0.3), pairs: None };
        let mut rng = SegRng::new(2);
        let x_u = b.unlabeled.as_ref().map(|u| &u.weak);
        let st = s.gm.run_step(&s.model, &b.labeled.image, &b.labeled.mask, x_u, Mode::Train, &forced, &mut rng)?;
        let m = st.mix.as_ref().expect("unlabelled branch");
        let mut l = m.loss_uns.clone();
        if let Some(ld) = &m.loss_ldec {
            l = (l + ld)?;
        }
        assert_eq!(direction == Direction::Paper, m.loss_ldec.is_some());
        let grads = l.backward()?;
        let v = vars(&s.store);
        for name in [
            "decode_head_mix.bottleneck.conv.weight",
            "decode_head_mix.conv_seg.weight",
            "decode_head.aspp_modules.2.conv.weight",
            "decode_head.image_pool.1.conv.weight",
            "decode_head.bottleneck.conv.weight",
            "backbone.layer4.1.conv2.weight",
            "backbone.stem.0.weight",
        ] {
            assert!(grad_norm(&grads, &v[name])? > 0.0, "{direction:?}: no gradient on {name}");
        }
        // The mixed head's pool and ASPP branches are dead in feature mode.
        assert_eq!(grad_norm(&grads, &v["decode_head_mix.aspp_modules.0.conv.weight"])?, 0.0);
    }
    Ok(())
}

/// `detach_labeled`: at λ = 0.3 the decoupled logits are unchanged, but L_uns no longer reaches the main tail
/// (bottleneck, classifier) while it still trains the mixed head, the main ASPP and the backbone.
#[test]
fn detached_labelled_logits_keep_the_unlabelled_loss_off_the_main_tail() -> Result<()> {
    let mut zt = Vec::new();
    for detach_labeled in [false, true] {
        let cfg = GuidedMixConfig { detach_labeled, cls_dropout: 0.0, ..Default::default() };
        let s = setup(&v3_model(), &cfg, DType::F32)?;
        let b = batch(1)?;
        let forced = Forced { lambda: Some(0.3), pairs: Some(vec![(0, 1), (1, 2), (2, 0)]) };
        let mut rng = SegRng::new(2);
        let x_u = b.unlabeled.as_ref().map(|u| &u.weak);
        let st = s.gm.run_step(&s.model, &b.labeled.image, &b.labeled.mask, x_u, Mode::Train, &forced, &mut rng)?;
        let m = st.mix.as_ref().expect("unlabelled branch");
        zt.push(m.zt_u.clone());
        let grads = m.loss_uns.backward()?;
        let v = vars(&s.store);
        for name in ["decode_head.bottleneck.conv.weight", "decode_head.conv_seg.weight"] {
            let g = grad_norm(&grads, &v[name])?;
            assert_eq!(g == 0.0, detach_labeled, "detach_labeled = {detach_labeled}: |∇ {name}| = {g}");
        }
        for name in
            ["decode_head_mix.conv_seg.weight", "decode_head.aspp_modules.2.conv.weight", "backbone.stem.0.weight"]
        {
            assert!(grad_norm(&grads, &v[name])? > 0.0, "detach_labeled = {detach_labeled}: no gradient on {name}");
        }
    }
    assert_eq!(max_diff(&zt[0], &zt[1])?, 0.0, "detaching must not change the forward values");
    Ok(())
}

/// Inference ignores the mixed head: perturbing it leaves eval logits unchanged.
#[test]
fn inference_ignores_the_mixed_head() -> Result<()> {
    let s = setup(&v3_model(), &GuidedMixConfig::default(), DType::F32)?;
    let x = batch(2)?.labeled.image;
    let before = s.model.forward_t(&x, Mode::Eval)?;
    for (name, var) in vars(&s.store) {
        if name.starts_with("decode_head_mix.") {
            var.set(&(var.as_tensor() + 1.0)?)?;
        }
    }
    assert_eq!(max_diff(&before, &s.model.forward_t(&x, Mode::Eval)?)?, 0.0);
    Ok(())
}

fn train(cfg: GuidedMixConfig, model_cfg: &DeepLabConfig, iters: usize, seed: u64) -> Result<Vec<(f64, f64)>> {
    let optim = OptimConfig::Adamw { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-4 };
    let tcfg = TrainConfig { iters, lr: 0.01, lr_multi: 1.0, optim, seed, ..Default::default() };
    let build = |vb| guidedmix::build(&cfg, model_cfg, vb);
    let mut t = Trainer::with_framework(model_cfg, tcfg, build, DType::F32, &Device::Cpu)?;
    let mut source = ToySemiSource { batch: 2, size: 32 };
    let mut out = Vec::new();
    for _ in 0..iters {
        let rec = t.step(&mut source)?;
        assert!(rec.loss.is_finite());
        let get = |n: &str| rec.terms.iter().find(|(k, _)| k == n).map(|x| x.1).unwrap_or(0.0);
        out.push((get("loss_x"), get("loss_uns")));
    }
    Ok(out)
}

/// 3 steps of the code mode and of every switch: finite losses, the unlabelled term present.
#[test]
fn every_switch_trains_three_steps() -> Result<()> {
    let d = GuidedMixConfig::default;
    let v3p = DeepLabConfig { head: HeadKind::Deeplabv3plus, ..v3_model() };
    let runs: Vec<(GuidedMixConfig, DeepLabConfig)> = vec![
        (d(), v3_model()),
        (GuidedMixConfig { pairing: Pairing::Similar, align_weight: 0.1, ..d() }, v3_model()),
        (GuidedMixConfig { mix_space: MixSpace::Image, ..d() }, v3_model()),
        (GuidedMixConfig { mitrans: true, mitrans_channels: Some(16), ..d() }, v3_model()),
        (GuidedMixConfig { direction: Direction::Paper, ..d() }, v3_model()),
        (GuidedMixConfig { mitrans: true, mix_space: MixSpace::Image, ..d() }, v3p.clone()),
        (d(), v3p),
    ];
    for (cfg, mc) in runs {
        let losses = train(cfg.clone(), &mc, 3, 5)?;
        assert!(losses.iter().all(|(x, u)| x.is_finite() && *u > 0.0), "{cfg:?}: {losses:?}");
    }
    // The supervised baseline of the same code: no unlabelled term.
    let sup = train(GuidedMixConfig { unsup_weight: 0.0, ..d() }, &v3_model(), 2, 5)?;
    assert!(sup.iter().all(|(x, u)| x.is_finite() && *u == 0.0));
    Ok(())
}

/// A short code-mode run on the toy data learns: the labelled loss of the last steps is below the first ones.
#[test]
fn code_mode_run_decreases_the_labelled_loss() -> Result<()> {
    let losses = train(GuidedMixConfig::default(), &v3_model(), 24, 9)?;
    let mean = |s: &[(f64, f64)]| s.iter().map(|x| x.0).sum::<f64>() / s.len() as f64;
    let (first, last) = (mean(&losses[..4]), mean(&losses[20..]));
    assert!(last < 0.8 * first, "labelled loss {first:.3} → {last:.3}");
    Ok(())
}
