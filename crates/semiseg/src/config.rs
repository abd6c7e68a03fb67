//! The run configuration: one TOML file, every hyper-parameter with its documented default, unknown keys rejected.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{bail, fs, Context};
use crate::Result;
use core_seg::eval::EvalConfig;
use core_seg::frameworks::SemiConfig;
use core_seg::methods::RunContext;
use core_seg::model::DeepLabConfig;
use core_seg::train::TrainConfig;
use data::synthetic::SynthConfig;
use data::{AugConfig, DatasetKind, LoaderConfig};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Synthetic-scene split: the first `num_labeled` of `num_train` scenes are labelled; all `num_train` are the
/// unlabelled set (as in the prototype); `num_val` scenes from another seed are the validation set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticSplit {
    pub num_train: usize,
    pub num_labeled: usize,
    pub num_val: usize,
    pub seed: u64,
    pub scene: SynthConfig,
}

impl Default for SyntheticSplit {
    fn default() -> Self {
        Self { num_train: 2000, num_labeled: 125, num_val: 500, seed: 1, scene: SynthConfig::default() }
    }
}

/// Where the data comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// `voc`, `cityscapes`, `synthetic` or `folder` (a folder dataset or a preset, `[data.folder]`).
    pub dataset: DatasetKind,
    /// Dataset root (VOC/Cityscapes/folder); `--data-root` overrides it, `$SEMISEG_DATA` is the fallback.
    #[serde(default)]
    pub root: Option<PathBuf>,
    /// VOC/Cityscapes: split folder under the split lists (e.g. `92`, `1_16`).
    #[serde(default)]
    pub split: Option<String>,
    /// VOC/Cityscapes: split lists directory; default: the repository's `datasets/splits/<pascal|cityscapes>`.
    #[serde(default)]
    pub splits_dir: Option<PathBuf>,
    /// `dataset = "synthetic"`: the generated scenes.
    #[serde(default)]
    pub synthetic: SyntheticSplit,
    /// `dataset = "folder"`: preset, classes, remap, ignore value and splits (every key documented on
    /// [`data::folder::FolderConfig`]).
    #[serde(default)]
    pub folder: data::folder::FolderConfig,
    /// Skip (and list) unreadable or invalid samples instead of refusing to start.
    #[serde(default)]
    pub skip_bad: bool,
    /// Sparse pixel labels on the labelled training images (`[data.sparse] mode, ratio, seed`); absent = dense.
    #[serde(default)]
    pub sparse: Option<data::sparse::SparseConfig>,
}

/// One training run. Unknown keys are errors naming the key: the core tables are closed, and every other
/// top-level table must belong to a method plug-in ([`crate::methods`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub data: DataSection,
    #[serde(default)]
    pub aug: AugConfig,
    #[serde(default)]
    pub loader: LoaderConfig,
    #[serde(default)]
    pub model: DeepLabConfig,
    #[serde(default)]
    pub train: TrainConfig,
    /// Epochs over the unlabelled set (labelled set for supervised); when set, overrides `train.iters`.
    #[serde(default)]
    pub epochs: Option<usize>,
    #[serde(default)]
    pub semi: SemiConfig,
    #[serde(default)]
    pub eval: EvalConfig,
    /// Backbone (or full) weights to start from (UniMatch deep-stem, timm or torchvision names).
    #[serde(default)]
    pub pretrained: Option<PathBuf>,
    /// Scale `train.lr` by `total batch / lr_reference_batch` (UniMatch issue #13).
    #[serde(default)]
    pub scale_lr_with_batch: bool,
    #[serde(default = "default_ref_batch")]
    pub lr_reference_batch: usize,
    /// The method tables (`[tv]`, `[mrf]`, `[mim]`, `[recon]`, `[guidedmix]`, …), each read by the plug-in that
    /// owns it ([`RunConfig::section`]).
    #[serde(flatten)]
    pub methods: BTreeMap<String, serde_json::Value>,
}

fn default_ref_batch() -> usize {
    8
}

impl RunConfig {
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self> {
        let cfg: RunConfig = toml::from_str(text).with_context(|| format!("{}: invalid config", origin.display()))?;
        cfg.validate().with_context(|| format!("{}: invalid config", origin.display()))?;
        Ok(cfg)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = fs::read_to_string(path)?;
        Self::from_toml(&text, path)
    }

    /// Checks the core tables, that every method table has a plug-in and `semi.method` a framework, and each
    /// plug-in's tables.
    pub fn validate(&self) -> Result<()> {
        if self.model.nclass < 2 {
            bail!("model.nclass must be ≥ 2");
        }
        if self.data.dataset == DatasetKind::Synthetic && self.model.nclass != self.data.synthetic.scene.num_classes {
            bail!(
                "model.nclass {} ≠ data.synthetic.scene.num_classes {}",
                self.model.nclass,
                self.data.synthetic.scene.num_classes
            );
        }
        if self.data.dataset == DatasetKind::Folder {
            self.data.folder.validate()?;
            if let Some(k) = self.data.folder.static_num_classes().filter(|&k| k != self.model.nclass) {
                bail!(
                    "model.nclass {} ≠ the folder dataset's {k} classes (data.folder.num_classes or its preset)",
                    self.model.nclass
                );
            }
        } else if self.data.folder != data::folder::FolderConfig::default() {
            bail!("[data.folder] is read only with data.dataset = \"folder\"");
        }
        if !(0.0..=1.0).contains(&self.semi.conf_thresh) {
            bail!("semi.conf_thresh must be in [0, 1]");
        }
        crate::methods::validate(&self.context(None))
    }

    /// Errors when the run directory's `config.toml` (written when the run started) describes another
    /// training than `self`: a run continued with `--resume` must be the run it was. The iteration budget
    /// (`train.iters`, `epochs`: a run may be extended), the dataset root, the resolved pretrained path,
    /// `data.skip_bad` and `train.checkpoint_every` (resuming is bit-exact, so where checkpoints fall does not
    /// change the run) may differ. A `config.toml` this build cannot read only gets a warning.
    pub fn check_resumable(&self, run_dir: &Path) -> Result<()> {
        let path = run_dir.join("config.toml");
        let Ok(text) = std::fs::read_to_string(&path) else { return Ok(()) };
        let old: RunConfig = match toml::from_str(&text) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("{}: not comparable with this run's config ({e}); resuming anyway", path.display());
                return Ok(());
            }
        };
        let comparable = |c: &RunConfig| -> Result<toml::Value> {
            let mut c = c.clone();
            (c.train.iters, c.epochs, c.data.root, c.pretrained, c.data.skip_bad) = (0, None, None, None, false);
            c.train.checkpoint_every = 0;
            Ok(toml::Value::try_from(&c)?)
        };
        let (was, now) = (comparable(&old)?, comparable(self)?);
        if was != now {
            let diff = crate::reproduce::merge::differences(&was, &now, "");
            bail!(
                "{}: this run was started with another config ({}); continue it with the same settings or use another output directory",
                path.display(),
                diff.join(", ")
            );
        }
        Ok(())
    }

    /// What method plug-ins see of this run (`steps_per_epoch` once the data is built).
    pub fn context(&self, steps_per_epoch: Option<usize>) -> RunContext<'_> {
        RunContext {
            model: &self.model,
            semi: &self.semi,
            batch_size: self.loader.batch_size,
            batch_size_u: self.loader.batch_size_u,
            steps_per_epoch,
            sections: &self.methods,
        }
    }

    /// The method table `[name]` as `T` (`None` when absent), e.g. `cfg.section::<tv_loss::MrfConfig>("mrf")`.
    pub fn section<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        Ok(self.context(None).section(name)?)
    }

    /// The effective base learning rate (with linear batch scaling when asked).
    pub fn base_lr(&self) -> f64 {
        if self.scale_lr_with_batch {
            self.train.lr * self.loader.batch_size as f64 / self.lr_reference_batch.max(1) as f64
        } else {
            self.train.lr
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let err = RunConfig::from_toml("[data]\ndataset = \"synthetic\"\n[train]\nitres = 3\n", Path::new("x.toml"))
            .err()
            .map(|e| format!("{:#}", anyhow::Error::from(e)))
            .unwrap_or_default();
        assert!(err.contains("itres") && err.contains("x.toml"), "{err}");
    }

    /// A top-level table no method plug-in owns, and a `semi.method` no framework has, are errors naming them and
    /// the known ones.
    #[test]
    fn unknown_method_table_and_framework_are_errors() {
        let err = |text: &str| {
            let toml_text = format!("[data]\ndataset = \"synthetic\"\n[model]\nnclass = 6\n{text}");
            RunConfig::from_toml(&toml_text, Path::new("m.toml"))
                .err()
                .map(|e| format!("{:#}", anyhow::Error::from(e)))
                .unwrap_or_default()
        };
        let e = err("[tvv]\nenabled = true\n");
        assert!(e.contains("`tvv`") && e.contains("recon") && e.contains("m.toml"), "{e}");
        let e = err("[semi]\nmethod = \"cutmix\"\n");
        assert!(e.contains("cutmix") && e.contains("guidedmix") && e.contains("mean_teacher"), "{e}");
        assert!(err("[semi]\nmethod = \"guidedmix\"\n[loader]\nbatch_size = 2\nbatch_size_u = 2\n").is_empty());
    }

    /// A config with method tables survives the round trips a run makes: TOML (`config.toml` in the run
    /// directory, reports) and JSON (the copy stored in checkpoints).
    #[test]
    fn method_tables_round_trip_through_toml_and_json() -> anyhow::Result<()> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        for file in ["tv-synthetic.toml", "mim-synthetic.toml", "recon-synthetic.toml", "guidedmix-synthetic.toml"] {
            let cfg = RunConfig::load(&dir.join(file))?;
            assert!(!cfg.methods.is_empty(), "{file}");
            let from_toml = RunConfig::from_toml(&toml::to_string(&cfg)?, Path::new(file))?;
            assert_eq!(from_toml, cfg, "{file}");
            let from_json: RunConfig = serde_json::from_value(serde_json::to_value(&cfg)?)?;
            assert_eq!(from_json, cfg, "{file}");
        }
        let tv = RunConfig::load(&dir.join("tv-synthetic.toml"))?.section::<tv_loss::TvConfig>("tv")?;
        assert_eq!(tv.map(|t| (t.enabled, t.weight)), Some((true, 0.1)));
        Ok(())
    }

    #[test]
    fn recipes_parse_with_spec_defaults() -> anyhow::Result<()> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let voc = RunConfig::load(&dir.join("voc.toml"))?;
        assert_eq!((voc.aug.crop_size, voc.train.lr, voc.train.lr_multi), (321, 0.001, 10.0));
        assert_eq!((voc.semi.conf_thresh, voc.loader.batch_size, voc.epochs), (0.95, 8, Some(80)));
        let cs = RunConfig::load(&dir.join("cityscapes.toml"))?;
        assert_eq!((cs.aug.crop_size, cs.train.lr, cs.semi.conf_thresh), (801, 0.005, 0.0));
        assert!(matches!(cs.semi.criterion, core_seg::frameworks::Criterion::Ohem(_)));
        assert_eq!((cs.eval.mode, cs.eval.window), (core_seg::eval::EvalMode::SlidingWindow, 801));
        let syn = RunConfig::load(&dir.join("synthetic.toml"))?;
        assert_eq!(syn.data.dataset, DatasetKind::Synthetic);
        for method_cfg in [
            "tv-synthetic.toml",
            "tv-voc.toml",
            "mim-synthetic.toml",
            "mim-voc.toml",
            "mim-cityscapes.toml",
            "recon-synthetic.toml",
            "recon-voc.toml",
            "recon-cityscapes.toml",
        ] {
            RunConfig::load(&dir.join(method_cfg))?;
        }
        let cs = RunConfig::load(&dir.join("recon-cityscapes.toml"))?.section::<aux_recon::ReconConfig>("recon")?;
        let cs = cs.unwrap_or_default();
        assert_eq!(cs.foreground(19), (11..=18).collect::<Vec<u32>>());
        Ok(())
    }

    #[test]
    fn folder_configs_select_their_presets_and_keys_are_checked() -> anyhow::Result<()> {
        use data::folder::Preset;
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        for (file, preset, k) in [
            ("camvid.toml", Preset::Camvid, 11),
            ("horse.toml", Preset::WeizmannHorse, 2),
            ("stanford.toml", Preset::StanfordBackground, 8),
        ] {
            let c = RunConfig::load(&dir.join(file))?;
            assert_eq!((c.data.dataset, c.data.folder.preset, c.model.nclass), (DatasetKind::Folder, Some(preset), k));
            assert_eq!(c.model.encoder_channels()?, [24, 32, 96, 320], "{file}: MobileNetV2 encoder");
        }
        let camvid = RunConfig::load(&dir.join("camvid.toml"))?.data.folder;
        assert_eq!((camvid.num_labeled, camvid.scale, camvid.remap_pairs()), (Some(46), Some(0.5), vec![[11, 255]]));
        assert_eq!(RunConfig::load(&dir.join("stanford.toml"))?.data.folder.val_carve(), 72);
        let base = "[data]\ndataset = \"folder\"\n[data.folder]\npreset = \"camvid\"\n";
        for (extra, needle) in [
            ("num_labled = 3\n[model]\nnclass = 11\n", "num_labled"),
            ("[model]\nnclass = 12\n", "model.nclass 12"),
            ("val = \"val\"\nval_from_train = 5\n[model]\nnclass = 11\n", "val_from_train"),
            ("scale = -1.0\n[model]\nnclass = 11\n", "scale"),
        ] {
            let err = RunConfig::from_toml(&format!("{base}{extra}"), Path::new("f.toml"))
                .err()
                .map(|e| format!("{:#}", anyhow::Error::from(e)));
            let err = err.unwrap_or_default();
            assert!(err.contains(needle) && err.contains("f.toml"), "{extra}: {err}");
        }
        let voc_with_folder = "[data]\ndataset = \"voc\"\n[data.folder]\nnum_labeled = 3\n";
        let err = RunConfig::from_toml(voc_with_folder, Path::new("v.toml"))
            .err()
            .map(|e| format!("{:#}", anyhow::Error::from(e)));
        assert!(err.unwrap_or_default().contains("data.folder"));
        Ok(())
    }

    #[test]
    fn recon_errors_name_the_key_and_the_file() {
        for (text, key) in [
            ("[recon]\nenabeld = true\n", "enabeld"),
            ("[recon]\nweight = -2.0\n", "recon.weight"),
            ("[recon]\nfg_classes = [0, 9]\n", "recon.fg_classes"),
            ("[recon.diagnose]\nlayer = \"u7\"\n", "recon.diagnose.layer"),
        ] {
            let toml_text = format!("[data]\ndataset = \"synthetic\"\n[model]\nnclass = 6\n{text}");
            let err = RunConfig::from_toml(&toml_text, Path::new("r.toml"))
                .err()
                .map(|e| format!("{:#}", anyhow::Error::from(e)));
            let err = err.unwrap_or_default();
            assert!(err.contains(key) && err.contains("r.toml"), "{text}: {err}");
        }
    }

    /// GuidedMix's official schedule and network (`yh-pengtu/GuidedMix-Net` configs) in the VOC / Cityscapes configs.
    #[test]
    fn guidedmix_configs_have_the_official_schedule() -> anyhow::Result<()> {
        use core_seg::model::{Backbone, HeadKind, Stem};
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        for (file, crop, b, depth) in [
            ("guidedmix-voc.toml", 512, 4, Backbone::Resnet50),
            ("guidedmix-cityscapes.toml", 769, 2, Backbone::Resnet101),
        ] {
            let c = RunConfig::load(&dir.join(file))?;
            assert_eq!(c.semi.method.name(), "guidedmix", "{file}");
            assert_eq!((c.aug.crop_size, c.loader.batch_size, c.loader.batch_size_u), (crop, b, b), "{file}");
            assert_eq!((c.model.head, c.model.stem, c.model.output_stride), (HeadKind::Deeplabv3, Stem::V1c, 8));
            assert_eq!((c.model.backbone, c.model.aspp_channels), (depth, Some(512)), "{file}");
            let t = &c.train;
            assert_eq!((t.lr, t.lr_min, t.lr_multi, t.poly_power, t.iters), (0.01, 1e-4, 1.0, 0.9, 20000), "{file}");
            let sgd = core_seg::optim::OptimConfig::Sgd { momentum: 0.9, weight_decay: 5e-4 };
            assert_eq!((t.optim, t.eval_every), (sgd, 2000), "{file}");
            assert_eq!(c.section("guidedmix")?, Some(guidedmix::GuidedMixConfig::default()), "{file}");
        }
        let syn = RunConfig::load(&dir.join("guidedmix-synthetic.toml"))?;
        assert_eq!((syn.semi.method.name(), syn.model.head), ("guidedmix", HeadKind::Deeplabv3));
        let mut bad = syn.clone();
        bad.loader.batch_size_u = 4;
        assert!(bad.validate().is_err());
        Ok(())
    }
}
