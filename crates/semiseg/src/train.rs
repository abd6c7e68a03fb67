//! One training run assembled from its config: datasets, model, framework, method terms, evaluation, checkpoints,
//! logs.
//!
//! ```no_run
//! # fn main() -> semiseg::Result<()> {
//! use semiseg::{RunConfig, Runner};
//! let cfg = RunConfig::load(std::path::Path::new("configs/synthetic.toml"))?;
//! let result = Runner::from_config(cfg)?.out("runs/synthetic").iters(100).quiet(true).train()?;
//! println!("best mIoU {:.2}", result.best_miou);
//! # Ok(())
//! # }
//! ```

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use core_seg::eval::EvalReport;
use core_seg::frameworks::Method;
use core_seg::model::weights;
use core_seg::train::{TrainConfig, Trainer};

use crate::config::RunConfig;
use crate::datasets::{self, LoaderSource};
use crate::error::fs;
use crate::runtime::RunObserver;
use crate::{eval, methods, Result};

/// How one run is trained, besides its config (what `cargo xtask train` takes on its command line).
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Run directory (checkpoints, metrics.csv, TensorBoard events).
    pub out: PathBuf,
    /// Continue from `out/latest.safetensors` (`out/previous.safetensors`, with a warning, when latest is
    /// unreadable).
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
    /// Training wall time, summed over the processes of a resumed run ([`core_seg::train::Trainer::train_secs`]).
    pub train_secs: f64,
}

/// A run's assembly: its config and how to train it. Built with [`Runner::from_config`], adjusted with the
/// setters, consumed by [`Runner::train`].
#[derive(Debug, Clone)]
pub struct Runner {
    cfg: RunConfig,
    opts: TrainOptions,
}

/// The result of [`Runner::evaluate`].
pub struct Evaluation {
    pub report: EvalReport,
    pub class_names: Vec<String>,
    /// β of the MRF post-processing, when it was applied.
    pub mrf_beta: Option<f64>,
}

impl Runner {
    /// A runner for `cfg` with the default [`TrainOptions`]; the config is checked first (core tables and every
    /// method plug-in's).
    pub fn from_config(cfg: RunConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Self { cfg, opts: TrainOptions::default() })
    }

    /// All options at once (what the command line gives).
    pub fn options(mut self, opts: TrainOptions) -> Self {
        self.opts = opts;
        self
    }

    /// Run directory (checkpoints, `metrics.csv`, TensorBoard events).
    pub fn out(mut self, dir: impl Into<PathBuf>) -> Self {
        self.opts.out = dir.into();
        self
    }

    /// Continue from `out/latest.safetensors` when it exists (`out/previous.safetensors`, with a warning, when
    /// latest is unreadable).
    pub fn resume(mut self, resume: bool) -> Self {
        self.opts.resume = resume;
        self
    }

    /// Dataset root (else the config's, else `$SEMISEG_DATA`).
    pub fn data_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.opts.data_root = Some(root.into());
        self
    }

    /// Seed of the run (overrides `train.seed`).
    pub fn seed(mut self, seed: u64) -> Self {
        self.opts.seed = Some(seed);
        self
    }

    /// Iteration budget (overrides `train.iters` and `epochs`).
    pub fn iters(mut self, iters: usize) -> Self {
        self.opts.iters = Some(iters);
        self
    }

    /// No progress bar.
    pub fn quiet(mut self, quiet: bool) -> Self {
        self.opts.quiet = quiet;
        self
    }

    /// Training device: `cpu`, `cuda` or `cuda:N`.
    pub fn device(mut self, device: &str) -> Self {
        self.opts.device = device.to_string();
        self
    }

    /// The config the run uses.
    pub fn config(&self) -> &RunConfig {
        &self.cfg
    }

    /// Trains the run: builds the datasets and the batch stream, the model, the framework (core-seg's or a
    /// plug-in's), the method terms, loads pretrained weights or resumes, trains with evaluations and
    /// checkpoints, and returns the final evaluation.
    pub fn train(self) -> Result<RunResult> {
        let (mut cfg, a) = (self.cfg, self.opts);
        let device = crate::gpus::device(&a.device)?;
        let (primary, world) = (core_seg::dist::is_primary(), core_seg::dist::world_size());
        if let Some(s) = a.seed {
            cfg.train.seed = s;
        }
        crate::pretrain::resolve(&mut cfg)?;
        cfg.data.skip_bad |= a.skip_bad;
        if a.resume {
            cfg.check_resumable(&a.out)?;
        }
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
        if iters == 0 {
            return Err(crate::Error::Invalid(
                "the iteration budget is 0 (`--iters`, `train.iters` or `epochs`): nothing to train".into(),
            ));
        }
        let tcfg = TrainConfig { iters, lr: cfg.base_lr(), ..cfg.train.clone() };
        let run = cfg.context(Some(source.steps_per_epoch));
        let mut t = Trainer::with_framework(&cfg.model, tcfg, methods::framework_builder(&run)?, DType::F32, &device)?;
        t.out_dir = Some(a.out.clone());
        t.run_config = serde_json::to_value(&cfg)?;
        methods::add_terms(&run, &mut t)?;
        if let Some(p) = &cfg.pretrained {
            let r = weights::load_safetensors(&t.store, p, false)?;
            tracing::info!(loaded = r.loaded.len(), missing = r.missing.len(), unexpected = ?r.unexpected, "pretrained {}", p.display());
        }
        let mut resumed = None;
        if a.resume {
            // Falls back to `previous.safetensors` (with a warning) when `latest` is unreadable.
            if let Some(r) = t.resume_latest(&a.out)? {
                tracing::info!(iter = r.iter, "resumed from {}", r.path.display());
                resumed = Some((r.path, r.iter));
            }
        }
        // Data parallel: every rank must continue from the same checkpoint (an error naming each rank's view).
        core_seg::dist::agree_on_resume(&a.out, resumed.as_ref().map(|(p, i)| (p.as_path(), *i)))?;
        // Data parallel: only rank 0 writes the run directory; the other ranks log into a scratch directory.
        let log_dir = if primary {
            a.out.clone()
        } else {
            std::env::temp_dir().join(format!("semiseg-rank{}-{}", core_seg::dist::rank(), std::process::id()))
        };
        if primary {
            fs::create_dir_all(&a.out)?;
            fs::write_atomic(&a.out.join("config.toml"), toml::to_string(&cfg)?)?;
        }
        let mut obs = RunObserver::new(&log_dir, iters, t.iter, class_names.clone(), a.quiet || !primary)?;
        let val = d.val;
        let result = t.run(&mut source, &mut |m| eval::evaluate_model(m, &val, &cfg, &device), &mut obs);
        obs.finish();
        if let Some(e) = &obs.failed {
            tracing::warn!("logging failed: {e}");
        }
        let final_report = match result? {
            Some(r) => r,
            None if primary => eval::evaluate_model(&t.model, &val, &cfg, &device)?,
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
        Ok(RunResult { final_report, best_miou, observer: obs, class_names, train_secs: t.train_secs() })
    }

    /// Evaluates the weights of `checkpoint` on the validation set, with MRF post-processing when `mrf` is
    /// `Some(β)` (`Some(None)`: β chosen on the validation set from `mrf.beta_grid`).
    pub fn evaluate(&self, checkpoint: &Path, mrf: Option<Option<f64>>) -> Result<Evaluation> {
        let device = Device::Cpu;
        let model = eval::load_model(&self.cfg, checkpoint, &device)?;
        let val = datasets::build(&self.cfg, self.opts.data_root.as_ref(), false)?.val;
        let (report, mrf_beta) = match mrf {
            Some(beta) => {
                let (beta, r) = eval::evaluate_mrf_tuned(&model, &val, &self.cfg, beta, &device)?;
                (r, Some(beta))
            }
            None => (eval::evaluate_model(&model, &val, &self.cfg, &device)?, None),
        };
        Ok(Evaluation { report, class_names: val.class_names(), mrf_beta })
    }
}
