//! Inference for evaluation: whole image or sliding window (softmax summed), optional horizontal flip.

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::metrics::ConfusionMatrix;
use crate::Result;

/// How a full-resolution validation image is predicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EvalMode {
    /// One forward of the whole image (UniMatch `original`).
    #[default]
    Original,
    /// Windows of `window` px, stride `⌊window·stride_ratio⌋`, starting at 0 and truncated at the border;
    /// softmax summed per pixel (UniMatch `sliding_window`).
    SlidingWindow,
}

/// Evaluation settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    pub mode: EvalMode,
    /// Sliding-window size (UniMatch: the crop size).
    pub window: usize,
    /// Stride as a fraction of the window (UniMatch: 2/3).
    pub stride_ratio: f64,
    /// Average with the prediction of the horizontally flipped image.
    pub flip: bool,
    /// Leave classes absent from both prediction and GT out of the mean.
    pub miou_skip_empty: bool,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self { mode: EvalMode::Original, window: 801, stride_ratio: 2.0 / 3.0, flip: false, miou_skip_empty: false }
    }
}

/// Window origins along one axis: `0, s, 2s, …` while `< len` (UniMatch's loop).
pub fn window_starts(len: usize, stride: usize) -> Vec<usize> {
    (0..len).step_by(stride.max(1)).collect()
}

fn hflip(x: &Tensor) -> Result<Tensor> {
    let w = x.dim(3)?;
    let idx = Tensor::from_vec((0..w as u32).rev().collect::<Vec<_>>(), w, x.device())?;
    Ok(x.index_select(&idx, 3)?)
}

/// Per-pixel class probabilities `[N, K, H, W]` for `image [N, 3, H, W]` using `logits_fn`.
pub fn predict_probs(
    image: &Tensor,
    cfg: &EvalConfig,
    logits_fn: &dyn Fn(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let once = |x: &Tensor| -> Result<Tensor> {
        match cfg.mode {
            EvalMode::Original => Ok(candle_nn::ops::softmax(&logits_fn(x)?, 1)?),
            EvalMode::SlidingWindow => sliding_window(x, cfg.window, cfg.stride_ratio, logits_fn),
        }
    };
    let p = once(image)?;
    if cfg.flip {
        let pf = hflip(&once(&hflip(image)?)?)?;
        Ok(((p + pf)? * 0.5)?)
    } else {
        Ok(p)
    }
}

fn sliding_window(
    x: &Tensor,
    window: usize,
    ratio: f64,
    logits_fn: &dyn Fn(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let stride = ((window as f64) * ratio) as usize;
    if window == 0 || stride == 0 {
        crate::bail_arg!("sliding window {window} with stride ratio {ratio} gives stride 0");
    }
    let mut acc: Option<Tensor> = None;
    for &r in &window_starts(h, stride) {
        for &c in &window_starts(w, stride) {
            let (wh, ww) = ((r + window).min(h) - r, (c + window).min(w) - c);
            let crop = x.narrow(2, r, wh)?.narrow(3, c, ww)?.contiguous()?;
            let p = candle_nn::ops::softmax(&logits_fn(&crop)?, 1)?;
            let base = match acc.take() {
                Some(a) => a,
                None => Tensor::zeros((x.dim(0)?, p.dim(1)?, h, w), p.dtype(), p.device())?,
            };
            acc = Some(base.slice_assign(
                &[0..x.dim(0)?, 0..p.dim(1)?, r..r + wh, c..c + ww],
                &(base.narrow(2, r, wh)?.narrow(3, c, ww)? + p)?,
            )?);
        }
    }
    acc.ok_or_else(|| crate::Error::InvalidArgument("sliding window on an empty image".into()))
}

/// Argmax labels `[N, H, W]` (u32).
pub fn predict_labels(
    image: &Tensor,
    cfg: &EvalConfig,
    logits_fn: &dyn Fn(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    Ok(predict_probs(image, cfg, logits_fn)?.argmax(1)?)
}

/// Result of an evaluation pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// mIoU in percent.
    pub miou: f64,
    /// Per-class IoU in percent.
    pub iou: Vec<f64>,
    pub pixel_accuracy: f64,
    pub confusion: ConfusionMatrix,
}

/// Accumulates a dataset-level confusion matrix over `(image [1,3,H,W], mask [1,H,W] or [H,W] u32)` samples.
pub fn evaluate<I>(
    samples: I,
    num_classes: usize,
    cfg: &EvalConfig,
    logits_fn: &dyn Fn(&Tensor) -> Result<Tensor>,
) -> Result<EvalReport>
where
    I: IntoIterator<Item = Result<(Tensor, Tensor)>>,
{
    let mut cm = ConfusionMatrix::new(num_classes);
    for sample in samples {
        let (image, mask) = sample?;
        let pred = predict_labels(&image, cfg, logits_fn)?;
        let p: Vec<u32> = pred.flatten_all()?.to_vec1()?;
        let g: Vec<u32> = mask.to_dtype(DType::U32)?.flatten_all()?.to_vec1()?;
        cm.update(&p, &g)?;
    }
    Ok(EvalReport {
        miou: 100.0 * cm.miou(cfg.miou_skip_empty),
        iou: cm.iou().iter().map(|v| 100.0 * v).collect(),
        pixel_accuracy: 100.0 * cm.pixel_accuracy(),
        confusion: cm,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn sliding_window_starts_match_spec_for_cityscapes() {
        let stride = (801.0 * (2.0 / 3.0)) as usize;
        assert_eq!(stride, 534);
        assert_eq!(window_starts(1024, stride), vec![0, 534]);
        assert_eq!(window_starts(2048, stride), vec![0, 534, 1068, 1602]);
    }

    /// A per-pixel model (logits depend only on the pixel) gives the same argmax under sliding window,
    /// whole image and flip; every pixel is covered.
    #[test]
    fn sliding_window_covers_every_pixel_and_matches_whole_image() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (1, 3, 37, 53), &dev)?;
        let model = |t: &Tensor| -> Result<Tensor> {
            let a = t.narrow(1, 0, 1)?;
            let b = (t.narrow(1, 1, 1)? * 2.0)?;
            Ok(Tensor::cat(&[a, b, t.narrow(1, 2, 1)?.neg()?], 1)?)
        };
        let whole = predict_labels(&x, &EvalConfig::default(), &model)?;
        let sw = EvalConfig { mode: EvalMode::SlidingWindow, window: 16, ..Default::default() };
        let slid = predict_labels(&x, &sw, &model)?;
        assert_eq!(whole.to_vec3::<u32>()?, slid.to_vec3::<u32>()?);
        let probs = predict_probs(&x, &sw, &model)?;
        let min_mass = probs.sum(1)?.flatten_all()?.min(0)?.to_scalar::<f32>()?;
        assert!(min_mass >= 0.999, "uncovered pixel: {min_mass}");
        let flip = EvalConfig { flip: true, ..Default::default() };
        assert_eq!(whole.to_vec3::<u32>()?, predict_labels(&x, &flip, &model)?.to_vec3::<u32>()?);
        Ok(())
    }
}
