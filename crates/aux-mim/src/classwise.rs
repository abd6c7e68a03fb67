//! Class-wise MIM inputs and the masked-pixel reconstruction loss (`docs/aux-mim.md`).
//!
//! ```text
//! R_{b,c}   = [ŷ_b = c] ∧ valid_b ∧ [q_b ≥ τ_m]          (labelled: [y_b = c] ∧ valid_b; 255 is in no region)
//! Vis_{b,c} = R_{b,c}·(1 − M_b),  Msk_{b,c} = R_{b,c}·M_b
//! eligible c: Vis ≠ ∅ and Msk ≠ ∅;  ≤ Kmax per image (sampled ∝ |R| without replacement);  ≤ N_max per step
//! X̃_n = x_{b(n)} ⊙ Vis_n      (exactly 0 elsewhere)
//! L_rec = Σ_{n,ch,p} Msk_n(p)·|X̂_n(ch,p) − sg(x_{b(n)}(ch,p))| / (C·Σ_{n,p} Msk_n(p) + 1e-5)
//! ```
//! Plain MIM (ablation): one sample per image, `Vis = (1 − M)·valid`, `Msk = M·valid`.

use candle_core::{DType, Tensor};
use core_seg::ops::IGNORE_INDEX;
use core_seg::rng::SegRng;
use core_seg::Result;

use crate::config::{MaskConfig, RecLoss};
use crate::mask::image_mask;

/// One class-wise (or plain) sample: source row, class (`None` for plain MIM) and its host masks `[H·W]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Row of the stacked source images (`cat` of the sources in config order).
    pub row: usize,
    pub class: Option<u32>,
    pub vis: Vec<u8>,
    pub msk: Vec<u8>,
}

/// Per-pixel region labels of one image: the class where the pixel is valid, labelled (≠ 255) and — for
/// pseudo-labels — confident (`conf ≥ τ_m`); 255 where the pixel belongs to no region.
pub fn region_labels(label: &[u32], valid: &[u8], conf: Option<(&[f32], f64)>) -> Vec<u32> {
    (0..label.len())
        .map(|p| {
            let confident = conf.is_none_or(|(q, tau)| q[p] as f64 >= tau);
            if valid[p] != 0 && label[p] != IGNORE_INDEX && confident {
                label[p]
            } else {
                IGNORE_INDEX
            }
        })
        .collect()
}

/// Draws `k` of `weights.len()` indices without replacement with probability ∝ weight; returns them sorted.
pub fn weighted_without_replacement(rng: &mut SegRng, weights: &[f64], k: usize) -> Vec<usize> {
    let mut left: Vec<usize> = (0..weights.len()).collect();
    let mut picked = Vec::with_capacity(k);
    while picked.len() < k && !left.is_empty() {
        let total: f64 = left.iter().map(|&i| weights[i]).sum();
        let mut u = rng.uniform() * total;
        let mut pos = left.len() - 1;
        for (j, &i) in left.iter().enumerate() {
            if u < weights[i] {
                pos = j;
                break;
            }
            u -= weights[i];
        }
        picked.push(left.remove(pos));
    }
    picked.sort_unstable();
    picked
}

/// Keeps at most `n_max` samples, chosen uniformly without replacement (order preserved). No draw when
/// nothing is dropped.
pub fn cap_samples(rng: &mut SegRng, samples: Vec<Sample>, n_max: usize) -> Vec<Sample> {
    if samples.len() <= n_max {
        return samples;
    }
    let mut idx: Vec<usize> = (0..samples.len()).collect();
    rng.shuffle(&mut idx);
    let mut keep = idx[..n_max].to_vec();
    keep.sort_unstable();
    let mut slots: Vec<Option<Sample>> = samples.into_iter().map(Some).collect();
    keep.into_iter().filter_map(|i| slots[i].take()).collect()
}

/// The masks of one image: the shared one, or (per-class) a fresh draw per class.
pub enum Masks<'a> {
    /// One `[H·W]` mask per source image.
    Shared(&'a [Vec<u8>]),
    /// A fresh mask per (image, class), drawn in class order.
    PerClass(&'a MaskConfig),
}

/// Class-wise samples for images with region labels `regions[b]` (`[H·W]` each, from [`region_labels`]).
/// Classes are visited in ascending order; the caps `kmax` (per image) and `n_max` (per step) apply.
pub fn classwise_samples(
    rng: &mut SegRng,
    regions: &[Vec<u32>],
    hw: (usize, usize),
    masks: Masks,
    kmax: usize,
    n_max: usize,
) -> Result<Vec<Sample>> {
    // Candidates (image, class, mask) are counted in one pass per mask; pixel maps are built only for the
    // samples that survive both caps.
    let mut kept: Vec<(usize, u32, Vec<u8>)> = Vec::new();
    for (b, reg) in regions.iter().enumerate() {
        if reg.len() != hw.0 * hw.1 {
            core_seg::bail_arg!("classwise_samples: region {b} has {} pixels, expected {}", reg.len(), hw.0 * hw.1);
        }
        // (class, |R|, |Vis|, |Msk|, mask) of each present class, ascending.
        let mut eligible: Vec<(u32, usize, Vec<u8>)> = Vec::new();
        match &masks {
            Masks::Shared(ms) => {
                let m = match ms.get(b) {
                    Some(m) if m.len() == reg.len() => m,
                    _ => core_seg::bail_arg!("classwise_samples: no {}-pixel mask for image {b}", reg.len()),
                };
                let mut counts = std::collections::BTreeMap::<u32, [usize; 2]>::new();
                for (&c, &mv) in reg.iter().zip(m.iter()) {
                    if c != IGNORE_INDEX {
                        counts.entry(c).or_default()[usize::from(mv != 0)] += 1;
                    }
                }
                for (c, [vis, msk]) in counts {
                    if vis > 0 && msk > 0 {
                        eligible.push((c, vis + msk, m.clone()));
                    }
                }
            }
            Masks::PerClass(cfg) => {
                let mut classes: Vec<u32> = reg.iter().copied().filter(|&c| c != IGNORE_INDEX).collect();
                classes.sort_unstable();
                classes.dedup();
                for c in classes {
                    let m = image_mask(rng, hw, cfg)?;
                    let mut cnt = [0usize; 2];
                    for (&r, &mv) in reg.iter().zip(m.iter()) {
                        if r == c {
                            cnt[usize::from(mv != 0)] += 1;
                        }
                    }
                    if cnt[0] > 0 && cnt[1] > 0 {
                        eligible.push((c, cnt[0] + cnt[1], m));
                    }
                }
            }
        }
        if eligible.len() > kmax {
            let w: Vec<f64> = eligible.iter().map(|e| e.1 as f64).collect();
            let keep = weighted_without_replacement(rng, &w, kmax);
            let mut slots: Vec<Option<(u32, usize, Vec<u8>)>> = eligible.into_iter().map(Some).collect();
            kept.extend(keep.into_iter().filter_map(|i| slots[i].take()).map(|(c, _, m)| (b, c, m)));
        } else {
            kept.extend(eligible.into_iter().map(|(c, _, m)| (b, c, m)));
        }
    }
    // The per-step cap on lightweight placeholders, then the pixel maps.
    let placeholders: Vec<Sample> =
        (0..kept.len()).map(|i| Sample { row: i, class: None, vis: Vec::new(), msk: Vec::new() }).collect();
    let chosen = cap_samples(rng, placeholders, n_max);
    let mut slots: Vec<Option<(usize, u32, Vec<u8>)>> = kept.into_iter().map(Some).collect();
    let mut out = Vec::with_capacity(chosen.len());
    for ph in chosen {
        let Some((b, c, m)) = slots[ph.row].take() else { continue };
        let reg = &regions[b];
        let vis = reg.iter().zip(&m).map(|(&r, &mv)| u8::from(r == c && mv == 0)).collect();
        let msk = reg.iter().zip(&m).map(|(&r, &mv)| u8::from(r == c && mv != 0)).collect();
        out.push(Sample { row: b, class: Some(c), vis, msk });
    }
    Ok(out)
}

/// Plain-MIM samples: one per image, `Vis = (1 − M)·valid`, `Msk = M·valid`; at most `n_max`.
pub fn plain_samples(rng: &mut SegRng, valid: &[Vec<u8>], masks: &[Vec<u8>], n_max: usize) -> Result<Vec<Sample>> {
    if valid.len() != masks.len() {
        core_seg::bail_arg!("plain_samples: {} valid maps, {} masks", valid.len(), masks.len());
    }
    let mut all = Vec::with_capacity(valid.len());
    for (b, (v, m)) in valid.iter().zip(masks).enumerate() {
        if v.len() != m.len() {
            core_seg::bail_arg!("plain_samples: image {b}: valid {} vs mask {} pixels", v.len(), m.len());
        }
        let vis = v.iter().zip(m).map(|(&v, &m)| u8::from(v != 0 && m == 0)).collect();
        let msk = v.iter().zip(m).map(|(&v, &m)| u8::from(v != 0 && m != 0)).collect();
        all.push(Sample { row: b, class: None, vis, msk });
    }
    Ok(cap_samples(rng, all, n_max))
}

/// Tensors of a sample set: `X̃ [N,C,H,W]` (source pixels on Vis, exactly 0 elsewhere), the detached target
/// `x_{b(n)} [N,C,H,W]`, and `Vis`, `Msk [N,H,W]` in the images' dtype.
pub fn build_inputs(images: &Tensor, samples: &[Sample]) -> Result<(Tensor, Tensor, Tensor, Tensor)> {
    let (b, c, h, w) = images.dims4()?;
    let dev = images.device();
    let n = samples.len();
    if n == 0 {
        core_seg::bail_arg!("build_inputs: no samples");
    }
    let mut rows = Vec::with_capacity(n);
    let (mut vis, mut msk) = (Vec::with_capacity(n * h * w), Vec::with_capacity(n * h * w));
    for s in samples {
        if s.row >= b || s.vis.len() != h * w || s.msk.len() != h * w {
            core_seg::bail_arg!("build_inputs: sample row {} / {} pixels vs images {b}x{h}x{w}", s.row, s.vis.len());
        }
        rows.push(s.row as u32);
        vis.extend_from_slice(&s.vis);
        msk.extend_from_slice(&s.msk);
    }
    let idx = Tensor::from_vec(rows, n, dev)?;
    let target = images.detach().index_select(&idx, 0)?;
    let vis_u8 = Tensor::from_vec(vis, (n, h, w), dev)?;
    let msk_u8 = Tensor::from_vec(msk, (n, h, w), dev)?;
    #[cfg(feature = "cuda")]
    let fused = crate::classwise_cuda::masked_gather(images, &idx, &vis_u8)?;
    #[cfg(not(feature = "cuda"))]
    let fused: Option<Tensor> = None;
    let x_tilde = match fused {
        Some(x) => x,
        None => {
            let cond = vis_u8.unsqueeze(1)?.broadcast_as((n, c, h, w))?.contiguous()?;
            cond.where_cond(&target, &target.zeros_like()?)?
        }
    };
    let dt = images.dtype();
    Ok((x_tilde, target, vis_u8.to_dtype(dt)?, msk_u8.to_dtype(dt)?))
}

/// `L = Σ Msk·ρ(X̂ − sg(x)) / (C·Σ Msk + 1e-5)` with `ρ = |·|` (l1) or `(·)²` (l2); `X̂, x [N,C,H,W]`,
/// `Msk [N,H,W]`. Pixels outside Msk affect neither the value nor the gradient.
pub fn masked_rec_loss(pred: &Tensor, target: &Tensor, msk: &Tensor, kind: RecLoss) -> Result<Tensor> {
    let (n, c, h, w) = pred.dims4()?;
    if target.dims() != pred.dims() || msk.dims() != [n, h, w] {
        core_seg::bail_arg!(
            "masked_rec_loss: pred {:?}, target {:?}, mask {:?}",
            pred.dims(),
            target.dims(),
            msk.dims()
        );
    }
    let m = msk.to_dtype(pred.dtype())?;
    let d = (pred - target.detach())?;
    let rho = match kind {
        RecLoss::L1 => d.abs()?,
        RecLoss::L2 => d.sqr()?,
    };
    let mb = m.unsqueeze(1)?.broadcast_as((n, c, h, w))?;
    // Gate with `where` so that a non-finite prediction outside Msk cannot leak in as 0·∞.
    let gated = mb.to_dtype(DType::U8)?.where_cond(&rho, &rho.zeros_like()?)?;
    let num = gated.sum_all()?;
    let den = ((m.sum_all()? * c as f64)? + 1e-5)?;
    Ok(num.div(&den)?)
}
