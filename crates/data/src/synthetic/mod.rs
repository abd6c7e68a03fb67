//! Procedural synthetic scenes: K classes (background + shape/texture object classes) on cluttered
//! textured backgrounds, deterministic from `(seed, index)`. Defaults follow the prototype's "v4" variant
//! (`docs/data.md`); every difficulty parameter is a config knob.

pub mod render;
pub mod scene;
pub mod write;

use core_seg::rng::SegRng;
use serde::{Deserialize, Serialize};

use crate::dataset::RawSample;
use crate::error::{Error, Result};
use crate::sparse::sparsify;
pub use scene::generate;
pub use write::{write_voc_layout, WriteOptions};

/// Default class count: background + 5 object classes.
pub const DEFAULT_CLASSES: usize = 6;

/// Generator knobs (difficulty and size). Radii and positions scale with `size / 64`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SynthConfig {
    /// Number of classes K including background (2..=16).
    pub num_classes: usize,
    /// Image side in pixels.
    pub size: usize,
    /// Probability that a distractor is a confuser (a shape/texture pair of no class).
    pub p_confuser: f64,
    /// Std of the per-object colour around its class mean.
    pub sigma_col: f64,
    /// Object radius range in pixels at size 64.
    pub radius: [f64; 2],
    /// Maximum number of objects (at least 1).
    pub max_obj: usize,
    /// Maximum number of background distractors.
    pub max_distract: usize,
    /// Std of the low-frequency background noise.
    pub bg_noise: f64,
    /// Upper bound of the per-pixel noise std (drawn from U(0.02, noise_hi)).
    pub noise_hi: f64,
    /// Lighting gradient amplitude: factor 1 ± light.
    pub light: f64,
    /// Probability of a global Gaussian blur.
    pub blur_p: f64,
    /// Blur σ range in pixels at size 64.
    pub blur_sigma: [f64; 2],
    /// Distance of the class mean colours from mid-grey (smaller = more overlap).
    pub class_color_spread: f64,
    /// Fraction of labelled pixels kept per image (1 = dense; else `max(1, round(r·n))` uniformly, the rest 255;
    /// the synthetic shorthand of `[data.sparse]`).
    pub label_fraction: f64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            num_classes: DEFAULT_CLASSES,
            size: 64,
            p_confuser: 0.0,
            sigma_col: 0.08,
            radius: [10.0, 20.0],
            max_obj: 3,
            max_distract: 1,
            bg_noise: 0.10,
            noise_hi: 0.05,
            light: 0.3,
            blur_p: 0.2,
            blur_sigma: [0.3, 0.7],
            class_color_spread: 0.15,
            label_fraction: 1.0,
        }
    }
}

impl SynthConfig {
    /// Rejects values the generator cannot honour.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Config(format!("synthetic: {m}")));
        if !(2..=16).contains(&self.num_classes) {
            return bad("num_classes must be in 2..=16");
        }
        if self.size < 8 || self.size > 4096 {
            return bad("size must be in 8..=4096");
        }
        if self.radius[0] <= 0.0 || self.radius[0] > self.radius[1] {
            return bad("radius must be an increasing positive range");
        }
        if self.max_obj == 0 || self.noise_hi < 0.02 || self.blur_sigma[0] <= 0.0 {
            return bad("max_obj >= 1, noise_hi >= 0.02 and blur_sigma > 0 required");
        }
        if !(0.0..=1.0).contains(&self.label_fraction) || !(0.0..=1.0).contains(&self.p_confuser) {
            return bad("label_fraction and p_confuser must be in [0, 1]");
        }
        Ok(())
    }
}

/// Class names: `background`, then `<shape>-<texture>` per object class.
pub fn class_names(k: usize) -> Vec<String> {
    let mut v = vec!["background".to_string()];
    for c in 1..k {
        let (s, t) = render::class_style(c);
        v.push(format!("{s:?}-{t:?}").to_lowercase());
    }
    v
}

/// An in-memory synthetic dataset: sample `i` is generated on demand from `(seed, i)`.
#[derive(Debug, Clone)]
pub struct SyntheticDataset {
    cfg: SynthConfig,
    seed: u64,
    len: usize,
}

impl SyntheticDataset {
    /// `len` scenes from `seed` (use different seeds for train and val).
    pub fn new(cfg: SynthConfig, seed: u64, len: usize) -> Result<Self> {
        cfg.validate()?;
        Ok(Self { cfg, seed, len })
    }

    /// Number of scenes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The generator config.
    pub fn config(&self) -> &SynthConfig {
        &self.cfg
    }

    /// Scene `i` (image and, in sparse mode, sparsified mask).
    pub fn sample(&self, i: usize) -> Result<RawSample> {
        if i >= self.len {
            return Err(Error::Config(format!("synthetic index {i} out of range (len {})", self.len)));
        }
        let mut rng = SegRng::stream(self.seed, &[i as u64]);
        let (image, mut mask) = generate(&self.cfg, &mut rng);
        if self.cfg.label_fraction < 1.0 {
            let mut srng = SegRng::stream(self.seed, &[i as u64, 0x5BA55E]);
            sparsify(&mut mask.data, self.cfg.label_fraction, &mut srng);
        }
        Ok(RawSample { id: format!("synth_{i:06}"), image, mask: Some(mask) })
    }
}
