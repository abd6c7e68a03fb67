//! Toy data from `core_seg::testing`, plus the sparse-pixel-label setting of the TV paper.
#![allow(dead_code)]

use candle_core::Tensor;
use core_seg::batch::{BatchSource, TrainBatch};
use core_seg::rng::SegRng;
pub use core_seg::testing::*;
use core_seg::Result;

/// The paper's sparse-pixel setting on toy masks: keeps `max(1, round(r·n))` of the `n` labelled pixels of
/// each image, the rest become 255. The draw is seeded by `seed` and the mask's content, so an image gets the
/// same pixels every time it is seen (drawn once, never re-drawn).
pub fn sparsify_masks(mask: &Tensor, fraction: f64, seed: u64) -> Result<Tensor> {
    let (b, h, w) = mask.dims3()?;
    let mut m: Vec<u32> = mask.flatten_all()?.to_vec1()?;
    for i in 0..b {
        let plane = &mut m[i * h * w..(i + 1) * h * w];
        let mut idx: Vec<usize> = (0..h * w).filter(|&p| plane[p] != 255).collect();
        let keep = ((fraction * idx.len() as f64).round() as usize).max(1).min(idx.len());
        let content = plane.iter().fold(0xcbf29ce484222325u64, |h, &v| (h ^ v as u64).wrapping_mul(0x100000001b3));
        let mut rng = SegRng::new(seed ^ content);
        rng.shuffle(&mut idx);
        for &p in &idx[keep..] {
            plane[p] = 255;
        }
    }
    Ok(Tensor::from_vec(m, (b, h, w), mask.device())?)
}

/// [`ToySource`] / [`ToySemiSource`] with sparse labelled masks (fraction `r` of each image's labelled pixels).
pub struct SparseSource<S> {
    pub inner: S,
    pub fraction: f64,
}

impl<S: BatchSource> BatchSource for SparseSource<S> {
    fn batch(&mut self, iter: usize) -> Result<TrainBatch> {
        let mut b = self.inner.batch(iter)?;
        b.labeled.mask = sparsify_masks(&b.labeled.mask, self.fraction, 0x5BA55E)?;
        Ok(b)
    }
}
