//! Training one run from its config; evaluation (plain and with MRF post-processing); loading models for inference.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use candle_core::{DType, Device, Tensor};
use core_seg::eval::{evaluate, EvalReport};
use core_seg::frameworks::{self, Method};
use core_seg::model::{weights, DeepLabV3Plus};
use core_seg::nn::{Mode, ParamStore};
use core_seg::train::{TrainConfig, Trainer};
use data::Dataset;

use crate::config::RunConfig;
use crate::datasets::{self, LoaderSource};
use crate::runtime::{iou_table, RunObserver};

/// How one run is trained, besides its config (what `cargo xtask train` takes on its command line).
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Run directory (checkpoints, metrics.csv, TensorBoard events).
    pub out: PathBuf,
    /// Continue from `out/latest.safetensors`.
    pub resume: bool,
    /// Dataset root (else the config's, else `$SEMISEG_DATA`).
    pub data_root: Option<PathBuf>,
    /// Override `train.seed`.
    pub seed: Option<u64>,
    /// Override the number of iterations.
    pub iters: Option<usize>,
    /// No progress bar.
    pub quiet: bool,
    /// Skip (and list) unreadable or invalid samples instead of refusing to start (= `data.skip_bad`).
    pub skip_bad: bool,
    /// Training device: cpu, cuda or cuda:N (cuda needs a `--features cuda` build).
    pub device: String,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            out: PathBuf::from("runs/train"),
            resume: false,
            data_root: None,
            seed: None,
            iters: None,
            quiet: false,
            skip_bad: false,
            device: "cpu".into(),
        }
    }
}

/// Result of one finished run.
pub struct RunResult {
    pub final_report: EvalReport,
    pub best_miou: f64,
    pub observer: RunObserver,
    pub class_names: Vec<String>,
}

/// Evaluates `model` on `val` with the run's eval settings.
pub fn evaluate_model(
    model: &DeepLabV3Plus,
    val: &Dataset,
    cfg: &RunConfig,
    device: &Device,
) -> core_seg::Result<EvalReport> {
    let samples = data::val_samples(val.clone(), device.clone(), 4)
        .map(|r| r.map(|s| (s.image, s.mask)).map_err(|e| core_seg::Error::InvalidArgument(format!("data: {e}"))));
    evaluate(samples, cfg.model.nclass, &cfg.eval, &|x: &Tensor| model.forward_t(x, Mode::Eval))
}

/// Trains one run as configured; used by `train` and by `reproduce`.
pub fn run_training(cfg: &RunConfig, a: &TrainOptions) -> anyhow::Result<RunResult> {
    let device = crate::gpus::device(&a.device)?;
    let (primary, world) = (core_seg::dist::is_primary(), core_seg::dist::world_size());
    let mut cfg = cfg.clone();
    if let Some(s) = a.seed {
        cfg.train.seed = s;
    }
    crate::pretrain::resolve(&mut cfg)?;
    cfg.data.skip_bad |= a.skip_bad;
    let semi = cfg.semi.method != Method::Supervised;
    let d = datasets::build(&cfg, a.data_root.as_ref(), semi)?;
    let class_names = d.val.class_names();
    let mut source = LoaderSource::new(d.labeled, d.unlabeled, &cfg, &device)?;
    let iters = match (a.iters, cfg.epochs) {
        (Some(n), _) => n,
        // Data parallel: an epoch is shared by the ranks (each step sees `world` batches).
        (None, Some(e)) => (e * source.steps_per_epoch).div_ceil(world),
        (None, None) => cfg.train.iters,
    };
    let tcfg = TrainConfig { iters, lr: cfg.base_lr(), ..cfg.train.clone() };
    let mut t = Trainer::new(&cfg.model, tcfg, frameworks::build(&cfg.semi), DType::F32, &device)?;
    if cfg.semi.method == Method::Guidedmix {
        let (gm, model) = (cfg.guidedmix_config(), cfg.model.clone());
        t.set_framework(move |vb| guidedmix::build(&gm, &model, vb))?;
    }
    t.out_dir = Some(a.out.clone());
    t.run_config = serde_json::to_value(&cfg)?;
    add_method_terms(&mut t, &cfg, source.steps_per_epoch)?;
    if let Some(p) = &cfg.pretrained {
        let r = weights::load_safetensors(&t.store, p, false)?;
        tracing::info!(loaded = r.loaded.len(), missing = r.missing.len(), unexpected = ?r.unexpected, "pretrained {}", p.display());
    }
    let latest = a.out.join("latest.safetensors");
    if a.resume && latest.exists() {
        t.resume_from(&latest)?;
        tracing::info!(iter = t.iter, "resumed from {}", latest.display());
    }
    // Data parallel: only rank 0 writes the run directory; the other ranks log into a scratch directory.
    let log_dir = if primary {
        a.out.clone()
    } else {
        std::env::temp_dir().join(format!("semiseg-rank{}-{}", core_seg::dist::rank(), std::process::id()))
    };
    std::fs::create_dir_all(&a.out)?;
    if primary {
        std::fs::write(a.out.join("config.toml"), toml::to_string(&cfg)?)?;
    }
    let mut obs = RunObserver::new(&log_dir, iters, t.iter, class_names.clone(), a.quiet || !primary)?;
    let val = d.val;
    let result = t.run(&mut source, &mut |m| evaluate_model(m, &val, &cfg, &device), &mut obs);
    obs.finish();
    if let Some(e) = &obs.failed {
        tracing::warn!("logging failed: {e}");
    }
    let final_report = match result? {
        Some(r) => r,
        None if primary => evaluate_model(&t.model, &val, &cfg, &device)?,
        // Not rank 0: no evaluation; the caller ignores this rank's report.
        None => EvalReport {
            miou: 0.0,
            iou: Vec::new(),
            pixel_accuracy: 0.0,
            confusion: core_seg::metrics::ConfusionMatrix::new(cfg.model.nclass),
        },
    };
    if !primary {
        let _ = std::fs::remove_dir_all(&log_dir);
    }
    let best_miou = t.best.map(|b| b.0).unwrap_or(final_report.miou);
    Ok(RunResult { final_report, best_miou, observer: obs, class_names })
}

/// Registers the configured method terms (TV, MIM, reconstruction) on the trainer; they compose with any framework.
pub fn add_method_terms(t: &mut Trainer, cfg: &RunConfig, steps_per_epoch: usize) -> anyhow::Result<()> {
    if let Some(tv) = cfg.tv.as_ref().filter(|tv| tv.enabled) {
        t.add_aux_term(|_vb| tv_loss::build(tv))?;
    }
    if let Some(mim) = cfg.mim.as_ref().filter(|m| m.mode != aux_mim::MimMode::Off) {
        let mut mim = mim.clone();
        mim.iters_per_epoch = Some(steps_per_epoch);
        let (semi, model) = (cfg.semi.clone(), cfg.model.clone());
        t.add_aux_term(move |vb| aux_mim::build_with_semi(&mim, &semi, &model, vb))?;
    }
    if let Some(recon) = cfg.recon.as_ref().filter(|r| r.enabled) {
        // R draws its initial weights from its own stream of the run seed (`aux_recon::var_builder`).
        let (recon, semi, model, store, seed) =
            (recon.clone(), cfg.semi.clone(), cfg.model.clone(), t.store.clone(), t.cfg.seed);
        t.add_aux_term(move |vb| {
            let vb = aux_recon::var_builder(&store, seed, vb.dtype(), vb.device());
            aux_recon::build(&recon, Some(&semi), &model, vb)
        })?;
    }
    Ok(())
}

/// Validation mIoU with MRF post-processing of the probabilities.
pub fn evaluate_mrf(
    model: &DeepLabV3Plus,
    val: &Dataset,
    cfg: &RunConfig,
    mrf: &tv_loss::MrfConfig,
    device: &Device,
) -> anyhow::Result<EvalReport> {
    let mut cm = core_seg::metrics::ConfusionMatrix::new(cfg.model.nclass);
    for s in data::val_samples(val.clone(), device.clone(), 4) {
        let s = s?;
        let probs = core_seg::eval::predict_probs(&s.image, &cfg.eval, &|x: &Tensor| model.forward_t(x, Mode::Eval))?;
        let rgb = tv_loss::rgb_from_normalized(&s.image, data::augment::MEAN, data::augment::STD)?;
        let labels: Vec<u32> = tv_loss::mrf_labels(&probs, Some(&rgb), mrf)?.flatten_all()?.to_vec1()?;
        cm.update(&labels, &s.mask.flatten_all()?.to_vec1::<u32>()?)?;
    }
    Ok(EvalReport {
        miou: 100.0 * cm.miou(cfg.eval.miou_skip_empty),
        iou: cm.iou().iter().map(|v| 100.0 * v).collect(),
        pixel_accuracy: 100.0 * cm.pixel_accuracy(),
        confusion: cm,
    })
}

/// MRF evaluation with β given or chosen on the validation set; returns (β, report).
pub fn evaluate_mrf_tuned(
    model: &DeepLabV3Plus,
    val: &Dataset,
    cfg: &RunConfig,
    beta: Option<f64>,
    device: &Device,
) -> anyhow::Result<(f64, EvalReport)> {
    let mut mrf = cfg.mrf.clone().unwrap_or_default();
    let beta = match beta {
        Some(b) => b,
        None => {
            let mut err = None;
            let pick = tv_loss::select_beta(&mrf.clone(), |b| {
                let m = tv_loss::MrfConfig { beta: b, ..mrf.clone() };
                evaluate_mrf(model, val, cfg, &m, device).map(|r| r.miou).or_else(|e| {
                    err.get_or_insert(e);
                    Ok(f64::NEG_INFINITY)
                })
            })?;
            if let Some(e) = err {
                return Err(e);
            }
            pick.0
        }
    };
    mrf.beta = beta;
    Ok((beta, evaluate_mrf(model, val, cfg, &mrf, device)?))
}

/// Prefixes of training-only branches saved in checkpoints for resume; inference ignores them.
pub const TRAINING_ONLY_PREFIXES: [&str; 5] = ["recon.", "mim_head.", "decode_head_mix.", "head_mix.", "mitrans."];

/// Loads a checkpoint for inference: every model variable must be set; the only extra keys allowed are those of
/// training-only branches ([`TRAINING_ONLY_PREFIXES`]).
pub fn load_inference_weights(store: &ParamStore, path: &Path) -> anyhow::Result<()> {
    let r = weights::load_safetensors(store, path, false)?;
    let unexpected: Vec<&String> =
        r.unexpected.iter().filter(|k| !TRAINING_ONLY_PREFIXES.iter().any(|p| k.starts_with(p))).collect();
    if !r.missing.is_empty() || !unexpected.is_empty() {
        bail!("{}: strict load: missing {:?}, unexpected {:?}", path.display(), r.missing, unexpected);
    }
    Ok(())
}

/// The model of `cfg` with the weights of `weights_path` (eval use).
pub fn load_model(cfg: &RunConfig, weights_path: &Path, device: &Device) -> anyhow::Result<DeepLabV3Plus> {
    let store = ParamStore::new(0);
    let model = DeepLabV3Plus::new(&cfg.model, store.var_builder(DType::F32, device))?;
    load_inference_weights(&store, weights_path)?;
    Ok(model)
}

/// The run config: `config` when given, else the one a `train` checkpoint stores.
pub fn config_of(config: Option<&Path>, checkpoint: &Path, device: &Device) -> anyhow::Result<RunConfig> {
    match config {
        Some(p) => RunConfig::load(p),
        None => {
            let ck = core_seg::train::load_checkpoint(checkpoint, device)
                .with_context(|| "no --config given, and the checkpoint holds no run config")?;
            serde_json::from_value(ck.state.config).context("checkpoint's stored config")
        }
    }
}
