//! Toy data for tests, examples and the tests of downstream crates: a tiny procedural 3-class dataset
//! (square, striped disc, background with a 255 ring), labelled/unlabelled batch sources, a CPU-sized
//! DeepLabV3+ config, and hand-built step tensors for auxiliary terms.

use crate::batch::{BatchSource, LabeledBatch, TrainBatch};
use crate::model::{Backbone, DeepLabConfig, Stem};
use crate::rng::SegRng;
use crate::Result;
use candle_core::{DType, Device, Tensor};

/// ResNet-18, deep stem, width 8, OS 8, narrow decoder: ~0.2 M parameters.
pub fn tiny_model(nclass: usize) -> DeepLabConfig {
    DeepLabConfig {
        backbone: Backbone::Resnet18,
        stem: Stem::Deep,
        base_width: 8,
        width_mult: 1.0,
        output_stride: 8,
        dilations: Some([1, 2, 3]),
        aspp_channels: Some(16),
        reduce_channels: 8,
        fuse_channels: 16,
        nclass,
        head: crate::model::HeadKind::Deeplabv3plus,
    }
}

/// A `size × size` image with a bright square (class 1) and a dark-striped disc (class 2) on a noisy
/// mid-grey background (class 0); a one-pixel ring of 255 around the square.
pub fn toy_sample(seed: u64, size: usize) -> (Vec<f32>, Vec<u32>) {
    let mut rng = SegRng::new(seed);
    let mut img = vec![0f32; 3 * size * size];
    let mut mask = vec![0u32; size * size];
    let s = size as i64;
    let (sx, sy, sw) = (rng.int_inclusive(0, s / 2), rng.int_inclusive(0, s / 2), rng.int_inclusive(s / 6, s / 3));
    let (cx, cy, r) =
        (rng.int_inclusive(s / 4, 3 * s / 4), rng.int_inclusive(s / 4, 3 * s / 4), rng.int_inclusive(s / 8, s / 5));
    for y in 0..s {
        for x in 0..s {
            let p = (y * s + x) as usize;
            let mut v = [0.0f32, 0.0, 0.0];
            let noise = (rng.normal() * 0.3) as f32;
            let in_disc = (x - cx).pow(2) + (y - cy).pow(2) <= r * r;
            let in_sq = x >= sx && x < sx + sw && y >= sy && y < sy + sw;
            if in_disc {
                mask[p] = 2;
                v = if (x + y) % 4 < 2 { [-1.5, 1.0, -1.0] } else { [1.0, -1.5, 1.0] };
            } else if in_sq {
                mask[p] = 1;
                v = [1.5, 1.5, -0.5];
            }
            let on_ring = !in_disc && !in_sq && x >= sx - 1 && x <= sx + sw && y >= sy - 1 && y <= sy + sw;
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
        valid: Tensor::ones((b, size, size), DType::U8, dev)?,
        ids: ids.iter().map(|i| format!("toy{i}")).collect(),
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
        let ids: Vec<u64> = (0..self.batch).map(|j| ((iter * self.batch + j) as u64) % self.n_train).collect();
        Ok(TrainBatch { labeled: toy_batch(&ids, self.size, self.dtype, &Device::Cpu)?, unlabeled: None, mix: None })
    }
}

/// An unlabelled batch built from toy samples: weak = clean image, strong views = image plus noise, a
/// padded right-most column (ignore 255), CutMix boxes over a fixed rectangle chosen by `seed`.
pub fn toy_unlabeled(ids: &[u64], size: usize, seed: u64, dev: &Device) -> Result<crate::batch::UnlabeledBatch> {
    let l = toy_batch(ids, size, DType::F32, dev)?;
    let b = ids.len();
    let mut rng = SegRng::new(seed);
    let noise = |rng: &mut SegRng| -> Result<Tensor> {
        let v: Vec<f32> = (0..b * 3 * size * size).map(|_| (rng.normal() * 0.5) as f32).collect();
        Ok((Tensor::from_vec(v, (b, 3, size, size), dev)? + &l.image)?)
    };
    let mut ign = vec![0u32; b * size * size];
    for r in 0..b * size {
        ign[r * size + size - 1] = 255;
    }
    let boxm = |rng: &mut SegRng| -> Result<Tensor> {
        let (x0, y0) = (rng.below(size as u64 / 2) as usize, rng.below(size as u64 / 2) as usize);
        let mut m = vec![0u8; b * size * size];
        for i in 0..b {
            for y in y0..y0 + size / 3 {
                for x in x0..x0 + size / 3 {
                    m[i * size * size + y * size + x] = 1;
                }
            }
        }
        Ok(Tensor::from_vec(m, (b, size, size), dev)?)
    };
    let ign = Tensor::from_vec(ign, (b, size, size), dev)?;
    Ok(crate::batch::UnlabeledBatch {
        weak: l.image.clone(),
        strong1: noise(&mut rng)?,
        strong2: noise(&mut rng)?,
        ignore: ign.clone(),
        box1: boxm(&mut rng)?,
        box2: boxm(&mut rng)?,
        valid: ign.ne(255u32)?.to_dtype(DType::U8)?,
        ids: l.ids,
    })
}

/// Labelled + unlabelled + mix batches for semi-supervised frameworks.
pub struct ToySemiSource {
    pub batch: usize,
    pub size: usize,
}

impl BatchSource for ToySemiSource {
    fn batch(&mut self, iter: usize) -> Result<TrainBatch> {
        let dev = Device::Cpu;
        let b = self.batch as u64;
        let lab: Vec<u64> = (0..b).map(|j| (iter as u64 * b + j) % 8).collect();
        let unl: Vec<u64> = (0..b).map(|j| 100 + (iter as u64 * b + j) % 32).collect();
        Ok(TrainBatch {
            labeled: toy_batch(&lab, self.size, DType::F32, &dev)?,
            unlabeled: Some(toy_unlabeled(&unl, self.size, 2 * iter as u64, &dev)?),
            mix: Some(toy_unlabeled(&unl, self.size, 2 * iter as u64 + 1, &dev)?),
        })
    }
}

/// A step's tensors built by hand for an auxiliary term: the clean train-mode forward on `cat(x_l, x_w)` (`x_l`
/// alone without unlabelled data) and the given pseudo-labels; no strong pass.
pub fn manual_step(
    model: &crate::model::DeepLabV3Plus,
    labeled: LabeledBatch,
    unlabeled: Option<crate::batch::UnlabeledBatch>,
    pseudo: Option<crate::plugin::Pseudo>,
    tau: f64,
) -> Result<crate::plugin::StepTensors> {
    let n_labeled = labeled.image.dim(0)?;
    let x = match &unlabeled {
        Some(u) => Tensor::cat(&[&labeled.image, &u.weak], 0)?,
        None => labeled.image.clone(),
    };
    let out = model.forward_full(&x, crate::nn::Mode::Train, None)?;
    Ok(crate::plugin::StepTensors { labeled, unlabeled, out, n_labeled, pseudo, conf_thresh: tau, strong: None })
}

/// The first CUDA device, or `None` after printing `SKIP <test>: …` when none can be opened (no `cuda`
/// feature, no driver, no GPU): the CUDA tests pass on machines without a GPU.
pub fn cuda_device_or_skip(test: &str) -> Option<Device> {
    match Device::new_cuda(0) {
        Ok(d) => Some(d),
        Err(e) => {
            let msg = e.to_string();
            eprintln!("SKIP {test}: no CUDA device ({})", msg.lines().next().unwrap_or(""));
            None
        }
    }
}

/// `n` deterministic values uniform in `[lo, hi)` (xorshift64 seeded from `seed`): inputs for gradient checks and
/// kernel parity tests that need no `SegRng` stream.
pub fn uniform_values(n: usize, seed: u64, lo: f64, hi: f64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64 * (hi - lo) + lo
        })
        .collect()
}
