//! The run configuration: one TOML file, every hyper-parameter with the spec's default, unknown keys rejected.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use core_seg::eval::EvalConfig;
use core_seg::frameworks::{Method, SemiConfig};
use core_seg::model::DeepLabConfig;
use core_seg::train::TrainConfig;
use data::synthetic::SynthConfig;
use data::{AugConfig, DatasetKind, LoaderConfig};
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
    pub dataset: DatasetKind,
    /// Dataset root (VOC/Cityscapes); overridden by `--data-root`, else `$SEMISEG_DATA`.
    #[serde(default)]
    pub root: Option<PathBuf>,
    /// Split folder under the split lists (e.g. `92`, `1_16`).
    #[serde(default)]
    pub split: Option<String>,
    /// Split lists directory; default: the repository's `datasets/splits/<pascal|cityscapes>`.
    #[serde(default)]
    pub splits_dir: Option<PathBuf>,
    #[serde(default)]
    pub synthetic: SyntheticSplit,
    /// Skip (and list) unreadable or invalid samples instead of refusing to start.
    #[serde(default)]
    pub skip_bad: bool,
    /// Sparse pixel labels on the labelled training images (`[data.sparse] mode, ratio, seed`); absent = dense.
    #[serde(default)]
    pub sparse: Option<data::sparse::SparseConfig>,
}

/// One training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
    /// Unsupervised total-variation loss term (crate `tv-loss`).
    #[serde(default)]
    pub tv: Option<tv_loss::TvConfig>,
    /// Potts-MRF post-processing for `cargo xtask eval --postprocess mrf` (crate `tv-loss`).
    #[serde(default)]
    pub mrf: Option<tv_loss::MrfConfig>,
    /// Class-wise masked image modelling, feature aggregation, MIM in semantic space (crate `aux-mim`).
    #[serde(default)]
    pub mim: Option<aux_mim::MimConfig>,
    /// Image reconstruction as an auxiliary task, plain or object/background-disentangled (crate `aux-recon`).
    #[serde(default)]
    pub recon: Option<aux_recon::ReconConfig>,
    /// GuidedMix-Net hyper-parameters for `semi.method = "guidedmix"` (crate `guidedmix`; defaults when absent).
    #[serde(default)]
    pub guidedmix: Option<guidedmix::GuidedMixConfig>,
}

fn default_ref_batch() -> usize {
    8
}

impl RunConfig {
    pub fn from_toml(text: &str, origin: &Path) -> anyhow::Result<Self> {
        let cfg: RunConfig = toml::from_str(text).with_context(|| format!("{}: invalid config", origin.display()))?;
        cfg.validate().with_context(|| format!("{}: invalid config", origin.display()))?;
        Ok(cfg)
    }

    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::from_toml(&text, path)
    }

    fn validate(&self) -> anyhow::Result<()> {
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
        if !(0.0..=1.0).contains(&self.semi.conf_thresh) {
            bail!("semi.conf_thresh must be in [0, 1]");
        }
        if let Some(r) = &self.recon {
            r.geometry(&self.model)?;
        }
        if let Some(gm) = &self.guidedmix {
            gm.validate()?;
        }
        if self.semi.method == Method::Guidedmix {
            let gm = self.guidedmix_config();
            if gm.pairing == guidedmix::Pairing::Random && self.loader.batch_size != self.loader.batch_size_u {
                bail!(
                    "guidedmix.pairing = random pairs the batch with a permutation of itself: loader.batch_size {} \
                     must equal loader.batch_size_u {}",
                    self.loader.batch_size,
                    self.loader.batch_size_u
                );
            }
        }
        Ok(())
    }

    /// The `[guidedmix]` table, or its defaults (the official code) when absent.
    pub fn guidedmix_config(&self) -> guidedmix::GuidedMixConfig {
        self.guidedmix.clone().unwrap_or_default()
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
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(err.contains("itres") && err.contains("x.toml"), "{err}");
    }

    #[test]
    fn recipes_parse_with_spec_defaults() -> anyhow::Result<()> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let voc = RunConfig::load(&dir.join("voc.toml"))?;
        assert_eq!((voc.aug.crop_size, voc.train.lr, voc.train.lr_multi), (321, 0.001, 10.0));
        assert_eq!((voc.semi.conf_thresh, voc.loader.batch_size, voc.epochs), (0.95, 8, Some(80)));
        let cs = RunConfig::load(&dir.join("cityscapes.toml"))?;
        assert_eq!((cs.aug.crop_size, cs.train.lr, cs.semi.conf_thresh), (801, 0.005, 0.0));
        assert!(matches!(cs.semi.criterion, core_seg::train::Criterion::Ohem(_)));
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
        let cs = RunConfig::load(&dir.join("recon-cityscapes.toml"))?.recon.unwrap_or_default();
        assert_eq!(cs.foreground(19), (11..=18).collect::<Vec<u32>>());
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
            let err = RunConfig::from_toml(&toml_text, Path::new("r.toml")).err().map(|e| format!("{e:#}"));
            let err = err.unwrap_or_default();
            assert!(err.contains(key) && err.contains("r.toml"), "{text}: {err}");
        }
    }

    /// GuidedMix's official schedule (guidedmix.md §4) and network (§2) in the VOC / Cityscapes configs.
    #[test]
    fn guidedmix_configs_have_the_official_schedule() -> anyhow::Result<()> {
        use core_seg::model::{Backbone, HeadKind, Stem};
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        for (file, crop, b, depth) in [
            ("guidedmix-voc.toml", 512, 4, Backbone::Resnet50),
            ("guidedmix-cityscapes.toml", 769, 2, Backbone::Resnet101),
        ] {
            let c = RunConfig::load(&dir.join(file))?;
            assert_eq!(c.semi.method, Method::Guidedmix, "{file}");
            assert_eq!((c.aug.crop_size, c.loader.batch_size, c.loader.batch_size_u), (crop, b, b), "{file}");
            assert_eq!((c.model.head, c.model.stem, c.model.output_stride), (HeadKind::Deeplabv3, Stem::V1c, 8));
            assert_eq!((c.model.backbone, c.model.aspp_channels), (depth, Some(512)), "{file}");
            let t = &c.train;
            assert_eq!((t.lr, t.lr_min, t.lr_multi, t.poly_power, t.iters), (0.01, 1e-4, 1.0, 0.9, 20000), "{file}");
            let sgd = core_seg::optim::OptimConfig::Sgd { momentum: 0.9, weight_decay: 5e-4 };
            assert_eq!((t.optim, t.eval_every), (sgd, 2000), "{file}");
            assert_eq!(c.guidedmix_config(), guidedmix::GuidedMixConfig::default(), "{file}");
        }
        let syn = RunConfig::load(&dir.join("guidedmix-synthetic.toml"))?;
        assert_eq!((syn.semi.method, syn.model.head), (Method::Guidedmix, HeadKind::Deeplabv3));
        let mut bad = syn.clone();
        bad.loader.batch_size_u = 4;
        assert!(bad.validate().is_err());
        Ok(())
    }
}
