//! Shared helpers for the integration tests: a tiny procedural dataset and a CPU-sized model config.
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor};
use core_seg::batch::{BatchSource, LabeledBatch, TrainBatch};
use core_seg::model::{DeepLabConfig, Depth, Stem};
use core_seg::rng::SegRng;
use core_seg::Result;

/// ResNet-18, deep stem, width 8, OS 8, narrow decoder: ~0.2 M parameters.
pub fn tiny_model(nclass: usize) -> DeepLabConfig {
    DeepLabConfig {
        backbone: Depth::Resnet18,
        stem: Stem::Deep,
        base_width: 8,
        output_stride: 8,
        dilations: Some([1, 2, 3]),
        aspp_channels: Some(16),
        reduce_channels: 8,
        fuse_channels: 16,
        nclass,
    }
}

/// A `size × size` image with a bright square (class 1) and a dark-striped disc (class 2) on a noisy
/// mid-grey background (class 0); a one-pixel ring of 255 around the square.
pub fn toy_sample(seed: u64, size: usize) -> (Vec<f32>, Vec<u32>) {
    let mut rng = SegRng::new(seed);
    let mut img = vec![0f32; 3 * size * size];
    let mut mask = vec![0u32; size * size];
    let s = size as i64;
    let (sx, sy, sw) = (
        rng.int_inclusive(0, s / 2),
        rng.int_inclusive(0, s / 2),
        rng.int_inclusive(s / 6, s / 3),
    );
    let (cx, cy, r) = (
        rng.int_inclusive(s / 4, 3 * s / 4),
        rng.int_inclusive(s / 4, 3 * s / 4),
        rng.int_inclusive(s / 8, s / 5),
    );
    for y in 0..s {
        for x in 0..s {
            let p = (y * s + x) as usize;
            let mut v = [0.0f32, 0.0, 0.0];
            let noise = (rng.normal() * 0.3) as f32;
            let in_disc = (x - cx).pow(2) + (y - cy).pow(2) <= r * r;
            let in_sq = x >= sx && x < sx + sw && y >= sy && y < sy + sw;
            if in_disc {
                mask[p] = 2;
                v = if (x + y) % 4 < 2 {
                    [-1.5, 1.0, -1.0]
                } else {
                    [1.0, -1.5, 1.0]
                };
            } else if in_sq {
                mask[p] = 1;
                v = [1.5, 1.5, -0.5];
            }
            let on_ring =
                !in_disc && !in_sq && x >= sx - 1 && x <= sx + sw && y >= sy - 1 && y <= sy + sw;
            if on_ring {
                mask[p] = 255;
            }
            for c in 0..3 {
                img[c * size * size + p] = v[c] + noise;
            }
        }
    }
    (img, mask)
}

/// Stacks samples `ids` into a labelled batch.
pub fn toy_batch(ids: &[u64], size: usize, dtype: DType, dev: &Device) -> Result<LabeledBatch> {
    let (mut imgs, mut masks) = (Vec::new(), Vec::new());
    for &i in ids {
        let (im, m) = toy_sample(i, size);
        imgs.extend(im);
        masks.extend(m);
    }
    let b = ids.len();
    Ok(LabeledBatch {
        image: Tensor::from_vec(imgs, (b, 3, size, size), dev)?.to_dtype(dtype)?,
        mask: Tensor::from_vec(masks, (b, size, size), dev)?,
    })
}

/// Batches drawn by iteration: sample ids `it·B .. it·B + B` modulo `n_train`, shuffled per pass by seed.
pub struct ToySource {
    pub n_train: u64,
    pub batch: usize,
    pub size: usize,
    pub dtype: DType,
}

impl BatchSource for ToySource {
    fn batch(&mut self, iter: usize) -> Result<TrainBatch> {
        let ids: Vec<u64> = (0..self.batch)
            .map(|j| ((iter * self.batch + j) as u64) % self.n_train)
            .collect();
        Ok(TrainBatch {
            labeled: toy_batch(&ids, self.size, self.dtype, &Device::Cpu)?,
            unlabeled: None,
            mix: None,
        })
    }
}
