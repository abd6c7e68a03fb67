//! Builds the datasets and the batch stream a run config names, and feeds them to the training loop.

use std::path::PathBuf;

use crate::error::{bail, Context};
use crate::Result;
use candle_core::Device;
use core_seg::batch::{BatchSource, TrainBatch};
use data::prefetch::Prefetch;
use data::synthetic::SyntheticDataset;
use data::{Dataset, DatasetKind, FileDataset, Loader};

use crate::config::RunConfig;

/// Train (labelled, unlabelled) and validation datasets.
pub struct RunData {
    pub labeled: Dataset,
    pub unlabeled: Option<Dataset>,
    pub val: Dataset,
}

/// The folders a paper dataset needs, for the error a user sees when they are missing.
pub fn expected_layout(kind: DatasetKind) -> &'static str {
    match kind {
        DatasetKind::Voc => {
            "PASCAL VOC 2012 + SBD in UniMatch's layout: <root>/JPEGImages/<id>.jpg and \
             <root>/SegmentationClass/<id>.png (8-bit index masks of the 10,582-image train_aug set; VOC devkit \
             VOC2012/JPEGImages + SegmentationClassAug from SBD). Get VOC 2012 from the PASCAL VOC site and SBD \
             (benchmark_RELEASE) from its authors; split lists ship in datasets/splits/pascal"
        }
        DatasetKind::Cityscapes => {
            "Cityscapes: <root>/leftImg8bit/{train,val}/<city>/*_leftImg8bit.png and \
             <root>/gtFine/{train,val}/<city>/*_gtFine_labelTrainIds.png (or *_labelIds.png, converted on load). \
             Download leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip from cityscapes-dataset.com; split \
             lists ship in datasets/splits/cityscapes"
        }
        DatasetKind::Synthetic => "nothing: synthetic scenes are generated in memory",
    }
}

/// Resolves the data root: CLI, then config, then `$SEMISEG_DATA`; it must exist.
pub fn data_root(cfg: &RunConfig, cli: Option<&PathBuf>) -> Result<PathBuf> {
    let kind = cfg.data.dataset;
    let root =
        cli.cloned().or_else(|| cfg.data.root.clone()).or_else(|| std::env::var_os("SEMISEG_DATA").map(PathBuf::from));
    let Some(root) = root else {
        bail!(
            "no data root for {kind:?}: pass --data-root DIR or set SEMISEG_DATA. Expected: {}",
            expected_layout(kind)
        );
    };
    let probe = match kind {
        DatasetKind::Voc => root.join("JPEGImages"),
        DatasetKind::Cityscapes => root.join("leftImg8bit"),
        DatasetKind::Synthetic => root.clone(),
    };
    if !probe.is_dir() {
        bail!("{} not found. Expected {}", probe.display(), expected_layout(kind));
    }
    Ok(root)
}

fn splits_dir(cfg: &RunConfig) -> PathBuf {
    cfg.data.splits_dir.clone().unwrap_or_else(|| {
        let sub = if cfg.data.dataset == DatasetKind::Cityscapes { "cityscapes" } else { "pascal" };
        data::splits::builtin_splits_dir().join(sub)
    })
}

fn checked(mut ds: FileDataset, labelled: bool, skip_bad: bool) -> Result<Dataset> {
    for p in data::check::preflight(&mut ds, labelled, skip_bad)? {
        tracing::warn!("skipped: {p}");
    }
    Ok(Dataset::Files(ds))
}

/// Builds the run's datasets; file datasets are validated first (pre-flight). With `[data.sparse]` the labelled
/// training masks keep only that fraction of their pixels (validation stays dense).
pub fn build(cfg: &RunConfig, cli_root: Option<&PathBuf>, semi: bool) -> Result<RunData> {
    let mut run = build_dense(cfg, cli_root, semi)?;
    if let Some(sp) = &cfg.data.sparse {
        sp.validate()?;
        run.labeled = Dataset::Sparse(Box::new(run.labeled), sp.clone());
    }
    Ok(run)
}

fn build_dense(cfg: &RunConfig, cli_root: Option<&PathBuf>, semi: bool) -> Result<RunData> {
    let d = &cfg.data;
    if d.dataset == DatasetKind::Synthetic {
        let s = &d.synthetic;
        if s.num_labeled == 0 || s.num_labeled > s.num_train {
            bail!("data.synthetic: num_labeled must be in 1..=num_train");
        }
        let labeled = Dataset::Synthetic(SyntheticDataset::new(s.scene.clone(), s.seed, s.num_labeled)?);
        let unlabeled = Dataset::Synthetic(SyntheticDataset::new(s.scene.clone(), s.seed, s.num_train)?);
        let dense = data::synthetic::SynthConfig { label_fraction: 1.0, ..s.scene.clone() };
        let val = Dataset::Synthetic(SyntheticDataset::new(dense, s.seed.wrapping_add(1_000_003), s.num_val)?);
        return Ok(RunData { labeled, unlabeled: semi.then_some(unlabeled), val });
    }
    let root = data_root(cfg, cli_root)?;
    let split = d.split.as_deref().context("data.split is required for VOC/Cityscapes (e.g. \"92\" or \"1_16\")")?;
    let set = data::splits::load_split_set(&splits_dir(cfg), split)?;
    let k = cfg.model.nclass;
    let mk = |entries| FileDataset::new(d.dataset, &root, entries, k);
    Ok(RunData {
        labeled: checked(mk(set.labeled), true, d.skip_bad)?,
        unlabeled: if semi { Some(checked(mk(set.unlabeled), false, d.skip_bad)?) } else { None },
        val: checked(mk(set.val), true, d.skip_bad)?,
    })
}

/// Serves `batch(it)` from the epoch-based loader: epoch `it / steps`, position `it % steps`. A jump (resume)
/// restarts that epoch's deterministic stream and skips to the position.
pub struct LoaderSource {
    loader: Loader,
    semi: bool,
    pub steps_per_epoch: usize,
    current: Option<(usize, Prefetch<TrainBatch>)>,
}

impl LoaderSource {
    pub fn new(labeled: Dataset, unlabeled: Option<Dataset>, cfg: &RunConfig, device: &Device) -> Result<Self> {
        let semi = unlabeled.is_some();
        let mut lcfg = cfg.loader.clone();
        // Data parallel: each rank draws its own shuffle and augmentation (rank 0 = the single-process stream).
        lcfg.seed = match core_seg::dist::rank() {
            0 => cfg.train.seed,
            r => cfg.train.seed ^ (r as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        };
        let loader = Loader::new(labeled, unlabeled, cfg.aug.clone(), lcfg, device.clone())?;
        let steps_per_epoch = loader.steps_per_epoch();
        if steps_per_epoch == 0 {
            bail!("fewer samples than one batch: no training step per epoch");
        }
        Ok(Self { loader, semi, steps_per_epoch, current: None })
    }

    fn start(&self, epoch: u64) -> data::Result<Prefetch<TrainBatch>> {
        if self.semi {
            self.loader.epoch(epoch)
        } else {
            Ok(self.loader.supervised_epoch(epoch))
        }
    }
}

impl BatchSource for LoaderSource {
    fn batch(&mut self, iter: usize) -> core_seg::Result<TrainBatch> {
        let (epoch, pos) = (iter / self.steps_per_epoch, iter % self.steps_per_epoch);
        let want_restart = !matches!(&self.current, Some((next, _)) if *next == iter);
        if want_restart {
            let mut stream = self.start(epoch as u64)?;
            for _ in 0..pos {
                next(&mut stream)?;
            }
            self.current = Some((iter, stream));
        }
        let (_, stream) = self.current.as_mut().expect("stream started");
        let b = next(stream)?;
        let done_epoch = pos + 1 == self.steps_per_epoch;
        self.current = if done_epoch { None } else { self.current.take().map(|(_, s)| (iter + 1, s)) };
        Ok(b)
    }
}

fn next(stream: &mut Prefetch<TrainBatch>) -> core_seg::Result<TrainBatch> {
    let b = stream.next().ok_or_else(|| core_seg::Error::InvalidArgument("data stream ended early".into()))?;
    Ok(b?)
}
