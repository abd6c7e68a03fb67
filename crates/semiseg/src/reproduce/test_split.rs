//! Final numbers on the held-out test split. Every choice is made on validation: the checkpoint is the one with
//! the best validation mIoU (`best.safetensors`, else the last), an MRF row's β is the one chosen on validation;
//! the test images are then read once.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::RunConfig;
use crate::Result;

/// A run's score on the test split (percent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestScore {
    pub miou: f64,
    pub per_class: Vec<f64>,
    /// The checkpoint file that was evaluated (`best.safetensors` or `latest.safetensors`).
    pub checkpoint: String,
}

/// The checkpoint chosen on validation in a run directory: `best`, else `latest`.
pub fn selected_checkpoint(run_dir: &Path) -> std::path::PathBuf {
    let best = run_dir.join("best.safetensors");
    if best.is_file() {
        best
    } else {
        run_dir.join("latest.safetensors")
    }
}

/// Evaluates the run's selected checkpoint on `test`; with `mrf_beta`, through the MRF with that β.
pub fn score(cfg: &RunConfig, run_dir: &Path, test: &data::Dataset, mrf_beta: Option<f64>) -> Result<TestScore> {
    let dev = candle_core::Device::Cpu;
    let ck = selected_checkpoint(run_dir);
    let model = crate::eval::load_model(cfg, &ck, &dev)?;
    let r = match mrf_beta {
        Some(b) => crate::eval::evaluate_mrf_tuned(&model, test, cfg, Some(b), &dev)?.1,
        None => crate::eval::evaluate_model(&model, test, cfg, &dev)?,
    };
    let checkpoint = ck.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(TestScore { miou: r.miou, per_class: r.iou, checkpoint })
}

/// Mean ± std of the test scores of a row's seeds (percent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestStats {
    pub miou_mean: f64,
    pub miou_std: f64,
    pub miou: Vec<f64>,
}

impl TestStats {
    /// `None` unless every run has a test score.
    pub fn of(scores: &[Option<&TestScore>]) -> Option<Self> {
        let miou: Vec<f64> = scores.iter().map(|s| s.map(|s| s.miou)).collect::<Option<_>>()?;
        if miou.is_empty() {
            return None;
        }
        let miou_mean = miou.iter().sum::<f64>() / miou.len() as f64;
        Some(Self { miou_mean, miou_std: super::report::std_dev(&miou), miou })
    }
}
