//! UniMatch's augmentation pipeline (`dataset/semi.py`, `dataset/transform.py`).
//!
//! Labelled: resize → pad (mask 255) → crop → hflip → normalise. Unlabelled: the same weak view (mask
//! padding 254 → `ignore`), then two strong views, each from the weak view: colour jitter (p 0.8), grayscale
//! (p 0.2), Gaussian blur (p 0.5) and a CutMix box (p 0.5). Every draw comes from the caller's per-sample RNG.

pub mod color;
pub mod cutmix;
pub mod geom;

use core_seg::rng::SegRng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::io::RgbImage;
pub use cutmix::CutmixBox;
pub use geom::GeomParams;

/// ImageNet mean (RGB).
pub const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet std (RGB).
pub const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Augmentation parameters; keys and defaults as in UniMatch's VOC config (`LiheYoung/UniMatch`,
/// `configs/pascal.yaml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugConfig {
    /// Output crop side S.
    pub crop_size: usize,
    /// Long-side resize factor range.
    pub resize_range: [f64; 2],
    /// Colour jitter strengths: brightness, contrast, saturation, hue.
    pub jitter: [f64; 4],
    /// Probability of applying colour jitter.
    pub jitter_p: f64,
    /// Probability of grayscale.
    pub gray_p: f64,
    /// Probability of Gaussian blur.
    pub blur_p: f64,
    /// Blur σ range.
    pub blur_sigma: [f64; 2],
    /// Probability of a CutMix box.
    pub cutmix_p: f64,
    /// Box area range as a fraction of S².
    pub cutmix_area: [f64; 2],
    /// Box aspect-ratio range.
    pub cutmix_ratio: [f64; 2],
    /// Padding value of unlabelled masks (becomes `ignore`).
    pub pad_label_u: u8,
    /// Ignore label (padding of labelled masks).
    pub ignore_index: u8,
}

impl Default for AugConfig {
    fn default() -> Self {
        Self {
            crop_size: 321,
            resize_range: [0.5, 2.0],
            jitter: [0.5, 0.5, 0.5, 0.25],
            jitter_p: 0.8,
            gray_p: 0.2,
            blur_p: 0.5,
            blur_sigma: [0.1, 2.0],
            cutmix_p: 0.5,
            cutmix_area: [0.02, 0.4],
            cutmix_ratio: [0.3, 1.0 / 0.3],
            pad_label_u: 254,
            ignore_index: 255,
        }
    }
}

impl AugConfig {
    /// Rejects out-of-range values.
    pub fn validate(&self) -> Result<()> {
        let prob = |name: &str, p: f64| {
            if (0.0..=1.0).contains(&p) {
                Ok(())
            } else {
                Err(Error::Config(format!("{name} = {p} is not a probability")))
            }
        };
        let range = |name: &str, r: [f64; 2], min: f64| {
            if r[0] >= min && r[0] <= r[1] && r[1].is_finite() {
                Ok(())
            } else {
                Err(Error::Config(format!("{name} = {r:?} is not a range with lower bound >= {min}")))
            }
        };
        if self.crop_size == 0 {
            return Err(Error::Config("crop_size must be > 0".into()));
        }
        prob("jitter_p", self.jitter_p)?;
        prob("gray_p", self.gray_p)?;
        prob("blur_p", self.blur_p)?;
        prob("cutmix_p", self.cutmix_p)?;
        range("resize_range", self.resize_range, 1e-3)?;
        range("blur_sigma", self.blur_sigma, 1e-3)?;
        range("cutmix_area", self.cutmix_area, 0.0)?;
        range("cutmix_ratio", self.cutmix_ratio, 1e-3)?;
        if self.cutmix_area[1] > 1.0 || self.jitter.iter().any(|j| *j < 0.0) || self.jitter[3] > 0.5 {
            return Err(Error::Config("cutmix_area ≤ 1, jitter ≥ 0 and hue jitter ≤ 0.5 required".into()));
        }
        Ok(())
    }
}

/// One augmented labelled crop.
#[derive(Debug, Clone, PartialEq)]
pub struct LabeledCrop {
    /// Normalised image, CHW.
    pub image: Vec<f32>,
    /// Mask, HW (255 on padding and void).
    pub mask: Vec<u8>,
    /// 1 inside the original image.
    pub valid: Vec<u8>,
    /// The geometry that produced it.
    pub geom: GeomParams,
}

/// One augmented unlabelled crop: weak and two strong views.
#[derive(Debug, Clone, PartialEq)]
pub struct UnlabeledCrop {
    /// Weak view, normalised CHW.
    pub weak: Vec<f32>,
    /// First strong view, normalised CHW.
    pub strong1: Vec<f32>,
    /// Second strong view, normalised CHW.
    pub strong2: Vec<f32>,
    /// 255 on padding, else 0.
    pub ignore: Vec<u8>,
    /// CutMix box of view 1.
    pub box1: CutmixBox,
    /// CutMix box of view 2.
    pub box2: CutmixBox,
    /// 1 inside the original image.
    pub valid: Vec<u8>,
    /// The geometry that produced it.
    pub geom: GeomParams,
}

/// HWC `[0,1]` → ImageNet-normalised CHW.
pub fn normalize_chw(hwc: &[f32], w: usize, h: usize) -> Vec<f32> {
    let n = w * h;
    let mut out = vec![0f32; 3 * n];
    for (i, p) in hwc.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * n + i] = (p[c] - MEAN[c]) / STD[c];
        }
    }
    out
}

/// Whole image (no resize) → normalised CHW, for validation.
pub fn normalize_image(img: &RgbImage) -> Vec<f32> {
    let hwc: Vec<f32> = img.data.iter().map(|&v| v as f32 / 255.0).collect();
    normalize_chw(&hwc, img.width, img.height)
}

/// The labelled pipeline (`train_l`).
pub fn augment_labeled(img: &RgbImage, mask: &crate::io::Mask, cfg: &AugConfig, rng: &mut SegRng) -> LabeledCrop {
    let s = cfg.crop_size;
    let g = geom::draw_geom(img.width, img.height, s, cfg.resize_range, rng);
    let hwc = geom::warp_image(img, &g);
    LabeledCrop {
        image: normalize_chw(&hwc, s, s),
        mask: geom::warp_mask(mask, &g, cfg.ignore_index),
        valid: g.valid_map(),
        geom: g,
    }
}

/// One strong view from the weak HWC crop: jitter, grayscale, blur, then its CutMix box.
pub fn strong_view(weak: &[f32], cfg: &AugConfig, rng: &mut SegRng) -> (Vec<f32>, CutmixBox) {
    let s = cfg.crop_size;
    let mut v = weak.to_vec();
    if rng.uniform() < cfg.jitter_p {
        color::color_jitter(&mut v, cfg.jitter, rng);
    }
    if rng.uniform() < cfg.gray_p {
        color::grayscale(&mut v);
    }
    if rng.uniform() < cfg.blur_p {
        let sigma = rng.uniform_range(cfg.blur_sigma[0], cfg.blur_sigma[1]);
        color::gaussian_blur(&mut v, s, s, sigma);
    }
    let b = cutmix::draw_box(s, cfg.cutmix_p, cfg.cutmix_area, cfg.cutmix_ratio, rng);
    (normalize_chw(&v, s, s), b)
}

/// The unlabelled pipeline (`train_u`). The mask is never read: padding is known from the geometry.
pub fn augment_unlabeled(img: &RgbImage, cfg: &AugConfig, rng: &mut SegRng) -> UnlabeledCrop {
    let s = cfg.crop_size;
    let g = geom::draw_geom(img.width, img.height, s, cfg.resize_range, rng);
    let weak = geom::warp_image(img, &g);
    let valid = g.valid_map();
    let (strong1, box1) = strong_view(&weak, cfg, rng);
    let (strong2, box2) = strong_view(&weak, cfg, rng);
    let ignore = valid.iter().map(|&v| if v == 1 { 0 } else { cfg.ignore_index }).collect();
    UnlabeledCrop { weak: normalize_chw(&weak, s, s), strong1, strong2, ignore, box1, box2, valid, geom: g }
}
