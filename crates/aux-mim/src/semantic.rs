//! MIM in semantic space (`docs/aux-mim.md`): the prediction target is the pseudo-label, not pixels.
//!
//! ```text
//! S1 (image masking):   x_m = x_w ⊙ (1 − M');   P_m = model(x_m)
//!     L_sem = Σ_p CE_px(P_m, ŷ_w)·[q_w ≥ τ]·[ign ≠ 255] / Σ_p [ign ≠ 255]            (UniMatch normalisation)
//!     masked_only: numerator and denominator × M' (0 without a masked valid pixel)
//! S2 (feature masking): decode(c1 ⊙ (1 − M'_4), c4 ⊙ (1 − M'_16)), upsample, same loss as L_fp
//!     M'_s[i, j] = M'[i·s, j·s]  (top-left pixel of each stride-s cell)
//! ```

use candle_core::{DType, Tensor};
use core_seg::frameworks::unsup_loss;
use core_seg::model::DeepLabV3Plus;
use core_seg::nn::Mode;
use core_seg::ops::{cross_entropy_per_pixel, masked_mean, resize_bilinear, IGNORE_INDEX};
use core_seg::Result;

use crate::mask::{sample_at_stride, stride_of};

/// `x ⊙ (1 − M)` for images `[B,C,H,W]` and a host mask `[B·H·W]` (1 = masked → exactly 0).
pub fn mask_images(x: &Tensor, m: &[u8]) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    if m.len() != b * h * w {
        core_seg::bail_arg!("mask_images: mask of {} pixels for images {:?}", m.len(), x.dims());
    }
    let keep: Vec<u8> = m.iter().map(|&v| u8::from(v == 0)).collect();
    let keep = Tensor::from_vec(keep, (b, 1, h, w), x.device())?.broadcast_as((b, c, h, w))?.contiguous()?;
    Ok(keep.where_cond(x, &x.zeros_like()?)?)
}

/// `L_sem` of S1 (and of S2, which uses the same supervision): UniMatch's normalised CE of `logits [B,K,H,W]`
/// against `(label, conf, ignore)`; with `masked_only = Some(M' [B·H·W])` only masked pixels count.
pub fn sem_loss(
    logits: &Tensor,
    label: &Tensor,
    conf: &Tensor,
    ignore: &Tensor,
    tau: f64,
    masked_only: Option<&[u8]>,
) -> Result<Tensor> {
    let Some(m) = masked_only else {
        return unsup_loss(logits, label, conf, ignore, tau);
    };
    let (b, _, h, w) = logits.dims4()?;
    if m.len() != b * h * w {
        core_seg::bail_arg!("sem_loss: mask of {} pixels for logits {:?}", m.len(), logits.dims());
    }
    let (ce, _) = cross_entropy_per_pixel(logits, label)?;
    let dt = ce.dtype();
    let mt = Tensor::from_vec(m.to_vec(), (b, h, w), logits.device())?.to_dtype(dt)?;
    let not_pad = (ignore.to_dtype(DType::U32)?.ne(IGNORE_INDEX)?.to_dtype(dt)? * &mt)?;
    let confident = conf.ge(tau)?.to_dtype(dt)?;
    masked_mean(&ce, &(confident * &not_pad)?, &not_pad)
}

/// `f ⊙ (1 − M_s)` with `M_s` the image mask sampled at the top-left pixel of each feature cell.
pub fn mask_features(f: &Tensor, m: &[u8], (h, w): (usize, usize)) -> Result<Tensor> {
    let (b, c, fh, fw) = f.dims4()?;
    if m.len() != b * h * w {
        core_seg::bail_arg!("mask_features: mask of {} pixels for {b} images of {h}x{w}", m.len());
    }
    let s = stride_of(h, fh);
    if stride_of(w, fw) != s {
        core_seg::bail_arg!("mask_features: anisotropic stride for {h}x{w} → {fh}x{fw}");
    }
    let ms = sample_at_stride(m, b, (h, w), (fh, fw), s);
    let keep: Vec<u8> = ms.iter().map(|&v| u8::from(v == 0)).collect();
    let keep = Tensor::from_vec(keep, (b, 1, fh, fw), f.device())?.broadcast_as((b, c, fh, fw))?.contiguous()?;
    Ok(keep.where_cond(f, &f.zeros_like()?)?)
}

/// S2: logits `[B,K,H,W]` of the decoder on `c1 ⊙ (1 − M'_4)`, `c4 ⊙ (1 − M'_16)` (train-mode BN), upsampled
/// like the model's own output (bilinear, align_corners = true).
pub fn s2_masked_logits(
    model: &DeepLabV3Plus,
    c1: &Tensor,
    c4: &Tensor,
    m: &[u8],
    hw: (usize, usize),
    mode: Mode,
) -> Result<Tensor> {
    let (_, lo) = model.decode(&mask_features(c1, m, hw)?, &mask_features(c4, m, hw)?, mode)?;
    resize_bilinear(&lo, hw, true)
}
