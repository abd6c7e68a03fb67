//! Cross-entropy losses over dense predictions with an ignore label.

use candle_core::{DType, Tensor};

use super::IGNORE_INDEX;
use crate::Result;

/// Per-pixel cross-entropy `ℓ_p = −log softmax(z_p)[y_p]` for logits `[N, K, H, W]` and targets `[N, H, W]`
/// (u32/u8/i64). Returns the loss map `[N, H, W]` (0 where `y = 255`) and the valid-pixel mask `[N, H, W]`
/// (1 where `y ≠ 255`) in the logits' dtype. Targets outside `0..K` other than 255 are an error.
/// Uses the fused kernel on CPU ([`crate::kernels::softmax_cross_entropy`]).
pub fn cross_entropy_per_pixel(logits: &Tensor, target: &Tensor) -> Result<(Tensor, Tensor)> {
    if crate::kernels::active_for(logits) {
        let t = target.to_dtype(DType::U32)?;
        let loss = crate::kernels::softmax_cross_entropy(logits, &t)?;
        let valid = t.ne(IGNORE_INDEX)?.to_dtype(logits.dtype())?;
        return Ok((loss, valid));
    }
    cross_entropy_per_pixel_reference(logits, target)
}

/// [`cross_entropy_per_pixel`] from Candle primitives (log-softmax, gather, mask).
pub fn cross_entropy_per_pixel_reference(logits: &Tensor, target: &Tensor) -> Result<(Tensor, Tensor)> {
    let (n, k, h, w) = logits.dims4()?;
    let t = target.to_dtype(DType::U32)?;
    if t.dims() != [n, h, w] {
        crate::bail_arg!("cross-entropy: logits {:?} vs target {:?}", logits.dims(), target.dims());
    }
    let valid_u = t.ne(IGNORE_INDEX)?;
    let safe = valid_u.where_cond(&t, &t.zeros_like()?)?;
    let max_label = safe.flatten_all()?.max(0)?.to_scalar::<u32>()?;
    if max_label as usize >= k {
        crate::bail_arg!("cross-entropy: target label {max_label} outside 0..{k} (and not {IGNORE_INDEX})");
    }
    let logp = candle_nn::ops::log_softmax(logits, 1)?;
    let picked = logp.gather(&safe.unsqueeze(1)?.contiguous()?, 1)?.squeeze(1)?;
    let valid = valid_u.to_dtype(logits.dtype())?;
    let loss = (picked.neg()? * &valid)?;
    Ok((loss, valid))
}

/// Mean cross-entropy over valid pixels: `L = Σ_p [y_p ≠ 255]·ℓ_p / Σ_p [y_p ≠ 255]`
/// (PyTorch `F.cross_entropy(ignore_index=255)`). Returns 0 when no pixel is valid.
pub fn cross_entropy_ignore(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    let (loss, valid) = cross_entropy_per_pixel(logits, target)?;
    let count = valid.sum_all()?.maximum(1.0)?;
    Ok(loss.sum_all()?.broadcast_div(&count)?)
}

/// Online hard example mining (UniMatch Cityscapes, from TorchSemiSeg).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OhemConfig {
    /// Probability threshold: pixels whose target probability is at most this are "hard".
    pub thresh: f64,
    /// At least this many pixels are kept.
    pub min_kept: usize,
}

impl Default for OhemConfig {
    fn default() -> Self {
        Self { thresh: 0.7, min_kept: 200_000 }
    }
}

/// OHEM cross-entropy. With `q_p = softmax(z_p)[y_p]` on valid pixels: if `min_kept > #valid` or
/// `min_kept = 0`, plain CE (as TorchSemiSeg's `ProbOhemCrossEntropy2d`);
/// otherwise `t` = the `min_kept`-th smallest `q` (invalid pixels count as `q = 1`),
/// threshold `= max(thresh, t)`, and `L` = mean CE over valid pixels with `q_p ≤ threshold`.
pub fn ohem_cross_entropy(logits: &Tensor, target: &Tensor, cfg: OhemConfig) -> Result<Tensor> {
    let (loss, valid) = cross_entropy_per_pixel(logits, target)?;
    let n_valid = valid.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()? as usize;
    // TorchSemiSeg applies the kept mask only when `min_kept > 0`: `min_kept = 0` is plain CE as well.
    if cfg.min_kept > n_valid || n_valid == 0 || cfg.min_kept == 0 {
        return cross_entropy_ignore(logits, target);
    }
    // q = exp(−ℓ) on valid pixels, 1 elsewhere; selection is not differentiated.
    let q = loss.detach().neg()?.exp()?;
    let q = ((&q * &valid.detach())? + (1.0 - &valid.detach())?)?;
    let mut qs: Vec<f64> = q.flatten_all()?.to_dtype(DType::F64)?.to_vec1()?;
    let (_, kth, _) = qs.select_nth_unstable_by(cfg.min_kept - 1, |a, b| a.total_cmp(b));
    let threshold = cfg.thresh.max(*kth);
    let keep = (q.le(threshold)?.to_dtype(loss.dtype())? * &valid)?;
    let count = keep.sum_all()?.maximum(1.0)?;
    Ok((loss * keep)?.sum_all()?.broadcast_div(&count)?)
}

/// Mean of `loss` weighted by `mask` and divided by `Σ denom_mask` (UniMatch's unsupervised normalisation:
/// masked-out pixels contribute 0 but still count when `denom_mask` includes them).
pub fn masked_mean(loss: &Tensor, mask: &Tensor, denom_mask: &Tensor) -> Result<Tensor> {
    let count = denom_mask.to_dtype(loss.dtype())?.sum_all()?.maximum(1.0)?;
    let num = (loss * mask.to_dtype(loss.dtype())?)?.sum_all()?;
    Ok(num.broadcast_div(&count)?)
}
