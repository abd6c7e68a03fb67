//! Epoch-based loaders yielding Candle batches, with rayon decode/augment and a bounded prefetch queue.
//!
//! Sample randomness is `SegRng::stream(seed, &[stream, epoch, position])`; the epoch order is a seeded
//! shuffle. Batches are therefore identical for any thread count. The labelled list is repeated
//! `ceil(n_u / n_l)` times and truncated to `n_u` (UniMatch), then shuffled each epoch; incomplete last
//! batches are dropped.

use std::sync::Arc;

use candle_core::{Device, Tensor};
use core_seg::batch::{LabeledBatch, TrainBatch, UnlabeledBatch};
use core_seg::rng::SegRng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::augment::{self, AugConfig, LabeledCrop, UnlabeledCrop};
use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::prefetch::{spawn_prefetch, Prefetch};

const ORDER_L: u64 = 0x0DE1;
const ORDER_U: u64 = 0x0DE2;
const ORDER_MIX: u64 = 0x0DE3;
const AUG_L: u64 = 0xA001;
const AUG_U: u64 = 0xA002;
const AUG_MIX: u64 = 0xA003;

/// Where the "mix" stream's images come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MixPartner {
    /// The same raw images as the unlabelled batch, augmented independently (UniMatch's shared sampler).
    #[default]
    SameImage,
    /// An independently shuffled pass over the unlabelled set.
    ShuffledBatch,
}

/// Loader settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoaderConfig {
    /// Labelled batch size B.
    pub batch_size: usize,
    /// Unlabelled batch size B_u.
    pub batch_size_u: usize,
    /// Seed of every draw.
    pub seed: u64,
    /// Batches prepared ahead (bounded queue length, ≥ 1).
    pub prefetch: usize,
    /// Worker threads for decode/augment (`None` = rayon's global pool).
    pub threads: Option<usize>,
    /// Mix-stream source.
    pub mix_partner: MixPartner,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self { batch_size: 2, batch_size_u: 2, seed: 0, prefetch: 4, threads: None, mix_partner: MixPartner::SameImage }
    }
}

/// A validation sample: full normalised image `[1,3,H,W]`, mask `[1,H,W] u32`, id.
#[derive(Debug, Clone)]
pub struct ValSample {
    /// Normalised image.
    pub image: Tensor,
    /// Labels.
    pub mask: Tensor,
    /// Sample id.
    pub id: String,
}

/// The training loader over a labelled and (optionally) an unlabelled dataset.
#[derive(Clone)]
pub struct Loader {
    labeled: Arc<Dataset>,
    unlabeled: Option<Arc<Dataset>>,
    aug: Arc<AugConfig>,
    cfg: LoaderConfig,
    device: Device,
    pool: Option<Arc<rayon::ThreadPool>>,
}

fn perm(n: usize, seed: u64, tag: u64, epoch: u64) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    SegRng::stream(seed, &[tag, epoch]).shuffle(&mut v);
    v
}

impl Loader {
    /// A loader; `unlabeled = None` gives a supervised-only loader.
    pub fn new(
        labeled: Dataset,
        unlabeled: Option<Dataset>,
        aug: AugConfig,
        cfg: LoaderConfig,
        device: Device,
    ) -> Result<Self> {
        aug.validate()?;
        if cfg.batch_size == 0 || cfg.batch_size_u == 0 || cfg.prefetch == 0 {
            return Err(Error::Config("batch sizes and prefetch must be > 0".into()));
        }
        if labeled.is_empty() {
            return Err(Error::Config("labelled dataset is empty".into()));
        }
        let pool = match cfg.threads {
            Some(n) => Some(Arc::new(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build()
                    .map_err(|e| Error::Config(format!("thread pool: {e}")))?,
            )),
            None => None,
        };
        Ok(Self {
            labeled: Arc::new(labeled),
            unlabeled: unlabeled.map(Arc::new),
            aug: Arc::new(aug),
            cfg,
            device,
            pool,
        })
    }

    /// Steps per epoch: `n_u / max(B, B_u)` semi-supervised, `n_l / B` supervised.
    pub fn steps_per_epoch(&self) -> usize {
        match &self.unlabeled {
            Some(u) => u.len() / self.cfg.batch_size.max(self.cfg.batch_size_u),
            None => self.labeled.len() / self.cfg.batch_size,
        }
    }

    /// The labelled order of an epoch: repeated to `n` entries (truncated), then shuffled.
    fn labeled_order(&self, n: usize, epoch: u64) -> Vec<usize> {
        let n_l = self.labeled.len();
        let mut v: Vec<usize> = (0..n).map(|i| i % n_l).collect();
        SegRng::stream(self.cfg.seed, &[ORDER_L, epoch]).shuffle(&mut v);
        v
    }

    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        match &self.pool {
            Some(p) => p.install(f),
            None => f(),
        }
    }

    /// Labelled batch for positions `pos` (indices `idx`) of an epoch.
    fn labeled_batch(&self, epoch: u64, pos: &[usize], idx: &[usize]) -> Result<LabeledBatch> {
        let crops: Vec<(String, LabeledCrop)> = self.run(|| {
            pos.par_iter()
                .zip(idx.par_iter())
                .map(|(&p, &i)| {
                    let raw = self.labeled.sample(i)?;
                    let mask = raw.mask.ok_or_else(|| Error::Config(format!("sample {} has no mask", raw.id)))?;
                    let mut rng = SegRng::stream(self.cfg.seed, &[AUG_L, epoch, p as u64]);
                    Ok((raw.id, augment::augment_labeled(&raw.image, &mask, &self.aug, &mut rng)))
                })
                .collect::<Result<Vec<_>>>()
        })?;
        crate::batch::labeled(crops, self.aug.crop_size, &self.device)
    }

    /// Unlabelled and mix batches for positions `pos` (indices `idx`, mix indices `midx`).
    fn unlabeled_batches(
        &self,
        epoch: u64,
        pos: &[usize],
        idx: &[usize],
        midx: &[usize],
    ) -> Result<[UnlabeledBatch; 2]> {
        let u = self.unlabeled.as_ref().ok_or_else(|| Error::Config("no unlabelled dataset".into()))?;
        let same = self.cfg.mix_partner == MixPartner::SameImage;
        type Pair = ((String, UnlabeledCrop), (String, UnlabeledCrop));
        let crops: Vec<Pair> = self.run(|| {
            (0..pos.len())
                .into_par_iter()
                .map(|k| {
                    let raw = u.image_only(idx[k])?;
                    let mut r1 = SegRng::stream(self.cfg.seed, &[AUG_U, epoch, pos[k] as u64]);
                    let a = augment::augment_unlabeled(&raw.image, &self.aug, &mut r1);
                    let mraw = if same { raw.clone() } else { u.image_only(midx[k])? };
                    let mut r2 = SegRng::stream(self.cfg.seed, &[AUG_MIX, epoch, pos[k] as u64]);
                    let b = augment::augment_unlabeled(&mraw.image, &self.aug, &mut r2);
                    Ok(((raw.id, a), (mraw.id, b)))
                })
                .collect::<Result<Vec<_>>>()
        })?;
        let (a, b): (Vec<_>, Vec<_>) = crops.into_iter().unzip();
        let s = self.aug.crop_size;
        Ok([crate::batch::unlabeled(a, s, &self.device)?, crate::batch::unlabeled(b, s, &self.device)?])
    }

    /// One step of a semi-supervised epoch.
    fn semi_step(&self, epoch: u64, step: usize, l: &[usize], u: &[usize], m: &[usize]) -> Result<TrainBatch> {
        let (b, bu) = (self.cfg.batch_size, self.cfg.batch_size_u);
        let lp: Vec<usize> = (step * b..(step + 1) * b).collect();
        let up: Vec<usize> = (step * bu..(step + 1) * bu).collect();
        let li: Vec<usize> = lp.iter().map(|&p| l[p]).collect();
        let ui: Vec<usize> = up.iter().map(|&p| u[p]).collect();
        let mi: Vec<usize> = up.iter().map(|&p| m[p]).collect();
        let labeled = self.labeled_batch(epoch, &lp, &li)?;
        let [unlabeled, mix] = self.unlabeled_batches(epoch, &up, &ui, &mi)?;
        Ok(TrainBatch { labeled, unlabeled: Some(unlabeled), mix: Some(mix) })
    }

    /// A semi-supervised epoch: `for batch in loader.epoch(e) { let batch = batch?; ... }`.
    pub fn epoch(&self, epoch: u64) -> Result<Prefetch<TrainBatch>> {
        let n_u = self
            .unlabeled
            .as_ref()
            .map(|u| u.len())
            .ok_or_else(|| Error::Config("epoch() needs an unlabelled dataset; use supervised_epoch()".into()))?;
        let seed = self.cfg.seed;
        let l = self.labeled_order(n_u, epoch);
        let u = perm(n_u, seed, ORDER_U, epoch);
        let m = match self.cfg.mix_partner {
            MixPartner::SameImage => u.clone(),
            MixPartner::ShuffledBatch => perm(n_u, seed, ORDER_MIX, epoch),
        };
        let this = self.clone();
        let steps = self.steps_per_epoch();
        Ok(spawn_prefetch(steps, self.cfg.prefetch, move |s| this.semi_step(epoch, s, &l, &u, &m)))
    }

    /// A supervised epoch: one shuffled pass over the labelled set (batches without unlabelled parts).
    pub fn supervised_epoch(&self, epoch: u64) -> Prefetch<TrainBatch> {
        let order = perm(self.labeled.len(), self.cfg.seed, ORDER_L, epoch);
        let this = self.clone();
        let b = self.cfg.batch_size;
        let steps = self.labeled.len() / b;
        spawn_prefetch(steps, self.cfg.prefetch, move |s| {
            let pos: Vec<usize> = (s * b..(s + 1) * b).collect();
            let idx: Vec<usize> = pos.iter().map(|&p| order[p]).collect();
            Ok(TrainBatch { labeled: this.labeled_batch(epoch, &pos, &idx)?, unlabeled: None, mix: None })
        })
    }
}

/// Validation samples in order (full image, no resize, batch 1), prefetched.
pub fn val_samples(ds: Dataset, device: Device, prefetch: usize) -> Prefetch<ValSample> {
    let n = ds.len();
    spawn_prefetch(n, prefetch.max(1), move |i| {
        let raw = ds.sample(i)?;
        let mask = raw.mask.ok_or_else(|| Error::Config(format!("val sample {} has no mask", raw.id)))?;
        let (w, h) = (raw.image.width, raw.image.height);
        let image = Tensor::from_vec(augment::normalize_image(&raw.image), (1, 3, h, w), &device)?;
        let m: Vec<u32> = mask.data.iter().map(|&v| v as u32).collect();
        Ok(ValSample { image, mask: Tensor::from_vec(m, (1, h, w), &device)?, id: raw.id })
    })
}
