//! `MimTerm` on the training loop: smoke runs of every ablation row, determinism, logging, zero-weight identity
//! with plain UniMatch, BN handling, configuration parsing.

mod support;
use core_seg::testing as toy;

use aux_mim::term::{restore_bn, snapshot_bn};
use aux_mim::{
    FaConfig, FaMode, FeatureLevel, MaskConfig, MaskSampling, MimBn, MimConfig, MimMode, MimTerm, RecConfig, RecLoss,
    S2Fp, SemConfig, SemForward, SemMode, VisibleFrom,
};
use candle_core::{DType, Device};
use core_seg::frameworks::{self, FpOn, Method, MixPredBn, SemiConfig};
use core_seg::model::DeepLabV3Plus;
use core_seg::nn::ParamStore;
use core_seg::plugin::AuxTerm;
use core_seg::plugin::StepCtx;
use core_seg::rng::SegRng;
use core_seg::train::{TrainConfig, Trainer};
use core_seg::Result;
use support::{manual_step, vec_f64};
use toy::{tiny_model, ToySemiSource};

/// Toy-sized defaults: P = 8 on 32² crops, warm-up over the first iteration, class regions at τ_m = 0.
fn toy_mim() -> MimConfig {
    MimConfig {
        mask: MaskConfig { patch: 8, ..Default::default() },
        region_conf: Some(0.0),
        iters_per_epoch: Some(1),
        ..Default::default()
    }
}

struct Run {
    losses: Vec<f64>,
    terms: Vec<Vec<(String, f64)>>,
    /// Every variable of the model (parameters and BN buffers), by name, excluding the MIM head.
    model_vars: Vec<(String, Vec<f64>)>,
    head: Vec<f64>,
}

fn run(semi: &SemiConfig, mim: Option<&MimConfig>, steps: usize) -> Result<Run> {
    let cfg = TrainConfig { iters: steps, lr: 0.01, seed: 7, ..Default::default() };
    let model_cfg = tiny_model(3);
    let mut t = Trainer::new(&model_cfg, cfg, frameworks::build(semi)?, DType::F32, &Device::Cpu)?;
    if let Some(m) = mim {
        let (m, s, mc) = (m.clone(), semi.clone(), model_cfg.clone());
        t.add_aux_term(move |vb| aux_mim::build_with_semi(&m, &s, &mc, vb))?;
    }
    let mut src = ToySemiSource { batch: 2, size: 32 };
    let (mut losses, mut terms) = (Vec::new(), Vec::new());
    for _ in 0..steps {
        let rec = t.step(&mut src)?;
        assert!(rec.loss.is_finite());
        assert!(rec.terms.iter().all(|(_, v)| v.is_finite()), "{:?}", rec.terms);
        losses.push(rec.loss);
        terms.push(rec.terms);
    }
    let (mut model_vars, mut head) = (Vec::new(), Vec::new());
    for (n, v) in t.store.named_vars() {
        let vals = vec_f64(v.as_tensor())?;
        if n.starts_with("mim_head.") {
            head.extend(vals);
        } else {
            model_vars.push((n, vals));
        }
    }
    Ok(Run { losses, terms, model_vars, head })
}

fn term(r: &Run, step: usize, name: &str) -> Option<f64> {
    r.terms[step].iter().find(|(n, _)| n == name).map(|x| x.1)
}

/// 3 steps of UniMatch + MIM and FixMatch + MIM: finite losses, the new terms logged (0 at iteration 0 by the
/// warm-up, > 0 after it), the head trained, and the same seed twice gives identical losses and weights.
#[test]
fn three_steps_unimatch_and_fixmatch_with_mim_are_deterministic() -> Result<()> {
    for method in [Method::Unimatch, Method::Fixmatch] {
        // τ = 0 (Cityscapes' setting): a freshly initialised model is never 95% confident.
        let semi = SemiConfig { method: method.clone(), conf_thresh: 0.0, ..Default::default() };
        let mim = toy_mim();
        let a = run(&semi, Some(&mim), 3)?;
        for name in ["loss_mim_rec", "loss_mim_fa", "loss_mim_sem"] {
            assert_eq!(term(&a, 0, name), Some(0.0), "{method:?} {name} at iteration 0 (warm-up)");
            for step in 1..3 {
                let v = term(&a, step, name).unwrap_or(-1.0);
                assert!(v > 0.0, "{method:?} {name} at step {step}: {v}");
            }
        }
        let b = run(&semi, Some(&mim), 3)?;
        assert_eq!(a.losses, b.losses, "{method:?}");
        assert_eq!(a.model_vars, b.model_vars, "{method:?}");
        assert_eq!(a.head, b.head, "{method:?}");
        assert_eq!(a.head.len(), 48 * 16 + 48);
    }
    Ok(())
}

/// all MIM weights 0 with all components on: trainable parameters and BN running statistics
/// bit-identical to plain UniMatch after 3 steps (`bn = train_no_update`, sem off); with S1 on (its forward
/// updates running statistics, read by the eval-mode mix prediction) the parameters are identical when the
/// mix prediction uses batch statistics.
#[test]
fn zero_weights_reproduce_plain_unimatch() -> Result<()> {
    let zero = MimConfig { weight_rec: 0.0, weight_fa: 0.0, weight_sem: 0.0, warmup_epochs: 0.0, ..toy_mim() };
    let semi = SemiConfig::default();
    let plain = run(&semi, None, 3)?;
    let no_sem = MimConfig { sem: SemConfig { mode: SemMode::Off, ..Default::default() }, ..zero.clone() };
    let with = run(&semi, Some(&no_sem), 3)?;
    assert_eq!(plain.model_vars, with.model_vars);
    assert_eq!(plain.losses, with.losses);
    assert_eq!(term(&with, 2, "loss_mim_rec"), Some(0.0));

    let semi_bt = SemiConfig { mix_pred_bn: MixPredBn::Train, ..Default::default() };
    let plain = run(&semi_bt, None, 3)?;
    let with = run(&semi_bt, Some(&zero), 3)?;
    let trainable = |r: &Run| -> Vec<(String, Vec<f64>)> {
        r.model_vars.iter().filter(|(n, _)| !n.contains("running_")).cloned().collect()
    };
    assert_eq!(trainable(&plain), trainable(&with));
    assert_ne!(plain.model_vars, with.model_vars, "S1 updates BN running statistics");
    Ok(())
}

/// On the toy data: 3 steps of every ablation row and of every alternative key value; all finite,
/// each row logs exactly its terms.
#[test]
fn every_ablation_row_runs() -> Result<()> {
    let unimatch = SemiConfig::default();
    let base = toy_mim();
    let fa_off = FaConfig { mode: FaMode::Off, ..Default::default() };
    let sem_off = SemConfig { mode: SemMode::Off, ..Default::default() };
    let s2 = |s2_fp| SemConfig { mode: SemMode::S2, s2_fp, ..Default::default() };
    let rows: Vec<(&str, SemiConfig, MimConfig, Vec<&str>)> = vec![
        ("unimatch", unimatch.clone(), MimConfig::off(), vec![]),
        (
            "plain",
            unimatch.clone(),
            MimConfig { mode: MimMode::Plain, fa: fa_off.clone(), sem: sem_off.clone(), ..base.clone() },
            vec!["rec"],
        ),
        (
            "classwise",
            unimatch.clone(),
            MimConfig { fa: fa_off.clone(), sem: sem_off.clone(), ..base.clone() },
            vec!["rec"],
        ),
        ("+fa", unimatch.clone(), MimConfig { sem: sem_off.clone(), ..base.clone() }, vec!["rec", "fa"]),
        ("full", unimatch.clone(), base.clone(), vec!["rec", "fa", "sem"]),
        (
            "proto_proto+s2",
            unimatch.clone(),
            MimConfig {
                fa: FaConfig { mode: FaMode::ProtoProto, ..Default::default() },
                sem: s2(S2Fp::Complement),
                ..base.clone()
            },
            vec!["rec", "fa", "sem"],
        ),
        (
            "s2 replace",
            SemiConfig { fp_on: FpOn::None, ..Default::default() },
            MimConfig { sem: s2(S2Fp::Replace), ..base.clone() },
            vec!["rec", "fa", "fp"],
        ),
        (
            "variants",
            unimatch.clone(),
            MimConfig {
                mask: MaskConfig { patch: 16, ratio: 0.7, sampling: MaskSampling::Bernoulli, per_class: true },
                bn: MimBn::Train,
                rec: RecConfig { feature: FeatureLevel::C4, loss: RecLoss::L2 },
                fa: FaConfig {
                    binarize: true,
                    feature: FeatureLevel::C4,
                    visible_from: VisibleFrom::CleanPass,
                    stopgrad: false,
                    ..Default::default()
                },
                sem: SemConfig { masked_only: true, forward: SemForward::WithStrong, ..Default::default() },
                kmax: 1,
                n_max: Some(3),
                ..base.clone()
            },
            vec!["rec", "fa", "sem"],
        ),
        (
            "fixmatch full",
            SemiConfig { method: Method::Fixmatch, ..Default::default() },
            base.clone(),
            vec!["rec", "fa", "sem"],
        ),
        (
            "fixmatch s2",
            SemiConfig { method: Method::Fixmatch, ..Default::default() },
            MimConfig { sem: s2(S2Fp::Complement), ..base.clone() },
            vec!["rec", "fa", "sem"],
        ),
    ];
    for (name, semi, mim, expect) in rows {
        let r = run(&semi, Some(&mim), 3)?;
        let mut logged: Vec<String> =
            r.terms[2].iter().filter_map(|(n, _)| n.strip_prefix("loss_mim_").map(String::from)).collect();
        logged.sort();
        let mut expect: Vec<String> = expect.into_iter().map(String::from).collect();
        expect.sort();
        assert_eq!(logged, expect, "row {name}");
        assert!(r.losses.iter().all(|l| l.is_finite()), "row {name}");
    }
    Ok(())
}

/// S2 `replace` is refused unless UniMatch runs without its own FP stream; FixMatch cannot use it.
#[test]
fn s2_replace_requires_unimatch_without_fp() -> Result<()> {
    let mim =
        MimConfig { sem: SemConfig { mode: SemMode::S2, s2_fp: S2Fp::Replace, ..Default::default() }, ..toy_mim() };
    let store = ParamStore::new(0);
    let vb = || store.var_builder(DType::F32, &Device::Cpu);
    assert!(aux_mim::build_with_semi(&mim, &SemiConfig::default(), &tiny_model(3), vb()).is_err());
    let fm = SemiConfig { method: Method::Fixmatch, fp_on: FpOn::None, ..Default::default() };
    assert!(aux_mim::build_with_semi(&mim, &fm, &tiny_model(3), vb()).is_err());
    let ok = SemiConfig { fp_on: FpOn::None, ..Default::default() };
    assert!(aux_mim::build_with_semi(&mim, &ok, &tiny_model(3), vb()).is_ok());
    Ok(())
}

/// `bn = train_no_update` leaves every running statistic as it was; `bn = train` changes them.
#[test]
fn class_wise_forward_restores_bn_statistics() -> Result<()> {
    let dev = Device::Cpu;
    let store = ParamStore::new(3);
    let model = DeepLabV3Plus::new(&tiny_model(3), store.var_builder(DType::F32, &dev))?;
    let l = toy::toy_batch(&[1, 2], 32, DType::F32, &dev)?;
    let step = manual_step(&model, l, None, None, 1.0)?;
    let stats = || -> Result<Vec<Vec<f64>>> {
        snapshot_bn(&store)?.iter().map(|(_, t)| vec_f64(t)).collect::<Result<Vec<_>>>()
    };
    let before = stats()?;
    assert!(!before.is_empty());
    for (bn, same) in [(MimBn::TrainNoUpdate, true), (MimBn::Train, false)] {
        let cfg = MimConfig { bn, sem: SemConfig { mode: SemMode::Off, ..Default::default() }, ..toy_mim() };
        let mut t = MimTerm::new(&cfg, &tiny_model(3), None, store.var_builder(DType::F32, &dev))?;
        let snap = snapshot_bn(&store)?;
        let mut rng = SegRng::new(1);
        let state = rng.state();
        let mut ctx = StepCtx { iter: 5, total_iters: 10, rng: &mut rng, store: &store };
        let out = t.losses(&model, &step, &mut ctx)?;
        assert_eq!(ctx.rng.state(), state, "the MIM stream must not advance the run RNG");
        assert!(out
            .iter()
            .all(|(_, l)| l.to_dtype(DType::F64).and_then(|x| x.to_scalar::<f64>()).is_ok_and(f64::is_finite)));
        assert_eq!(stats()? == before, same, "{bn:?}");
        restore_bn(&snap)?;
    }
    // The supervised framework has no pseudo-labels: S1 is an error, reconstruction from labels works.
    let mut t = MimTerm::new(&toy_mim(), &tiny_model(3), None, store.var_builder(DType::F32, &dev))?;
    let mut rng = SegRng::new(1);
    let mut ctx = StepCtx { iter: 5, total_iters: 10, rng: &mut rng, store: &store };
    assert!(t.losses(&model, &step, &mut ctx).is_err());
    Ok(())
}

/// TOML: the documented defaults; sub-tables parse; unknown keys are rejected; invalid values are refused.
#[test]
fn config_parses_with_spec_defaults() -> Result<()> {
    let d = MimConfig::default();
    assert_eq!(
        (d.mode, d.mask.patch, d.mask.ratio, d.mask.sampling, d.mask.per_class),
        (MimMode::Classwise, 32, 0.5, MaskSampling::Exact, false)
    );
    assert_eq!((d.kmax, d.n_max, d.region_conf, d.bn), (3, None, None, MimBn::TrainNoUpdate));
    assert_eq!((d.rec.feature, d.rec.loss), (FeatureLevel::Fuse, RecLoss::L1));
    assert_eq!(
        (d.fa.mode, d.fa.stopgrad, d.fa.binarize, d.fa.visible_from),
        (FaMode::PixelProto, true, false, VisibleFrom::MaskedPass)
    );
    assert_eq!(
        (d.sem.mode, d.sem.masked_only, d.sem.forward, d.sem.s2_fp),
        (SemMode::S1, false, SemForward::Separate, S2Fp::Complement)
    );
    assert_eq!((d.weight_rec, d.weight_fa, d.weight_sem, d.warmup_epochs), (1.0, 0.1, 0.5, 1.0));
    let text = r#"
        mode = "plain"
        sources = ["labeled"]
        kmax = 2
        n_max = 4
        [mask]
        patch = 16
        sampling = "bernoulli"
        [fa]
        mode = "proto_proto"
        [sem]
        mode = "s2"
        s2_fp = "replace"
    "#;
    let c: MimConfig = toml::from_str(text).map_err(|e| core_seg::Error::Config(e.to_string()))?;
    assert_eq!((c.mode, c.kmax, c.n_max, c.mask.patch, c.mask.ratio), (MimMode::Plain, 2, Some(4), 16, 0.5));
    assert_eq!((c.fa.mode, c.sem.mode, c.sem.s2_fp), (FaMode::ProtoProto, SemMode::S2, S2Fp::Replace));
    assert!(toml::from_str::<MimConfig>("ratio = 0.5").is_err());
    assert!(toml::from_str::<MimConfig>("[mask]\nsize = 3").is_err());
    assert!(MimConfig::default().validate().is_err(), "warm-up without iters_per_epoch");
    assert!(MimConfig { mask: MaskConfig { ratio: 1.5, ..Default::default() }, ..toy_mim() }.validate().is_err());
    assert!(MimConfig { sources: vec![], ..toy_mim() }.validate().is_err());
    assert!(MimConfig { kmax: 0, ..toy_mim() }.validate().is_err());
    assert!(toy_mim().validate().is_ok());
    assert!(MimConfig::off().validate().is_ok(), "off needs no iters_per_epoch");
    // Ramp: λ(t) = λ·min(1, t/(E_w·iters_per_epoch)).
    let r = MimConfig { warmup_epochs: 2.0, iters_per_epoch: Some(5), ..Default::default() };
    assert_eq!((r.ramp(0), r.ramp(5), r.ramp(10), r.ramp(50)), (0.0, 0.5, 1.0, 1.0));
    Ok(())
}

/// At the synthetic recipe's size: the synthetic model (R-18, width 16, OS 8, 6 classes) on 64² crops,
/// full S4MIM with P = 16, 3 steps of UniMatch: finite, all three terms > 0 after the warm-up iteration.
#[test]
fn full_s4mim_on_the_synthetic_model_at_64px() -> Result<()> {
    let model_cfg = core_seg::model::DeepLabConfig {
        backbone: core_seg::model::Backbone::Resnet18,
        stem: core_seg::model::Stem::Deep,
        base_width: 16,
        output_stride: 8,
        dilations: Some([2, 4, 6]),
        aspp_channels: Some(64),
        reduce_channels: 24,
        fuse_channels: 64,
        nclass: 6,
        ..Default::default()
    };
    let semi = SemiConfig { conf_thresh: 0.0, ..Default::default() };
    let mim = MimConfig { mask: MaskConfig { patch: 16, ..Default::default() }, ..toy_mim() };
    let cfg = TrainConfig { iters: 3, lr: 0.002, seed: 1, ..Default::default() };
    let mut t = Trainer::new(&model_cfg, cfg, frameworks::build(&semi)?, DType::F32, &Device::Cpu)?;
    let mc = model_cfg.clone();
    t.add_aux_term(move |vb| aux_mim::build(&mim, &mc, vb))?;
    let mut src = ToySemiSource { batch: 2, size: 64 };
    for it in 0..3 {
        let rec = t.step(&mut src)?;
        assert!(rec.loss.is_finite());
        for name in ["loss_mim_rec", "loss_mim_fa", "loss_mim_sem"] {
            let v = rec.terms.iter().find(|(n, _)| n == name).map(|x| x.1).unwrap_or(-1.0);
            assert!(v.is_finite() && (if it == 0 { v == 0.0 } else { v > 0.0 }), "{name} at {it}: {v}");
        }
    }
    let head = t.store.named_vars().into_iter().find(|(n, _)| n == "mim_head.weight").expect("head in the store");
    assert_eq!(head.1.dims(), &[48, 64, 1, 1]);
    Ok(())
}
