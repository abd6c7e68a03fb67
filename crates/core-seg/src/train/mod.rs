//! The one training loop. Frameworks ([`Framework`]) supply the step's losses and auxiliary terms
//! ([`AuxTerm`]) add to them; the loop owns the model, the optimiser and its schedule, evaluation, checkpoints and
//! resume.

pub mod checkpoint;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

pub use checkpoint::{load_checkpoint, load_resumable, save_checkpoint, Checkpoint, Resumable, TrainState};

use crate::batch::{BatchSource, TrainBatch};
use crate::eval::EvalReport;
use crate::model::{weights, DeepLabConfig, DeepLabV3Plus};
use crate::nn::ParamStore;
use crate::optim::{backbone_head_groups, poly_lr_floor, OptimConfig, Optimizer};
use crate::plugin::{AuxTerm, Framework, StepCtx};
use crate::rng::SegRng;
use crate::{Error, Result};

/// Optimisation schedule and bookkeeping (UniMatch defaults where they exist).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub iters: usize,
    /// Backbone learning rate; other parameters use `lr · lr_multi`.
    pub lr: f64,
    pub lr_multi: f64,
    pub poly_power: f64,
    /// Floor of the poly schedule: `lr = (lr − lr_min)·(1 − it/T)^p + lr_min` (mmcv `min_lr`; 0 = plain poly).
    pub lr_min: f64,
    pub optim: OptimConfig,
    /// Evaluate every N iterations (0 = only at the end).
    pub eval_every: usize,
    /// Write `latest.safetensors` every N iterations (0 = only at evaluations and the end).
    pub checkpoint_every: usize,
    pub seed: u64,
    /// `f32` (default) or `bf16`: convolutions of the training forward in bf16 ([`crate::nn::AutocastGuard`]).
    pub precision: Precision,
    /// Data parallel: batch-norm statistics over the global batch (SyncBN, as UniMatch). No effect in a
    /// single process.
    pub sync_bn: bool,
}

/// Arithmetic precision of the training step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in the model dtype.
    #[default]
    F32,
    /// Mixed precision: convolutions in bf16 (tensor cores on GPU), everything else and the weights in f32.
    Bf16,
}

impl Precision {
    /// The autocast dtype of the convolutions (`None` for f32).
    pub fn autocast(self) -> Option<DType> {
        match self {
            Precision::F32 => None,
            Precision::Bf16 => Some(DType::BF16),
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            iters: 1000,
            lr: 0.001,
            lr_multi: 10.0,
            poly_power: 0.9,
            lr_min: 0.0,
            optim: OptimConfig::default(),
            eval_every: 0,
            checkpoint_every: 0,
            seed: 0,
            precision: Precision::F32,
            sync_bn: true,
        }
    }
}

/// One iteration's logged values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub iter: usize,
    pub lr: f64,
    pub loss: f64,
    pub terms: Vec<(String, f64)>,
    pub stats: Vec<(String, f64)>,
}

/// Receives progress: steps, evaluations, checkpoints (progress bars, CSV/TensorBoard writers).
pub trait Observer {
    fn on_step(&mut self, _rec: &StepRecord, _total: usize) {}
    fn on_eval(&mut self, _iter: usize, _report: &EvalReport) {}
    /// Called before the checkpoint after iteration `iter` is written: flush logs, so that a run killed
    /// later and resumed from this checkpoint finds every logged iteration up to `iter` on disk.
    fn on_checkpoint(&mut self, _iter: usize) {}
}

/// Does nothing.
pub struct NoObserver;
impl Observer for NoObserver {}

/// Model, framework, auxiliary terms, optimiser and run state.
pub struct Trainer {
    pub model: DeepLabV3Plus,
    pub framework: Box<dyn Framework>,
    pub aux: Vec<Box<dyn AuxTerm>>,
    pub store: ParamStore,
    pub opt: Optimizer,
    pub rng: SegRng,
    pub cfg: TrainConfig,
    /// Completed iterations.
    pub iter: usize,
    pub best: Option<(f64, usize)>,
    pub out_dir: Option<PathBuf>,
    /// The full run configuration, stored in checkpoints.
    pub run_config: serde_json::Value,
    /// `out_dir/latest.safetensors` is unreadable (a resume fell back to `previous`): the next save replaces
    /// it instead of rotating it into `previous`.
    latest_is_bad: bool,
    /// The model's device: CPU steps run on the rayon pool ([`Trainer::step`]).
    on_cpu: bool,
    /// Training wall time before this process: from the checkpoint resumed from.
    secs_before: f64,
    /// When this process took its first step.
    clock: Option<std::time::Instant>,
}

/// Where [`Trainer::resume_latest`] resumed from.
#[derive(Debug, Clone, PartialEq)]
pub struct Resumed {
    pub path: PathBuf,
    pub iter: usize,
    /// Set when `latest.safetensors` was missing or unreadable and `previous.safetensors` was used instead.
    pub warning: Option<String>,
}

impl Trainer {
    /// A freshly initialised model (weights drawn from the seed) trained by `framework`.
    pub fn new(
        model_cfg: &DeepLabConfig,
        cfg: TrainConfig,
        framework: Box<dyn Framework>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        Self::with_framework(model_cfg, cfg, |_| Ok(framework), dtype, device)
    }

    /// As [`Trainer::new`], with the framework built by `build` from a `VarBuilder` on the model's store (after
    /// the model's weights are drawn), for frameworks with parameters of their own (e.g. GuidedMix's mixed head):
    /// they are trained (at the head lr) and checkpointed like the model's.
    pub fn with_framework(
        model_cfg: &DeepLabConfig,
        cfg: TrainConfig,
        build: impl FnOnce(candle_nn::VarBuilder<'static>) -> Result<Box<dyn Framework>>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        if cfg.precision != Precision::F32 && !device.is_cuda() {
            return Err(Error::Config(format!(
                "train.precision = {:?} needs a CUDA device (Candle's CPU backend has no bf16 matmul)",
                cfg.precision
            )));
        }
        let store = ParamStore::new(cfg.seed);
        let model = DeepLabV3Plus::new(model_cfg, store.var_builder(dtype, device))?;
        let framework = build(store.var_builder(dtype, device))?;
        let groups = backbone_head_groups(&store.named_vars(), cfg.lr_multi);
        let opt = Optimizer::new(cfg.optim, groups, cfg.lr);
        // Data parallel: every rank initialises the same weights (same seed) but draws its own dropout and
        // augmentation randomness; rank 0 keeps the single-process stream.
        let rng = match crate::dist::rank() {
            0 => SegRng::stream(cfg.seed, &[0x7a1e]),
            r => SegRng::stream(cfg.seed, &[0x7a1e, r as u64]),
        };
        Ok(Self {
            model,
            framework,
            aux: Vec::new(),
            store,
            opt,
            rng,
            cfg,
            iter: 0,
            best: None,
            out_dir: None,
            run_config: serde_json::Value::Null,
            latest_is_bad: false,
            on_cpu: device.is_cpu(),
            secs_before: 0.0,
            clock: None,
        })
    }

    /// Adds an auxiliary loss term. `build` gets a `VarBuilder` on the model's store, so the term's own
    /// parameters (e.g. a reconstruction decoder) are trained (at the head lr) and checkpointed.
    pub fn add_aux_term(
        &mut self,
        build: impl FnOnce(candle_nn::VarBuilder<'static>) -> Result<Box<dyn AuxTerm>>,
    ) -> Result<()> {
        let term = build(self.model_var_builder()?)?;
        self.aux.push(term);
        self.opt.groups = backbone_head_groups(&self.store.named_vars(), self.cfg.lr_multi);
        Ok(())
    }

    /// A `VarBuilder` on the model's store, in the model's dtype and device.
    fn model_var_builder(&self) -> Result<candle_nn::VarBuilder<'static>> {
        let first = self.store.named_vars().into_iter().next().ok_or_else(|| Error::Weights("empty model".into()))?;
        Ok(self.store.var_builder(first.1.dtype(), first.1.device()))
    }

    /// Learning rate for iteration `it` (0-based): `(lr − lr_min)·(1 − it/T)^p + lr_min`.
    pub fn lr_at(&self, it: usize) -> f64 {
        poly_lr_floor(self.cfg.lr, self.cfg.lr_min, it, self.cfg.iters, self.cfg.poly_power)
    }

    /// One optimisation step. A non-finite loss is an error raised before any parameter changes.
    ///
    /// On the CPU the step runs on a worker of rayon's pool, where the kernels' parallel loops start without
    /// handing each job over from an outside thread (a sleep and a wake-up per operation). A program that
    /// called [`crate::kernels::configure_cpu_pools`] with ≥ 2 threads already runs on worker 0; otherwise,
    /// e.g. with one thread, where the calling thread cannot be a worker (the prefetcher's jobs would never run
    /// while it waits for a batch), the batch is taken here and the step moves to the pool: at one thread
    /// `step-synth-64-b8` went 88 → 65 ms, `unimatch-synth-64-b8` 391 → 335 ms and `step-mnv2-160-b8`
    /// 829 → 756 ms. A GPU step stays on the caller, which holds the device context and the NCCL communicator.
    pub fn step(&mut self, source: &mut dyn BatchSource) -> Result<StepRecord> {
        let batch = source.batch(self.iter)?;
        if rayon::current_thread_index().is_some() || !self.on_cpu {
            return self.step_on(&batch);
        }
        rayon::scope(|_| self.step_on(&batch))
    }

    /// [`Trainer::step`] on a given batch, on the calling thread.
    pub fn step_on(&mut self, batch: &TrainBatch) -> Result<StepRecord> {
        self.clock.get_or_insert_with(std::time::Instant::now);
        let it = self.iter;
        let lr = self.lr_at(it);
        self.opt.set_lr(lr);
        let mut ctx = StepCtx { iter: it, total_iters: self.cfg.iters, rng: &mut self.rng, store: &self.store };
        let autocast = crate::nn::AutocastGuard::new(self.cfg.precision.autocast());
        let mut losses = self.framework.losses(&self.model, batch, &mut ctx)?;
        if let Some(tensors) = losses.tensors.take() {
            for term in &mut self.aux {
                for (name, l) in term.losses(&self.model, &tensors, &mut ctx)? {
                    losses.total = (losses.total + &l)?;
                    losses.terms.push((name, l.detach()));
                }
                losses.stats.extend(term.stats());
            }
        }
        drop(autocast);
        let loss = losses.total.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let mut terms = Vec::with_capacity(losses.terms.len());
        for (name, t) in &losses.terms {
            let v = t.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            if !v.is_finite() {
                return Err(Error::NonFiniteLoss { term: name.clone(), value: v, iter: it });
            }
            terms.push((name.clone(), v));
        }
        if !loss.is_finite() {
            return Err(Error::NonFiniteLoss { term: "loss_all".into(), value: loss, iter: it });
        }
        let mut grads = losses.total.backward()?;
        // Data parallel: the mean gradient over the ranks (no-op in a single process).
        crate::dist::all_reduce_grads(&self.trainable_vars(), &mut grads)?;
        self.opt.step(&grads)?;
        self.framework.after_step(&self.store)?;
        self.iter += 1;
        Ok(StepRecord { iter: it, lr, loss, terms, stats: losses.stats })
    }

    /// The optimiser's variables (every parameter with a learning rate), in a fixed order.
    pub fn trainable_vars(&self) -> Vec<candle_core::Var> {
        self.opt.groups.iter().flat_map(|g| g.vars.iter().map(|(_, v)| v.clone())).collect()
    }

    /// Trains until `cfg.iters`, evaluating with `evaluate` every `eval_every` iterations and at the end;
    /// checkpoints go to `out_dir` (`latest.safetensors`, and `best.safetensors` on improvement).
    ///
    /// Data parallel ([`crate::dist`]): the model starts from rank 0's weights; only rank 0 evaluates, writes
    /// checkpoints and reports to `observer` (the other ranks return `None`).
    pub fn run(
        &mut self,
        source: &mut dyn BatchSource,
        evaluate: &mut dyn FnMut(&DeepLabV3Plus) -> Result<EvalReport>,
        observer: &mut dyn Observer,
    ) -> Result<Option<EvalReport>> {
        let vars: Vec<candle_core::Var> = self.store.named_vars().into_iter().map(|(_, v)| v).collect();
        crate::dist::broadcast_vars(&vars)?;
        crate::dist::set_sync_bn(self.cfg.sync_bn);
        let primary = crate::dist::is_primary();
        let mut last = None;
        while self.iter < self.cfg.iters {
            let rec = self.step(source)?;
            if !primary {
                continue;
            }
            observer.on_step(&rec, self.cfg.iters);
            let done = self.iter == self.cfg.iters;
            let eval_now = done || (self.cfg.eval_every > 0 && self.iter.is_multiple_of(self.cfg.eval_every));
            if eval_now {
                let report = evaluate(&self.model)?;
                observer.on_eval(self.iter, &report);
                let improved = self.best.is_none_or(|(b, _)| report.miou > b);
                if improved {
                    self.best = Some((report.miou, self.iter));
                }
                observer.on_checkpoint(self.iter);
                self.save_latest()?;
                if improved {
                    self.save_named("best.safetensors")?;
                }
                last = Some(report);
            } else if self.cfg.checkpoint_every > 0 && self.iter.is_multiple_of(self.cfg.checkpoint_every) {
                observer.on_checkpoint(self.iter);
                self.save_latest()?;
            }
        }
        Ok(last)
    }

    /// Wall time spent training this run (steps, evaluations, checkpoints), summed over the processes of a
    /// resumed run: what earlier ones spent up to the checkpoint resumed from, plus this one's since its first step.
    pub fn train_secs(&self) -> f64 {
        self.secs_before + self.clock.map_or(0.0, |c| c.elapsed().as_secs_f64())
    }

    fn state(&self) -> TrainState {
        TrainState {
            train_secs: self.train_secs(),
            iter: self.iter,
            rng: self.rng.state(),
            optim_steps: self.opt.step_count,
            best_miou: self.best.map(|b| b.0),
            best_iter: self.best.map(|b| b.1),
            config: self.run_config.clone(),
        }
    }

    fn save_named(&self, name: &str) -> Result<()> {
        let Some(dir) = &self.out_dir else {
            return Ok(());
        };
        self.save_checkpoint(&dir.join(name))
    }

    /// Writes `latest.safetensors` in `out_dir`, keeping the one it replaces as `previous.safetensors`
    /// (no-op without `out_dir`).
    pub fn save_latest(&mut self) -> Result<()> {
        let Some(dir) = &self.out_dir else {
            return Ok(());
        };
        let model = self.model_tensors();
        let (framework, state) = (self.framework.state_tensors(), self.state());
        let parts =
            checkpoint::CheckpointParts { model: &model, optim: &self.opt.state, framework: &framework, state: &state };
        checkpoint::save_rotating(dir, &parts, !self.latest_is_bad)?;
        self.latest_is_bad = false;
        Ok(())
    }

    /// Writes a full checkpoint to `path`.
    pub fn save_checkpoint(&self, path: &Path) -> Result<()> {
        save_checkpoint(path, &self.model_tensors(), &self.opt.state, &self.framework.state_tensors(), &self.state())
    }

    fn model_tensors(&self) -> Vec<(String, candle_core::Tensor)> {
        self.store.named_vars().into_iter().map(|(n, v)| (n, v.as_tensor().clone())).collect()
    }

    fn device(&self) -> Device {
        self.store.named_vars().first().map(|(_, v)| v.device().clone()).unwrap_or(Device::Cpu)
    }

    /// Resumes from the run directory `dir`: `latest.safetensors`, or `previous.safetensors` when `latest` is
    /// missing, truncated or corrupt (logged as a warning and returned in [`Resumed::warning`]). `None` when
    /// `dir` holds no checkpoint.
    pub fn resume_latest(&mut self, dir: &Path) -> Result<Option<Resumed>> {
        let Some(r) = load_resumable(dir, &self.device())? else {
            return Ok(None);
        };
        if let Some(w) = &r.warning {
            tracing::warn!("{w}");
        }
        self.latest_is_bad = r.warning.is_some();
        let iter = r.checkpoint.state.iter;
        self.apply_checkpoint(r.checkpoint, &r.path)?;
        Ok(Some(Resumed { path: r.path, iter, warning: r.warning }))
    }

    /// Restores model, optimiser, RNG and counters from a checkpoint.
    pub fn resume_from(&mut self, path: &Path) -> Result<()> {
        let ck = load_checkpoint(path, &self.device())?;
        self.apply_checkpoint(ck, path)
    }

    fn apply_checkpoint(&mut self, ck: Checkpoint, path: &Path) -> Result<()> {
        weights::load_tensors(&self.store, &ck.model, true).map_err(|e| Error::file(path, e.to_string()))?;
        let dtypes: std::collections::HashMap<String, DType> =
            self.store.named_vars().into_iter().map(|(n, v)| (n, v.dtype())).collect();
        self.opt.state = ck
            .optim
            .into_iter()
            .map(|(k, t)| {
                let param = k.rsplit_once('.').map(|(p, _)| p.to_string()).unwrap_or_default();
                let dt = dtypes.get(&param).copied().unwrap_or(t.dtype());
                Ok((k, t.to_dtype(dt)?))
            })
            .collect::<Result<_>>()?;
        self.framework.load_state_tensors(&self.store, &self.model, &ck.framework)?;
        self.opt.step_count = ck.state.optim_steps;
        // The checkpoint holds rank 0's stream; in data parallel the other ranks derive a fresh one from their rank
        // and the iteration, so that they keep drawing different randomness after a resume.
        self.rng = match crate::dist::rank() {
            0 => SegRng::from_state(ck.state.rng),
            r => SegRng::stream(self.cfg.seed, &[0x7a1e, r as u64, ck.state.iter as u64]),
        };
        self.iter = ck.state.iter;
        self.best = ck.state.best_miou.zip(ck.state.best_iter);
        (self.secs_before, self.clock) = (ck.state.train_secs, None);
        Ok(())
    }
}
