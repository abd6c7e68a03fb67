//! `GuidedMixConfig`: the `[guidedmix]` table of a run config (`docs/guidedmix.md`). Defaults are the official
//! code ("GM-code"); the papers' readings are switches.
//!
//! ```toml
//! [semi]
//! method = "guidedmix"
//! [guidedmix]
//! pairing = "random"            # random (code) | similar (paper: most similar labelled image)
//! mix_space = "feature"         # feature (code: ASPP features) | image (paper: mixed inputs)
//! mitrans = false               # code: built but off in every released config | true
//! # mitrans_channels = 512      # default: the width of the ASPP concatenation (2560 for R-50/101)
//! mitrans_reduction = 2
//! direction = "code"            # code: argmax(z_u) supervises z_m − λ·z_l | paper: the decoupled mix supervises z_u
//! detach_labeled = false        # code: L_uns trains the main head through z_l | true: z_m − λ·sg(z_l)
//! unsup_loss = "focal"          # focal (code) | ce
//! # labeled_decouple_weight = 0 # default: 0 with direction = code, 1 with direction = paper
//! lambda_factor = 0.5           # λ ~ U(0, min(0.5, lambda_factor))
//! unsup_weight = 10.0
//! focal_gamma = 0.5
//! focal_alpha = 0.5
//! ce_reduction = "all_pixels"   # all_pixels (mmseg) | valid_pixels
//! align_weight = 0.0            # similarity alignment loss (paper's objective unknown)
//! cls_dropout = 0.1             # Dropout2d before the classifiers (mmseg dropout_ratio)
//! ```
//! The network is the run's `[model]`: `head = "deeplabv3"`, `stem = "v1c"`, `output_stride = 8` is the code's;
//! `head = "deeplabv3plus"` mixes UniMatch's DeepLabV3+ ASPP concatenation and reduced c1 instead.

use core_seg::{Error, Result};
use serde::{Deserialize, Serialize};

/// `guidedmix.pairing`: which labelled image each unlabelled image is mixed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Pairing {
    /// A random permutation within the batch: pairs `(k, perm[k])` (code).
    #[default]
    Random,
    /// For every unlabelled `j`, the labelled `argmax_i cos(GAP(c4_u[j]), GAP(c4_l[i]))` (paper reading).
    Similar,
}

/// `guidedmix.mix_space`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MixSpace {
    /// Mix the main head's ASPP features; the mixed head runs only its last stage (code).
    #[default]
    Feature,
    /// Mix the images; an extra backbone pass and the whole mixed head (paper reading).
    Image,
}

/// `guidedmix.direction`: which prediction is the target of the unlabelled loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// `argmax sg(z_u)` supervises the decoupled mixed logits `z_m − λ·z_l` (code).
    #[default]
    Code,
    /// `argmax sg(z_m − λ·z_l)` supervises `z_u` (papers: "pseudo masks from the mixed data").
    Paper,
}

/// `guidedmix.unsup_loss`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UnsupLoss {
    /// Sigmoid focal loss over all pixels and classes (code).
    #[default]
    Focal,
    /// Softmax cross-entropy, mean over all pixels.
    Ce,
}

/// `guidedmix.ce_reduction` of the labelled cross-entropy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CeReduction {
    /// Sum over non-ignored pixels / all pixels (mmseg 0.27 `reduction = mean`).
    #[default]
    AllPixels,
    /// Mean over non-ignored pixels (PyTorch `ignore_index`).
    ValidPixels,
}

/// GuidedMix hyper-parameters; defaults = the official code (`docs/guidedmix.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuidedMixConfig {
    pub pairing: Pairing,
    pub mix_space: MixSpace,
    /// MITrans on the mixed features before the mixed head.
    pub mitrans: bool,
    /// MITrans width `Ch`; `None` = the ASPP concatenation's width (the mixed head's input follows `Ch`).
    pub mitrans_channels: Option<usize>,
    /// Non-local reduction: `Ci = Ch / reduction`.
    pub mitrans_reduction: usize,
    pub direction: Direction,
    /// Decouple with `sg(z_l)`: the unlabelled loss then reaches the main head only through `A_u`, not through
    /// the labelled logits (off in the code, where `−λ·∂L_uns/∂z̃_u` flows into `z_l`).
    pub detach_labeled: bool,
    pub unsup_loss: UnsupLoss,
    /// Weight of `λ·Focal(z_m − (1−λ)·z_u, argmax sg(z_l))` (× `unsup_weight`); `None` = 0 (code) or 1 (paper).
    pub labeled_decouple_weight: Option<f64>,
    /// Upper bound of λ (λ < min(0.5, lambda_factor)).
    pub lambda_factor: f64,
    /// Weight of the unlabelled loss (mmseg `loss_weight` of the focal loss); 0 = the supervised baseline.
    pub unsup_weight: f64,
    pub focal_gamma: f64,
    pub focal_alpha: f64,
    pub ce_reduction: CeReduction,
    /// Weight of `mean_k (1 − cos(g_l[l_k], g_u[u_k]))` on GAP(c4) of the pairs.
    pub align_weight: f64,
    /// Dropout2d probability before the main and mixed classifiers in training.
    pub cls_dropout: f64,
}

impl Default for GuidedMixConfig {
    fn default() -> Self {
        Self {
            pairing: Pairing::Random,
            mix_space: MixSpace::Feature,
            mitrans: false,
            mitrans_channels: None,
            mitrans_reduction: 2,
            direction: Direction::Code,
            detach_labeled: false,
            unsup_loss: UnsupLoss::Focal,
            labeled_decouple_weight: None,
            lambda_factor: 0.5,
            unsup_weight: 10.0,
            focal_gamma: 0.5,
            focal_alpha: 0.5,
            ce_reduction: CeReduction::AllPixels,
            align_weight: 0.0,
            cls_dropout: 0.1,
        }
    }
}

impl GuidedMixConfig {
    /// Rejects inconsistent settings with a message naming the key.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if !(self.lambda_factor >= 1e-3 && self.lambda_factor <= 1.0) {
            return bad(format!("guidedmix.lambda_factor must be in [0.001, 1], got {}", self.lambda_factor));
        }
        let weights = [
            ("unsup_weight", self.unsup_weight),
            ("align_weight", self.align_weight),
            ("labeled_decouple_weight", self.labeled_decouple_weight.unwrap_or(0.0)),
            ("focal_gamma", self.focal_gamma),
        ];
        for (k, w) in weights {
            if !w.is_finite() || w < 0.0 {
                return bad(format!("guidedmix.{k} must be finite and ≥ 0, got {w}"));
            }
        }
        if !(0.0..=1.0).contains(&self.focal_alpha) {
            return bad(format!("guidedmix.focal_alpha must be in [0, 1], got {}", self.focal_alpha));
        }
        if !(0.0..1.0).contains(&self.cls_dropout) {
            return bad(format!("guidedmix.cls_dropout must be in [0, 1), got {}", self.cls_dropout));
        }
        if self.mitrans_reduction == 0 {
            return bad("guidedmix.mitrans_reduction must be ≥ 1".into());
        }
        if let Some(ch) = self.mitrans_channels {
            if ch < self.mitrans_reduction || !ch.is_multiple_of(self.mitrans_reduction) {
                return bad(format!(
                    "guidedmix.mitrans_channels {ch} must be a positive multiple of mitrans_reduction {}",
                    self.mitrans_reduction
                ));
            }
        }
        Ok(())
    }

    /// The labelled decoupling weight in effect (0 in code mode, 1 in paper mode unless set).
    pub fn labeled_decouple_weight(&self) -> f64 {
        self.labeled_decouple_weight.unwrap_or(match self.direction {
            Direction::Code => 0.0,
            Direction::Paper => 1.0,
        })
    }

    /// Whether any loss needs the unlabelled branch (false: the supervised baseline of the same code).
    pub fn unlabeled_active(&self) -> bool {
        self.unsup_weight > 0.0 || self.align_weight > 0.0
    }
}
