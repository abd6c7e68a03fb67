//! The report's qualitative grid: a few validation images, their ground truth and each row's prediction.
//!
//! A row's column comes from its lowest seed that has either a checkpoint here (the grid predicts with it and
//! saves the predictions beside the run's record, in [`PREDICTIONS`]) or such saved predictions, so a table whose
//! runs were copied in without their weights (another machine, a GPU, the repository's records) keeps its grid.

use std::path::{Path, PathBuf};

use crate::config::RunConfig;
use crate::Result;

/// A run's predictions on the grid's images, in its directory beside `run.json`: one 8-bit paletted PNG (the
/// dataset's palette, so it opens as a picture) holding the predicted label maps one below the other, each at its
/// image's size, padded on the right with the ignore label 255.
pub const PREDICTIONS: &str = "grid-predictions.png";

/// A few validation images, their ground truth and each method's prediction, for the report.
pub(super) struct Grid {
    pub images: Vec<data::RgbImage>,
    pub gts: Vec<Vec<u8>>,
    pub preds: Vec<(String, Vec<Vec<u8>>)>,
    pub palette: [[u8; 3]; 256],
    /// Where each column came from, in column order: "ROW seed N" (predicted here) or "ROW seed N (saved)".
    pub sources: Vec<String>,
    /// Rows left out of the grid: none of their runs has a checkpoint or matching saved predictions here.
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
            sources: Vec::new(),
            missing: Vec::new(),
        }
    }

    /// Adds `method`'s column from the first of `runs` (its seeds in order, as `(seed, run directory)`) that has a
    /// checkpoint (predicting with it and saving the predictions there) or saved predictions matching this grid;
    /// records the row as missing when none has.
    pub fn add_row(&mut self, method: &str, cfg: &RunConfig, runs: &[(u64, PathBuf)]) -> Result<()> {
        for (seed, dir) in runs {
            let ckpt = dir.join("latest.safetensors");
            let saved = dir.join(PREDICTIONS);
            if ckpt.is_file() {
                let preds = self.predict(cfg, &ckpt)?;
                data::io::write_paletted_png(&saved, &self.stack(&preds), &self.palette)?;
                self.push(method, format!("{method} seed {seed}"), preds);
                return Ok(());
            }
            if saved.is_file() {
                if let Some(preds) = self.unstack(&data::io::read_mask(&saved)?.mask) {
                    self.push(method, format!("{method} seed {seed} (saved)"), preds);
                    return Ok(());
                }
                tracing::warn!(file = %saved.display(), "saved predictions do not match this grid's images; ignored");
            }
        }
        self.missing.push(method.to_string());
        Ok(())
    }

    fn push(&mut self, method: &str, source: String, preds: Vec<Vec<u8>>) {
        self.preds.push((method.to_string(), preds));
        self.sources.push(source);
    }

    fn predict(&self, cfg: &RunConfig, weights: &Path) -> Result<Vec<Vec<u8>>> {
        use candle_core::{Device, Tensor};
        let dev = Device::Cpu;
        let model = crate::eval::load_model(cfg, weights, &dev)?;
        let mut out = Vec::new();
        for img in &self.images {
            let x = Tensor::from_vec(data::augment::normalize_image(img), (1, 3, img.height, img.width), &dev)?;
            let y = model.forward_t(&x, core_seg::nn::Mode::Eval)?.argmax(1)?.flatten_all()?.to_vec1::<u32>()?;
            out.push(y.into_iter().map(|v| v as u8).collect());
        }
        Ok(out)
    }

    /// `(width, height)` of the stacked picture: the widest image by the images' heights summed.
    fn stacked_size(&self) -> (usize, usize) {
        (self.images.iter().map(|i| i.width).max().unwrap_or(0), self.images.iter().map(|i| i.height).sum())
    }

    /// The label maps one below the other (see [`PREDICTIONS`]).
    pub fn stack(&self, preds: &[Vec<u8>]) -> data::Mask {
        let (width, height) = self.stacked_size();
        let mut data = vec![255u8; width * height];
        let mut top = 0;
        for (img, p) in self.images.iter().zip(preds) {
            for (y, row) in p.chunks_exact(img.width.max(1)).enumerate() {
                data[(top + y) * width..][..img.width].copy_from_slice(row);
            }
            top += img.height;
        }
        data::Mask { width, height, data }
    }

    /// The inverse of [`Grid::stack`]; `None` when the picture's size is not this grid's.
    pub fn unstack(&self, m: &data::Mask) -> Option<Vec<Vec<u8>>> {
        if (m.width, m.height) != self.stacked_size() {
            return None;
        }
        let mut top = 0;
        let mut out = Vec::new();
        for img in &self.images {
            let rows = (top..top + img.height).map(|y| &m.data[y * m.width..][..img.width]);
            out.push(rows.flatten().copied().collect());
            top += img.height;
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(width: usize, height: usize) -> data::RgbImage {
        data::RgbImage { width, height, data: (0..width * height * 3).map(|v| v as u8).collect() }
    }

    /// Images of different sizes: the saved picture stacks each prediction at its own size (padding 255), reads
    /// back to the same label maps, refuses another grid's picture, and the grid draws every image at its size.
    #[test]
    fn predictions_stack_and_unstack_for_images_of_different_sizes() -> Result<()> {
        let mut palette = [[0u8; 3]; 256];
        palette.iter_mut().enumerate().for_each(|(i, c)| *c = [i as u8, 0, 0]);
        let images = vec![image(3, 2), image(2, 3)];
        let grid = Grid {
            gts: vec![vec![1; 6], vec![2; 6]],
            images,
            preds: vec![],
            palette,
            sources: vec![],
            missing: vec![],
        };
        let preds = vec![vec![0, 1, 2, 3, 4, 5], vec![6, 7, 8, 9, 10, 11]];
        let m = grid.stack(&preds);
        assert_eq!((m.width, m.height), (3, 5));
        assert_eq!(&m.data[6..], &[6, 7, 255, 8, 9, 255, 10, 11, 255]);
        assert_eq!(grid.unstack(&m), Some(preds.clone()));
        assert_eq!(grid.unstack(&data::Mask { width: 2, height: 5, data: vec![0; 10] }), None);
        let dir = tempfile::tempdir().map_err(|e| crate::Error::io("tempdir", e))?;
        let path = dir.path().join("grid.png");
        crate::plots::qualitative_grid(&path, &grid.images, &grid.gts, &[("m".into(), preds)], &palette)?;
        let drawn = data::io::read_image(&path)?;
        let cell = 3 * (128 / 3) + 4; // the largest side, enlarged by 42, plus the gap
        assert_eq!((drawn.width, drawn.height), (3 * cell, 20 + 2 * cell));
        // The second image's prediction (2 wide) leaves its cell white right of its width; label 7 at (1, 0).
        let px = |x: usize, y: usize| &drawn.data[3 * (y * drawn.width + x)..][..3];
        let (x0, y0) = (2 * cell, 20 + cell);
        assert_eq!(px(x0 + 42, y0), &[7, 0, 0]);
        assert_eq!(px(x0 + 2 * 42, y0), &[255, 255, 255]);
        Ok(())
    }
}
