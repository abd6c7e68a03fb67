//! Builds the datasets and the batch stream a run config names, and feeds them to the training loop.

use std::path::PathBuf;

use crate::error::{bail, Context};
use crate::Result;
use candle_core::Device;
use core_seg::batch::{BatchSource, TrainBatch};
use data::folder::FolderDataset;
use data::prefetch::Prefetch;
use data::synthetic::SyntheticDataset;
use data::{Dataset, DatasetKind, FileDataset, Loader};

use crate::config::{DataSection, RunConfig};

/// Train (labelled, unlabelled) and validation datasets.
pub struct RunData {
    pub labeled: Dataset,
    pub unlabeled: Option<Dataset>,
    pub val: Dataset,
}

/// The folders a dataset needs and where to get it, for the error a user sees when they are missing.
pub fn expected_layout(d: &DataSection) -> &'static str {
    match d.dataset {
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
        DatasetKind::Folder => data::folder::expected_layout(d.folder.preset),
    }
}

/// Resolves the data root: CLI, then config, then `$SEMISEG_DATA`; its folders must exist. For a folder preset,
/// `<root>/<preset name>` (e.g. `<root>/camvid`) is used when the root itself does not hold the layout.
pub fn data_root(cfg: &RunConfig, cli: Option<&PathBuf>) -> Result<PathBuf> {
    let d = &cfg.data;
    let root = cli.cloned().or_else(|| d.root.clone()).or_else(|| std::env::var_os("SEMISEG_DATA").map(PathBuf::from));
    let Some(root) = root else {
        bail!(
            "no data root for {}: pass --data-root DIR or set SEMISEG_DATA. Expected {}",
            name(d),
            expected_layout(d)
        );
    };
    let missing = |root: &PathBuf| -> Vec<PathBuf> {
        match d.dataset {
            DatasetKind::Voc => vec![root.join("JPEGImages")],
            DatasetKind::Cityscapes => vec![root.join("leftImg8bit")],
            DatasetKind::Synthetic => vec![root.clone()],
            DatasetKind::Folder => data::folder::missing_folders(d.folder.preset, root),
        }
        .into_iter()
        .filter(|p| !p.is_dir())
        .collect()
    };
    let lacking = missing(&root);
    if lacking.is_empty() {
        return Ok(root);
    }
    if let Some(sub) = d
        .folder
        .preset
        .map(|p| root.join(p.name()))
        .filter(|s| d.dataset == DatasetKind::Folder && missing(s).is_empty())
    {
        return Ok(sub);
    }
    let list: Vec<String> = lacking.iter().map(|p| p.display().to_string()).collect();
    bail!("{} not found. Expected {}", list.join(", "), expected_layout(d));
}

/// The dataset's name in messages.
fn name(d: &DataSection) -> String {
    match (d.dataset, d.folder.preset) {
        (DatasetKind::Folder, Some(p)) => p.name().to_string(),
        (kind, _) => format!("{kind:?}"),
    }
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
    if d.dataset == DatasetKind::Folder {
        return build_folder(cfg, &root, semi);
    }
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

/// A folder dataset's run splits: seeded labelled subset / validation carve-out, each set pre-flight checked.
fn build_folder(cfg: &RunConfig, root: &std::path::Path, semi: bool) -> Result<RunData> {
    let d = &cfg.data;
    let folder = FolderDataset::open(&d.folder, root, Some(cfg.model.nclass))?;
    let k = folder.labels().num_classes();
    if k != cfg.model.nclass {
        bail!(
            "model.nclass {} ≠ the {k} classes of {} (classes.csv or data.folder.num_classes)",
            cfg.model.nclass,
            root.display()
        );
    }
    let run = folder.run_splits(&d.folder)?;
    if !run.problems.is_empty() {
        let list: Vec<String> = run.problems.iter().map(|p| p.to_string()).collect();
        if !d.skip_bad {
            bail!("{} problems in the split lists (use --skip-bad to skip):\n{}", list.len(), list.join("\n"));
        }
        list.iter().for_each(|p| tracing::warn!("skipped: {p}"));
    }
    let unlabeled = match (semi, run.unlabeled) {
        (false, _) => None,
        (true, Some(u)) => Some(checked(u, false, d.skip_bad)?),
        (true, None) => bail!(
            "semi.method = {:?} needs unlabelled images: set data.folder.num_labeled (a seeded labelled subset of \
             split `{}`; its other ids become unlabelled) or data.folder.unlabeled (a split of unlabelled ids)",
            cfg.semi.method,
            d.folder.labeled_split()
        ),
    };
    Ok(RunData {
        labeled: checked(run.labeled, true, d.skip_bad)?,
        unlabeled,
        val: checked(run.val, true, d.skip_bad)?,
    })
}

/// The held-out test split of a folder dataset (`data.folder.test`, else its `test` list), pre-flight checked;
/// `None` for datasets without one. Final numbers are read on it once, from the checkpoint chosen on validation.
pub fn build_test(cfg: &RunConfig, cli_root: Option<&PathBuf>) -> Result<Option<Dataset>> {
    let d = &cfg.data;
    if d.dataset != DatasetKind::Folder {
        return Ok(None);
    }
    let root = data_root(cfg, cli_root)?;
    let run = FolderDataset::open(&d.folder, &root, Some(cfg.model.nclass))?.run_splits(&d.folder)?;
    run.test.map(|t| checked(t, true, d.skip_bad)).transpose()
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
