//! Sparse pixel labels (`docs/data.md`): the paper setting of the TV loss, where each training image keeps labels
//! at a small fraction `r` of its pixels and every other pixel becomes 255 (ignored).
//!
//! The kept pixels are drawn **once** per image — from a stream seeded by `(seed, hash(image id), r)` — so the same
//! pixels come back every epoch (re-drawing would make supervision dense over time), and pixels that are already 255
//! are never drawn. The sparse map then goes through the normal augmentation; nearest-neighbour resizing keeps the
//! density ≈ r.
//!
//! - `uniform` (default): exactly `max(1, round(r·n))` of the `n` labelled pixels, uniformly without replacement.
//! - `per_class`: `max(1, round(r·n_c))` pixels of each class `c` present (`n_c` its pixel count), so small
//!   objects keep at least one labelled pixel.

use core_seg::rng::SegRng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::palette::IGNORE;

/// How the kept pixels are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SparseMode {
    #[default]
    Uniform,
    PerClass,
}

/// `[data.sparse]`: which fraction of each training image's labelled pixels is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SparseConfig {
    pub mode: SparseMode,
    /// r ∈ (0, 1]; 1 keeps every label (dense).
    pub ratio: f64,
    /// Seed of the draw (independent of the training seed, so every run sees the same sparse labels).
    pub seed: u64,
}

impl Default for SparseConfig {
    fn default() -> Self {
        Self { mode: SparseMode::Uniform, ratio: 1.0, seed: 0x5BA55E }
    }
}

impl SparseConfig {
    /// `ratio` must be in (0, 1].
    pub fn validate(&self) -> Result<()> {
        if !(self.ratio > 0.0 && self.ratio <= 1.0) {
            return Err(Error::Config(format!("data.sparse.ratio must be in (0, 1], got {}", self.ratio)));
        }
        Ok(())
    }

    /// Sparsifies the mask of image `id` in place (a no-op at ratio 1).
    pub fn apply(&self, id: &str, mask: &mut [u8]) {
        if self.ratio >= 1.0 {
            return;
        }
        let mut rng = SegRng::stream(self.seed, &[fnv1a(id.as_bytes()), self.ratio.to_bits()]);
        match self.mode {
            SparseMode::Uniform => sparsify(mask, self.ratio, &mut rng),
            SparseMode::PerClass => sparsify_per_class(mask, self.ratio, &mut rng),
        }
    }
}

/// 64-bit FNV-1a: a stable hash of an image id (unlike `std`'s hasher, fixed across Rust versions).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// `max(1, round(r·n))` for `n > 0`, else 0.
fn kept(fraction: f64, n: usize) -> usize {
    if n == 0 {
        0
    } else {
        ((fraction * n as f64).round() as usize).clamp(1, n)
    }
}

/// Keeps exactly `max(1, round(r·n))` of the `n` labelled (≠ 255) pixels, chosen uniformly; others → 255.
pub fn sparsify(mask: &mut [u8], fraction: f64, rng: &mut SegRng) {
    let mut labelled: Vec<usize> = (0..mask.len()).filter(|&i| mask[i] != IGNORE).collect();
    let keep = kept(fraction, labelled.len());
    rng.shuffle(&mut labelled);
    for &i in &labelled[keep..] {
        mask[i] = IGNORE;
    }
}

/// Keeps `max(1, round(r·n_c))` pixels of each class `c` present; others → 255.
pub fn sparsify_per_class(mask: &mut [u8], fraction: f64, rng: &mut SegRng) {
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); 256];
    for (i, &v) in mask.iter().enumerate() {
        if v != IGNORE {
            by_class[v as usize].push(i);
        }
    }
    for mut pixels in by_class.into_iter().filter(|p| !p.is_empty()) {
        let keep = kept(fraction, pixels.len());
        rng.shuffle(&mut pixels);
        for &i in &pixels[keep..] {
            mask[i] = IGNORE;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask() -> Vec<u8> {
        // 1000 px: 900 class 0, 95 class 1, 5 class 2; then 100 px already ignored.
        let mut m = vec![0u8; 900];
        m.extend([1u8; 95]);
        m.extend([2u8; 5]);
        m.extend([IGNORE; 100]);
        m
    }

    fn count(m: &[u8], v: u8) -> usize {
        m.iter().filter(|&&x| x == v).count()
    }

    #[test]
    fn uniform_keeps_round_r_n_and_never_draws_ignored_pixels() {
        let cfg = SparseConfig { ratio: 0.01, ..Default::default() };
        let mut m = mask();
        cfg.apply("2007_000032", &mut m);
        assert_eq!(m.len() - count(&m, IGNORE), 10); // round(0.01 · 1000)
        assert!(m[1000..].iter().all(|&v| v == IGNORE));
        let mut again = mask();
        cfg.apply("2007_000032", &mut again);
        assert_eq!(m, again, "the same image gets the same pixels every epoch");
        let mut other = mask();
        cfg.apply("2007_000033", &mut other);
        assert_ne!(m, other, "another image gets another draw");
    }

    #[test]
    fn at_least_one_pixel_and_per_class_keeps_every_class() {
        let mut m = mask();
        SparseConfig { ratio: 1e-6, ..Default::default() }.apply("a", &mut m);
        assert_eq!(m.len() - count(&m, IGNORE), 1);
        let mut m = mask();
        SparseConfig { ratio: 0.01, mode: SparseMode::PerClass, ..Default::default() }.apply("a", &mut m);
        assert_eq!((count(&m, 0), count(&m, 1), count(&m, 2)), (9, 1, 1));
        let mut all_ignored = vec![IGNORE; 16];
        SparseConfig { ratio: 0.5, ..Default::default() }.apply("a", &mut all_ignored);
        assert!(all_ignored.iter().all(|&v| v == IGNORE));
    }

    #[test]
    fn ratio_is_validated() {
        for bad in [0.0, -0.1, 1.5, f64::NAN] {
            let e = SparseConfig { ratio: bad, ..Default::default() }.validate().err().map(|e| e.to_string());
            assert!(e.as_deref().is_some_and(|e| e.contains("data.sparse.ratio")), "{bad}: {e:?}");
        }
        assert!(SparseConfig::default().validate().is_ok());
    }
}
