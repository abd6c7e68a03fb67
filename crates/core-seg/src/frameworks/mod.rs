//! The frameworks of the one training loop: the supervised baseline, FixMatch and UniMatch (UniMatch's
//! `supervised.py` / `fixmatch.py` / `unimatch.py`) and a mean-teacher base, with their configuration
//! ([`SemiConfig`]). They implement [`crate::plugin::Framework`]; method crates add terms on top of them
//! ([`crate::plugin::AuxTerm`]) or bring frameworks of their own ([`Method::Other`]).

mod common;
mod fixmatch;
mod mean_teacher;
mod supervised;
mod unimatch;

pub use common::{cutmix_images, mask_ratio, paste_box, paste_pseudo, paste_valid, pseudo_label, unsup_loss};
pub use fixmatch::FixMatch;
pub use mean_teacher::{ema_update, MeanTeacher};
pub use supervised::{Criterion, Supervised};
pub use unimatch::{combine as combine_unimatch, UniMatch};

use serde::{Deserialize, Serialize};

use crate::plugin::Framework;
use crate::{Error, Result};

/// Which framework trains the model (`semi.method`): one of this crate's, or one a method crate registers
/// under its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(from = "String", into = "String")]
pub enum Method {
    Supervised,
    Fixmatch,
    #[default]
    Unimatch,
    MeanTeacher,
    /// A framework built outside this crate (with parameters of its own, installed with
    /// [`crate::train::Trainer::with_framework`]); [`build`] refuses it.
    Other(String),
}

impl Method {
    /// The config name (`supervised`, `fixmatch`, `unimatch`, `mean_teacher`, or the plug-in's).
    pub fn name(&self) -> &str {
        match self {
            Method::Supervised => "supervised",
            Method::Fixmatch => "fixmatch",
            Method::Unimatch => "unimatch",
            Method::MeanTeacher => "mean_teacher",
            Method::Other(name) => name,
        }
    }

    /// The frameworks [`build`] knows.
    pub const BUILTIN: [Method; 4] = [Method::Supervised, Method::Fixmatch, Method::Unimatch, Method::MeanTeacher];
}

impl From<String> for Method {
    fn from(name: String) -> Self {
        Method::BUILTIN.into_iter().find(|m| m.name() == name).unwrap_or(Method::Other(name))
    }
}

impl From<Method> for String {
    fn from(m: Method) -> Self {
        m.name().to_string()
    }
}

/// BN mode of the no-grad prediction on the mix images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MixPredBn {
    /// Running statistics (the official code).
    #[default]
    Eval,
    /// Batch statistics ("not a necessity", issue #68).
    Train,
}

/// Which view the feature perturbation is applied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FpOn {
    /// The weak view (UniMatch).
    #[default]
    Weak,
    /// No FP stream (UniMatch without FP = dual-strong FixMatch).
    None,
}

/// Framework hyper-parameters (defaults = UniMatch's VOC config, `LiheYoung/UniMatch` `configs/pascal.yaml`;
/// `docs/frameworks.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SemiConfig {
    pub method: Method,
    pub criterion: Criterion,
    /// τ: pseudo-labels with confidence below it contribute 0 (but count in the denominator).
    pub conf_thresh: f64,
    pub w_s: f64,
    pub w_fp: f64,
    pub w_out: f64,
    pub fp_dropout: f64,
    pub fp_on: FpOn,
    pub mix_pred_bn: MixPredBn,
    /// EMA decay of the mean teacher.
    pub ema_decay: f64,
}

impl Default for SemiConfig {
    fn default() -> Self {
        Self {
            method: Method::Unimatch,
            criterion: Criterion::Ce,
            conf_thresh: 0.95,
            w_s: 0.25,
            w_fp: 0.5,
            w_out: 0.5,
            fp_dropout: 0.5,
            fp_on: FpOn::Weak,
            mix_pred_bn: MixPredBn::Eval,
            ema_decay: 0.99,
        }
    }
}

/// Builds the framework a config names; [`Method::Other`] is an error (its crate builds it).
pub fn build(cfg: &SemiConfig) -> Result<Box<dyn Framework>> {
    Ok(match &cfg.method {
        Method::Supervised => Box::new(Supervised { criterion: cfg.criterion }),
        Method::Fixmatch => Box::new(FixMatch::new(cfg.clone())),
        Method::Unimatch => Box::new(UniMatch::new(cfg.clone())),
        Method::MeanTeacher => Box::new(MeanTeacher::new(cfg.clone())),
        Method::Other(name) => {
            return Err(Error::Config(format!(
                "semi.method = {name}: not a framework of core-seg (a method crate builds it)"
            )))
        }
    })
}
