//! `MimConfig`: every [design] choice as a key of the `[mim]` table, with its default (`docs/aux-mim.md`).
//!
//! TOML layout (the `[mim]` table of a run config):
//! ```toml
//! [mim]
//! mode = "classwise"            # off | plain | classwise
//! sources = ["unlabeled", "labeled"]
//! kmax = 3
//! # n_max = 8                   # default: B_u
//! # region_conf = 0.95          # default: the run's conf_thresh
//! bn = "train_no_update"        # | train
//! weight_rec = 1.0
//! weight_fa = 0.1
//! weight_sem = 0.5
//! warmup_epochs = 1.0
//! [mim.mask]
//! patch = 32
//! ratio = 0.5
//! sampling = "exact"            # | bernoulli
//! per_class = false
//! [mim.rec]
//! feature = "fuse"              # | c4
//! loss = "l1"                   # | l2
//! [mim.fa]
//! mode = "pixel_proto"          # off | pixel_proto | proto_proto
//! stopgrad = true
//! binarize = false
//! feature = "fuse"              # | c4
//! visible_from = "masked_pass"  # | clean_pass
//! [mim.sem]
//! mode = "s1"                   # off | s1 | s2
//! masked_only = false
//! forward = "separate"          # | with_strong
//! s2_fp = "complement"          # | replace
//! ```

use serde::{Deserialize, Serialize};

use core_seg::Result;

/// `mim.mode`: which reconstruction branch runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MimMode {
    /// No reconstruction (and no feature aggregation, which lives on the class-wise pass).
    Off,
    /// "Basic MIM" ablation: whole image, one sample per source image.
    Plain,
    /// Class-wise MIM (S4MIM component 1).
    #[default]
    Classwise,
}

/// `mim.mask.sampling`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MaskSampling {
    /// Exactly `round(r·n²)` cells per image (random permutation).
    #[default]
    Exact,
    /// Each cell i.i.d. Bernoulli(r).
    Bernoulli,
}

/// Where class regions come from (`mim.sources`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Weak unlabelled views with confident pseudo-labels.
    Unlabeled,
    /// Labelled images with ground truth.
    Labeled,
}

/// `mim.bn`, `mim.sem.bn`: BN behaviour of the class-wise forward and of the semantic one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MimBn {
    /// Batch statistics; running statistics restored after the forward.
    #[default]
    TrainNoUpdate,
    /// Ordinary train-mode forward (updates running statistics).
    Train,
}

/// Which feature map feeds the reconstruction head or the aggregation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FeatureLevel {
    /// Decoder `fuse` output, stride 4.
    #[default]
    Fuse,
    /// Encoder c4, stride = output stride.
    C4,
}

/// `mim.rec.loss`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RecLoss {
    #[default]
    L1,
    L2,
}

/// `mim.fa.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FaMode {
    Off,
    /// Option B: masked pixels → stop-gradient visible prototype.
    #[default]
    PixelProto,
    /// Option A: masked prototype ↔ visible prototype.
    ProtoProto,
}

/// `mim.fa.visible_from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum VisibleFrom {
    /// μV from the class-wise (masked-input) forward.
    #[default]
    MaskedPass,
    /// μV from the framework's clean forward of the same image.
    CleanPass,
}

/// `mim.sem.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SemMode {
    Off,
    /// Image masking → predict the pseudo-label.
    #[default]
    S1,
    /// Feature masking of c1 and c4 in the decoder.
    S2,
}

/// `mim.sem.forward` (S1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SemForward {
    /// Its own train-mode forward on `x_m`.
    #[default]
    Separate,
    /// `x_m` shares a forward (and BN batch statistics) with the strong views.
    WithStrong,
}

/// `mim.sem.s2_fp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum S2Fp {
    /// Extra decoder call on the weak half, weight λ_sem.
    #[default]
    Complement,
    /// Patch masking replaces UniMatch's Dropout2d FP stream (weight `w_fp·w_out`; needs `semi.fp_on = none`).
    Replace,
}

/// `mim.mask.*`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaskConfig {
    /// P: cell side in pixels.
    pub patch: usize,
    /// r: fraction of masked cells.
    pub ratio: f64,
    pub sampling: MaskSampling,
    /// One mask per (image, class) instead of one per image.
    pub per_class: bool,
}

impl Default for MaskConfig {
    fn default() -> Self {
        Self { patch: 32, ratio: 0.5, sampling: MaskSampling::Exact, per_class: false }
    }
}

/// `mim.rec.*`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RecConfig {
    pub feature: FeatureLevel,
    pub loss: RecLoss,
}

/// `mim.fa.*`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaConfig {
    pub mode: FaMode,
    /// Stop-gradient on μV in option B (option A is symmetric and ignores it).
    pub stopgrad: bool,
    /// Pooled weights > 0.5 → 1, else 0.
    pub binarize: bool,
    pub feature: FeatureLevel,
    pub visible_from: VisibleFrom,
}

impl Default for FaConfig {
    fn default() -> Self {
        Self {
            mode: FaMode::PixelProto,
            stopgrad: true,
            binarize: false,
            feature: FeatureLevel::Fuse,
            visible_from: VisibleFrom::MaskedPass,
        }
    }
}

/// `mim.sem.*`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SemConfig {
    pub mode: SemMode,
    /// Count only masked pixels (numerator and denominator × M').
    pub masked_only: bool,
    pub forward: SemForward,
    pub s2_fp: S2Fp,
    /// BN in the term's forward on masked inputs: `train` (default) lets the masked images update the running
    /// statistics that evaluation uses; `train_no_update` restores them afterwards, as `mim.bn` does.
    pub bn: MimBn,
}

impl Default for SemConfig {
    fn default() -> Self {
        Self {
            mode: SemMode::default(),
            masked_only: false,
            forward: SemForward::default(),
            s2_fp: S2Fp::default(),
            bn: MimBn::Train,
        }
    }
}

/// S4MIM configuration (`[mim]`, `docs/aux-mim.md`). Defaults = the full method (class-wise MIM + option-B
/// aggregation + S1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MimConfig {
    pub mode: MimMode,
    pub mask: MaskConfig,
    pub sources: Vec<Source>,
    /// τ_m for pseudo-label class regions; `None` = the run's `conf_thresh`.
    pub region_conf: Option<f64>,
    /// Kmax: classes per image.
    pub kmax: usize,
    /// N_max: class-wise samples per step; `None` = B_u (B_l without unlabelled data).
    pub n_max: Option<usize>,
    pub bn: MimBn,
    pub rec: RecConfig,
    pub fa: FaConfig,
    pub sem: SemConfig,
    pub weight_rec: f64,
    pub weight_fa: f64,
    pub weight_sem: f64,
    /// Linear ramp of every λ from 0 over this many epochs.
    pub warmup_epochs: f64,
    /// Iterations per epoch, set by the caller from the data (not a TOML key); needed when `warmup_epochs > 0`.
    #[serde(skip)]
    pub iters_per_epoch: Option<usize>,
}

impl Default for MimConfig {
    fn default() -> Self {
        Self {
            mode: MimMode::Classwise,
            mask: MaskConfig::default(),
            sources: vec![Source::Unlabeled, Source::Labeled],
            region_conf: None,
            kmax: 3,
            n_max: None,
            bn: MimBn::TrainNoUpdate,
            rec: RecConfig::default(),
            fa: FaConfig::default(),
            sem: SemConfig::default(),
            weight_rec: 1.0,
            weight_fa: 0.1,
            weight_sem: 0.5,
            warmup_epochs: 1.0,
            iters_per_epoch: None,
        }
    }
}

impl MimConfig {
    /// UniMatch without any MIM component (the ablation's first row).
    pub fn off() -> Self {
        Self {
            mode: MimMode::Off,
            fa: FaConfig { mode: FaMode::Off, ..FaConfig::default() },
            sem: SemConfig { mode: SemMode::Off, ..SemConfig::default() },
            ..Self::default()
        }
    }

    /// Rejects inconsistent settings with a message naming the key.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(core_seg::Error::Config(m));
        if self.mask.patch == 0 {
            return bad("mim.mask.patch must be ≥ 1".into());
        }
        if !(0.0..=1.0).contains(&self.mask.ratio) {
            return bad(format!("mim.mask.ratio must be in [0, 1], got {}", self.mask.ratio));
        }
        if self.fa.mode != FaMode::Off && self.mode == MimMode::Off {
            return bad("mim.fa needs the masked-image pass: set mim.mode = plain | classwise".into());
        }
        for (k, w) in [("weight_rec", self.weight_rec), ("weight_fa", self.weight_fa), ("weight_sem", self.weight_sem)]
        {
            if !w.is_finite() || w < 0.0 {
                return bad(format!("mim.{k} must be finite and ≥ 0, got {w}"));
            }
        }
        if !self.warmup_epochs.is_finite() || self.warmup_epochs < 0.0 {
            return bad(format!("mim.warmup_epochs must be ≥ 0, got {}", self.warmup_epochs));
        }
        let any_on = self.mode != MimMode::Off || self.sem.mode != SemMode::Off;
        if any_on && self.warmup_epochs > 0.0 && self.iters_per_epoch.is_none_or(|n| n == 0) {
            return bad("mim.warmup_epochs > 0 needs MimConfig::iters_per_epoch (set it from the dataset)".into());
        }
        if self.kmax == 0 && self.mode == MimMode::Classwise {
            return bad("mim.kmax must be ≥ 1".into());
        }
        if self.mode != MimMode::Off && self.sources.is_empty() {
            return bad("mim.sources is empty: name unlabeled and/or labeled".into());
        }
        if self.n_max == Some(0) {
            return bad("mim.n_max must be ≥ 1 (leave it out for B_u)".into());
        }
        Ok(())
    }

    /// `λ(t) = λ·min(1, t / (warmup_epochs·iters_per_epoch))`, `t` the 0-based iteration.
    pub fn ramp(&self, iter: usize) -> f64 {
        let w = self.warmup_epochs * self.iters_per_epoch.unwrap_or(0) as f64;
        if w <= 0.0 {
            1.0
        } else {
            (iter as f64 / w).min(1.0)
        }
    }
}
