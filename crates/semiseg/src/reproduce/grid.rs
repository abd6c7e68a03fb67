//! The report's qualitative grid: a few validation images, their ground truth and each row's prediction.

use std::path::{Path, PathBuf};

use crate::config::RunConfig;
use crate::Result;

/// A few validation images, their ground truth and each method's prediction (from the first checkpoint found
/// among its seeds), for the report.
pub(super) struct Grid {
    pub images: Vec<data::RgbImage>,
    pub gts: Vec<Vec<u8>>,
    pub preds: Vec<(String, Vec<Vec<u8>>)>,
    pub palette: [[u8; 3]; 256],
    /// Rows left out of the grid: none of their runs has a checkpoint here (runs trained on another machine and
    /// copied without their weights).
    pub missing: Vec<String>,
}

impl Grid {
    pub fn new(val: &data::Dataset, n: usize) -> Self {
        // Spread over the validation list (consecutive ids of a video set are near-identical frames).
        let k = n.min(val.len());
        let samples: Vec<_> = (0..k).filter_map(|i| val.sample(i * val.len() / k).ok()).collect();
        Self {
            gts: samples.iter().map(|s| s.mask.as_ref().map(|m| m.data.clone()).unwrap_or_default()).collect(),
            images: samples.into_iter().map(|s| s.image).collect(),
            preds: Vec::new(),
            palette: val.palette(),
            missing: Vec::new(),
        }
    }

    /// Predicts with the first of `checkpoints` (the row's seeds in order) that exists; records the row as
    /// missing when none does.
    pub fn predict_first(&mut self, method: &str, cfg: &RunConfig, checkpoints: &[PathBuf]) -> Result<()> {
        match checkpoints.iter().find(|p| p.is_file()) {
            Some(p) => self.predict(method, cfg, p),
            None => {
                self.missing.push(method.to_string());
                Ok(())
            }
        }
    }

    fn predict(&mut self, method: &str, cfg: &RunConfig, weights: &Path) -> Result<()> {
        use candle_core::{Device, Tensor};
        let dev = Device::Cpu;
        let model = crate::eval::load_model(cfg, weights, &dev)?;
        let mut out = Vec::new();
        for img in &self.images {
            let x = Tensor::from_vec(data::augment::normalize_image(img), (1, 3, img.height, img.width), &dev)?;
            let y = model.forward_t(&x, core_seg::nn::Mode::Eval)?.argmax(1)?.flatten_all()?.to_vec1::<u32>()?;
            out.push(y.into_iter().map(|v| v as u8).collect());
        }
        self.preds.push((method.to_string(), out));
        Ok(())
    }
}
