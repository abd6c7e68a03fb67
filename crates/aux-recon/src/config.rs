//! `ReconConfig`: every key of the `[recon]` table with its default (`docs/aux-recon.md`).
//!
//! TOML layout (the `[recon]` table of a run config):
//! ```toml
//! [recon]
//! enabled = true
//! input = "c4"                  # c4 | aspp
//! # widths = [256, 128, 64, 32, 32]   # bottleneck, then one per stage; default: this list cut to stages + 1
//! # stages = 4                  # default: log2(output_stride) (4 at OS 16, 3 at OS 8)
//! loss = "mse"                  # mse | l1
//! weight = 1.0
//! warmup_iters = 0
//! views = "auto"                # auto | labeled | labeled+weak
//! on_strong = false
//! valid_from = "valid_map"      # valid_map | mask
//! mode = "plain"                # plain | fgbg | fgonly
//! fg_source_l = "gt"            # gt | soft
//! fg_source_u = "pseudo"        # pseudo | soft
//! # fg_classes = [11, 12, 13, 14, 15, 16, 17, 18]   # default: every class except 0
//! detach = false                # true: L_rec trains R only (the diagnostic's frozen-encoder control)
//! [recon.diagnose]
//! layer = "u2"                  # z0 | u1 … u<stages>
//! quantile = 0.995
//! ```

use serde::{Deserialize, Serialize};

use core_seg::model::DeepLabConfig;
use core_seg::{Error, Result};

/// `recon.input`: the feature map R reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ReconInput {
    /// Encoder c4 (`[B, C4, ⌈S/OS⌉, ⌈S/OS⌉]`).
    #[default]
    C4,
    /// The ASPP projection output (`aspp_channels`, same grid).
    Aspp,
}

/// `recon.loss`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ReconLoss {
    /// `(x̂ − x)²`.
    #[default]
    Mse,
    /// `|x̂ − x|`.
    L1,
}

/// `recon.views`: which clean views are reconstructed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Views {
    /// Every view of the framework's clean gradient forward: `x_l` (supervised), `x_l` and `x_w` (others).
    #[default]
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "labeled")]
    Labeled,
    #[serde(rename = "labeled+weak")]
    LabeledWeak,
}

/// `recon.valid_from`: the map `V` of pixels that count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ValidFrom {
    /// The pipeline's explicit valid map (1 inside the original image).
    #[default]
    ValidMap,
    /// `mask ∉ {254, 255}` (also drops VOC's 255 boundary band); `ignore ≠ 255` on unlabelled views.
    Mask,
}

/// `recon.mode`: plain reconstruction or an object/background-disentangled variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ReconMode {
    /// The auxiliary task without modification.
    #[default]
    Plain,
    /// Two output heads on the split last stage; `x̂ = m⊙x̂_o + (1 − m)⊙x̂_b`.
    Fgbg,
    /// Foreground-weighted loss: `Σ V·m·e / (3·Σ V·m)`.
    Fgonly,
}

/// `recon.fg_source_l`: the foreground probability of labelled images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FgSourceL {
    /// `[y ∈ fg]`; at 255 pixels the soft value `Σ_{c∈fg} P_c`.
    #[default]
    Gt,
    /// The soft value everywhere.
    Soft,
}

/// `recon.fg_source_u`: the foreground probability of unlabelled (weak or strong) views.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FgSourceU {
    /// `[ŷ ∈ fg]` where `conf ≥ τ`, else the soft value.
    #[default]
    Pseudo,
    /// The soft value everywhere.
    Soft,
}

/// `recon.diagnose.*` (`cargo xtask diagnose recon-channels`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiagnoseConfig {
    /// Layer of R whose channels are scored: `z0`, `u1` … `u<stages>`.
    pub layer: String,
    /// Per-channel activation quantile above which a pixel is "on".
    pub quantile: f64,
}

impl Default for DiagnoseConfig {
    fn default() -> Self {
        Self { layer: "u2".into(), quantile: 0.995 }
    }
}

/// The reconstruction branch (`[recon]`, `docs/aux-recon.md`). Defaults: plain MSE reconstruction of the clean
/// views from c4.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconConfig {
    pub enabled: bool,
    pub input: ReconInput,
    /// Bottleneck width, then one width per stage; `None` = [`DEFAULT_WIDTHS`] cut (or padded with 32) to
    /// `stages + 1`.
    pub widths: Option<Vec<usize>>,
    /// Number of ×2 stages; `None` = log2(output_stride).
    pub stages: Option<usize>,
    pub loss: ReconLoss,
    /// λ_rec.
    pub weight: f64,
    /// Linear ramp of λ from 0 over this many iterations (0 = constant from iteration 0).
    pub warmup_iters: usize,
    pub views: Views,
    /// Also reconstruct the CutMixed strong views (target = the strong view itself).
    pub on_strong: bool,
    pub valid_from: ValidFrom,
    pub mode: ReconMode,
    pub fg_source_l: FgSourceL,
    pub fg_source_u: FgSourceU,
    /// Foreground classes; `None` = every class except 0 (VOC, synthetic). Cityscapes: trainIds 11–18.
    pub fg_classes: Option<Vec<u32>>,
    /// Stop the gradient at R's input: L_rec trains R only.
    pub detach: bool,
    pub diagnose: DiagnoseConfig,
}

/// Default `recon.widths` (sized for R-101 at OS 16).
pub const DEFAULT_WIDTHS: [usize; 5] = [256, 128, 64, 32, 32];

impl Default for ReconConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            input: ReconInput::C4,
            widths: None,
            stages: None,
            loss: ReconLoss::Mse,
            weight: 1.0,
            warmup_iters: 0,
            views: Views::Auto,
            on_strong: false,
            valid_from: ValidFrom::ValidMap,
            mode: ReconMode::Plain,
            fg_source_l: FgSourceL::Gt,
            fg_source_u: FgSourceU::Pseudo,
            fg_classes: None,
            detach: false,
            diagnose: DiagnoseConfig::default(),
        }
    }
}

/// The decoder's resolved shape for one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Geometry {
    /// Channels of the input feature map.
    pub cin: usize,
    /// `stages + 1` widths: bottleneck, then one per stage.
    pub widths: Vec<usize>,
    pub mode: ReconMode,
}

impl Geometry {
    pub fn stages(&self) -> usize {
        self.widths.len() - 1
    }
}

fn bad<T>(m: String) -> Result<T> {
    Err(Error::Config(m))
}

impl ReconConfig {
    /// Rejects settings that are wrong whatever the model, with a message naming the key.
    pub fn validate(&self) -> Result<()> {
        if !self.weight.is_finite() || self.weight < 0.0 {
            return bad(format!("recon.weight must be finite and ≥ 0, got {}", self.weight));
        }
        if self.stages == Some(0) {
            return bad("recon.stages must be ≥ 1".into());
        }
        if let Some(w) = &self.widths {
            if w.len() < 2 || w.contains(&0) {
                return bad(format!("recon.widths must hold ≥ 2 positive widths (bottleneck, stages), got {w:?}"));
            }
            if let Some(s) = self.stages.filter(|&s| s + 1 != w.len()) {
                return bad(format!("recon.widths has {} entries but recon.stages = {s} needs {}", w.len(), s + 1));
            }
        }
        if self.fg_classes.as_ref().is_some_and(|f| f.is_empty()) && self.mode != ReconMode::Plain {
            return bad("recon.fg_classes is empty: name the foreground classes (or leave it out)".into());
        }
        let q = self.diagnose.quantile;
        if !(q > 0.0 && q < 1.0) {
            return bad(format!("recon.diagnose.quantile must be in (0, 1), got {q}"));
        }
        Ok(())
    }

    /// Widths and input channels for `model`; checks the keys that depend on it (`recon.widths` for `fgbg`,
    /// `recon.fg_classes` against `nclass`, `recon.diagnose.layer`).
    pub fn geometry(&self, model: &DeepLabConfig) -> Result<Geometry> {
        self.validate()?;
        let cin = match self.input {
            ReconInput::C4 => model.encoder_channels()?[3],
            ReconInput::Aspp => model.aspp_channels.unwrap_or(model.encoder_channels()?[3] / 8),
        };
        let widths = match (&self.widths, self.stages) {
            (Some(w), _) => w.clone(),
            (None, s) => {
                let s = s.unwrap_or(model.output_stride.max(2).ilog2() as usize);
                (0..=s).map(|i| DEFAULT_WIDTHS.get(i).copied().unwrap_or(32)).collect()
            }
        };
        let last = widths[widths.len() - 1];
        if self.mode == ReconMode::Fgbg && (last < 2 || last % 2 != 0) {
            return bad(format!("recon.mode = fgbg splits the last stage in halves: recon.widths ends in {last}"));
        }
        for &c in self.fg_classes.iter().flatten() {
            if c as usize >= model.nclass {
                return bad(format!("recon.fg_classes: class {c} ≥ model.nclass {}", model.nclass));
            }
        }
        let g = Geometry { cin, widths, mode: self.mode };
        layer_index(&self.diagnose.layer, g.stages())?;
        Ok(g)
    }

    /// The foreground classes for `nclass` classes.
    pub fn foreground(&self, nclass: usize) -> Vec<u32> {
        self.fg_classes.clone().unwrap_or_else(|| (1..nclass as u32).collect())
    }

    /// `λ(t) = λ·min(1, t / warmup_iters)` (`λ` when `warmup_iters = 0`), `t` the 0-based iteration.
    pub fn weight_at(&self, iter: usize) -> f64 {
        if self.warmup_iters == 0 {
            self.weight
        } else {
            self.weight * (iter as f64 / self.warmup_iters as f64).min(1.0)
        }
    }
}

/// Index of a named decoder layer in [`crate::ReconDecoder::features`]: `z0` → 0, `u<i>` → i.
pub fn layer_index(name: &str, stages: usize) -> Result<usize> {
    let i = match name {
        "z0" => Some(0),
        _ => name.strip_prefix('u').and_then(|n| n.parse::<usize>().ok()).filter(|&i| (1..=stages).contains(&i)),
    };
    i.ok_or_else(|| Error::Config(format!("recon.diagnose.layer `{name}`: expected z0 or u1 … u{stages}")))
}
