//! `ReconTerm` on the training loop: 3 steps of every base framework with the branch on
//! in every mode (finite losses, `loss_recon` and `recon_psnr` logged); `recon.weight = 0` leaves the
//! segmentation model bit-identical to a run without the branch; determinism; the options that change which
//! views are reconstructed; configuration errors that name the key.

mod support;

use candle_core::{DType, Device};
use core_seg::batch::BatchSource;
use core_seg::frameworks::{self, Method, SemiConfig};
use core_seg::testing::{tiny_model, ToySemiSource, ToySource};
use core_seg::train::{StepRecord, TrainConfig, Trainer};
use core_seg::Result;

use aux_recon::{ReconConfig, ReconInput, ReconLoss, ReconMode, ValidFrom, Views};
use support::vec_f64;

const METHODS: [Method; 4] = [Method::Supervised, Method::MeanTeacher, Method::Fixmatch, Method::Unimatch];

struct Run {
    records: Vec<StepRecord>,
    /// Every variable except R's, by name.
    model_vars: Vec<(String, Vec<f64>)>,
    recon_vars: Vec<(String, Vec<f64>)>,
}

fn run(method: &Method, recon: Option<&ReconConfig>, steps: usize) -> Result<Run> {
    // τ = 0: a freshly initialised model is never 95% confident, and fgbg should see hard pseudo-labels.
    let semi = SemiConfig { method: method.clone(), conf_thresh: 0.0, ..Default::default() };
    let cfg = TrainConfig { iters: steps, lr: 0.01, seed: 5, ..Default::default() };
    let model_cfg = tiny_model(3);
    let mut t = Trainer::new(&model_cfg, cfg, frameworks::build(&semi)?, DType::F32, &Device::Cpu)?;
    if let Some(r) = recon {
        let (r, s, mc, store) = (r.clone(), semi.clone(), model_cfg.clone(), t.store.clone());
        t.add_aux_term(move |vb| {
            aux_recon::build(&r, Some(&s), &mc, aux_recon::var_builder(&store, 5, vb.dtype(), vb.device()))
        })?;
    }
    let mut src: Box<dyn BatchSource> = if *method == Method::Supervised {
        Box::new(ToySource { n_train: 8, batch: 2, size: 32, dtype: DType::F32 })
    } else {
        Box::new(ToySemiSource { batch: 2, size: 32 })
    };
    let mut records = Vec::new();
    for _ in 0..steps {
        let rec = t.step(src.as_mut())?;
        assert!(rec.loss.is_finite() && rec.terms.iter().all(|(_, v)| v.is_finite()), "{rec:?}");
        records.push(rec);
    }
    let (mut model_vars, mut recon_vars) = (Vec::new(), Vec::new());
    for (n, v) in t.store.named_vars() {
        let vals = vec_f64(v.as_tensor())?;
        if n.starts_with("recon.") {
            recon_vars.push((n, vals));
        } else {
            model_vars.push((n, vals));
        }
    }
    Ok(Run { records, model_vars, recon_vars })
}

fn value(rec: &StepRecord, name: &str) -> Option<f64> {
    rec.terms.iter().chain(rec.stats.iter()).find(|(n, _)| n == name).map(|x| x.1)
}

fn on(mode: ReconMode) -> ReconConfig {
    ReconConfig { enabled: true, mode, ..Default::default() }
}

#[test]
fn three_steps_of_every_base_in_every_mode() -> Result<()> {
    for method in METHODS {
        for mode in [ReconMode::Plain, ReconMode::Fgbg, ReconMode::Fgonly] {
            let r = run(&method, Some(&on(mode)), 3)?;
            for rec in &r.records {
                let l = value(rec, "loss_recon").unwrap_or(-1.0);
                assert!(l > 0.0, "{method:?} {mode:?}: loss_recon {l}");
                let psnr = value(rec, "recon_psnr").unwrap_or(f64::NAN);
                assert!(psnr.is_finite(), "{method:?} {mode:?}: psnr {psnr}");
                assert_eq!(value(rec, "recon_loss"), Some(l), "λ = 1: logged L_rec = the weighted term");
                let fg = value(rec, "recon_fg_fraction");
                assert_eq!(fg.is_some(), mode != ReconMode::Plain);
                assert!(fg.is_none_or(|f| (0.0..=1.0).contains(&f)), "{fg:?}");
            }
            assert!(!r.recon_vars.is_empty());
        }
    }
    Ok(())
}

/// `recon.weight = 0` with the branch on: every segmentation variable (parameters and BN statistics) and
/// every loss bit-identical to a run without the branch after 3 steps; R itself still changes (its BN statistics).
#[test]
fn zero_weight_leaves_the_segmentation_model_bit_identical() -> Result<()> {
    for method in [Method::Supervised, Method::Unimatch, Method::MeanTeacher] {
        let plain = run(&method, None, 3)?;
        let zero = ReconConfig { weight: 0.0, on_strong: method != Method::Supervised, ..on(ReconMode::Fgbg) };
        let with = run(&method, Some(&zero), 3)?;
        assert_eq!(plain.model_vars, with.model_vars, "{method:?}");
        let losses = |r: &Run| r.records.iter().map(|x| x.loss).collect::<Vec<_>>();
        assert_eq!(losses(&plain), losses(&with), "{method:?}");
        assert_eq!(value(&with.records[2], "loss_recon"), Some(0.0));
    }
    Ok(())
}

#[test]
fn same_seed_same_run_and_r_has_its_own_initialisation_stream() -> Result<()> {
    let cfg = on(ReconMode::Plain);
    let a = run(&Method::Fixmatch, Some(&cfg), 2)?;
    let b = run(&Method::Fixmatch, Some(&cfg), 2)?;
    assert_eq!(a.model_vars, b.model_vars);
    assert_eq!(a.recon_vars, b.recon_vars);
    // R's initial weights do not depend on what else the store holds.
    let init = |extra: bool| -> Result<Vec<f64>> {
        let store = core_seg::nn::ParamStore::new(5);
        if extra {
            let _ = store.var_builder(DType::F32, &Device::Cpu).get((7, 3), "other")?;
        }
        let vb = aux_recon::var_builder(&store, 5, DType::F32, &Device::Cpu);
        let term = aux_recon::ReconTerm::new(&cfg, None, &tiny_model(3), vb)?;
        drop(term);
        let w = store.named_vars().into_iter().find(|(n, _)| n == "recon.out.weight").expect("out weight");
        vec_f64(w.1.as_tensor())
    };
    assert_eq!(init(false)?, init(true)?);
    Ok(())
}

/// The options that change what is reconstructed all train: labelled views only, the strong views as well, the
/// ASPP input, L1, the mask-derived valid map, soft foreground everywhere, a warm-up (λ = 0 at iteration 0).
#[test]
fn view_input_loss_and_schedule_options_run() -> Result<()> {
    let variants = [
        ReconConfig { views: Views::Labeled, ..on(ReconMode::Plain) },
        ReconConfig { views: Views::LabeledWeak, on_strong: true, ..on(ReconMode::Fgbg) },
        ReconConfig { input: ReconInput::Aspp, loss: ReconLoss::L1, ..on(ReconMode::Fgonly) },
        ReconConfig {
            valid_from: ValidFrom::Mask,
            fg_source_l: aux_recon::FgSourceL::Soft,
            fg_source_u: aux_recon::FgSourceU::Soft,
            ..on(ReconMode::Fgbg)
        },
        ReconConfig { warmup_iters: 2, widths: Some(vec![32, 16, 8, 8]), ..on(ReconMode::Plain) },
    ];
    for (i, cfg) in variants.iter().enumerate() {
        let r = run(&Method::Unimatch, Some(cfg), 2)?;
        let l0 = value(&r.records[0], "loss_recon").unwrap_or(-1.0);
        let l1 = value(&r.records[1], "loss_recon").unwrap_or(-1.0);
        if cfg.warmup_iters > 0 {
            assert_eq!(l0, 0.0, "variant {i}: warm-up starts at 0");
        } else {
            assert!(l0 > 0.0, "variant {i}: {l0}");
        }
        assert!(l1 > 0.0, "variant {i}: {l1}");
    }
    let strong = ReconConfig { on_strong: true, ..on(ReconMode::Plain) };
    let a = run(&Method::Fixmatch, Some(&on(ReconMode::Plain)), 1)?;
    let b = run(&Method::Fixmatch, Some(&strong), 1)?;
    assert_ne!(value(&a.records[0], "loss_recon"), value(&b.records[0], "loss_recon"));
    Ok(())
}

fn parse(toml_text: &str) -> std::result::Result<ReconConfig, String> {
    let cfg: ReconConfig = toml::from_str(toml_text).map_err(|e| e.to_string())?;
    cfg.geometry(&tiny_model(3)).map_err(|e| e.to_string())?;
    Ok(cfg)
}

#[test]
fn config_errors_name_the_bad_key() -> Result<()> {
    let cases = [
        ("widht = [8, 8]", "widht"),
        ("mode = \"bgswap\"", "bgswap"),
        ("views = \"weak\"", "weak"),
        ("weight = -1.0", "recon.weight"),
        ("stages = 0", "recon.stages"),
        ("widths = [16, 8]\nstages = 3", "recon.widths"),
        ("widths = [16, 0, 8]", "recon.widths"),
        ("mode = \"fgbg\"\nwidths = [16, 8, 7]", "recon.widths"),
        ("mode = \"fgbg\"\nfg_classes = []", "recon.fg_classes"),
        ("fg_classes = [1, 3]", "recon.fg_classes"),
        ("[diagnose]\nlayer = \"u9\"", "recon.diagnose.layer"),
        ("[diagnose]\nquantile = 1.0", "recon.diagnose.quantile"),
    ];
    for (text, key) in cases {
        let err = parse(text).err().unwrap_or_default();
        assert!(err.contains(key), "`{text}` → `{err}` should name {key}");
    }
    let ok = parse("enabled = true\nmode = \"fgonly\"\nviews = \"labeled+weak\"\nloss = \"l1\"\ninput = \"aspp\"")
        .map_err(core_seg::Error::Config)?;
    assert_eq!(
        (ok.mode, ok.views, ok.loss, ok.input),
        (ReconMode::Fgonly, Views::LabeledWeak, ReconLoss::L1, ReconInput::Aspp)
    );
    let sup = SemiConfig { method: Method::Supervised, ..Default::default() };
    for bad in [
        ReconConfig { views: Views::LabeledWeak, ..on(ReconMode::Plain) },
        ReconConfig { on_strong: true, ..on(ReconMode::Plain) },
    ] {
        let store = core_seg::nn::ParamStore::new(0);
        let vb = store.var_builder(DType::F32, &Device::Cpu);
        let err = aux_recon::ReconTerm::new(&bad, Some(&sup), &tiny_model(3), vb).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("recon.")), "supervised + {bad:?}");
    }
    Ok(())
}
