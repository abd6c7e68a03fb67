//! GuidedMix's losses, composed from differentiable Candle ops (no hand-written backward).

use candle_core::{DType, Tensor};
use core_seg::ops::cross_entropy_per_pixel;
use core_seg::Result;

use crate::config::CeReduction;

/// Numerically stable softplus, `softplus(x) = ln(1 + eˣ) = ½x + ½|x| + ln(1 + e^{−|x|})`.
///
/// The `|x|` part `h(a) = ½a + ln(1 + e^{−a})` has `h'(0) = 0`, so the kink of `|x|` carries no gradient and
/// the derivative is exactly `σ(x)` everywhere (`½` at 0); no overflow for any finite `x`.
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    let a = x.abs()?;
    let tail = (a.neg()?.exp()? + 1.0)?.log()?;
    Ok(((x + &a)? * 0.5)?.add(&tail)?)
}

/// One-hot `[N, C, h, w]` (in `dtype`) of class indices `t [N, h, w]`.
pub fn one_hot(t: &Tensor, classes: usize, dtype: DType) -> Result<Tensor> {
    let (n, h, w) = t.dims3()?;
    let c = Tensor::arange(0u32, classes as u32, t.device())?.reshape((1, classes, 1, 1))?;
    let t = t.to_dtype(DType::U32)?.unsqueeze(1)?;
    Ok(t.broadcast_eq(&c.broadcast_as((n, classes, h, w))?)?.to_dtype(dtype)?)
}

/// Sigmoid focal loss (mmcv's CUDA `sigmoid_focal_loss`, `reduction = mean`, valid mask all ones): with
/// `p = σ(x)` for logits `x [N, C, h, w]` and hard targets `t [N, h, w]`,
/// ```text
/// ℓ_{n,c,p} = −α·(1 − p)^γ·log p              if c = t_{n,p}
///           = −(1 − α)·p^γ·log(1 − p)          otherwise
/// L = mean over all N·C·h·w entries
/// ```
/// computed as `log p = −softplus(−x)`, `log(1 − p) = −softplus(x)`, `(1 − p)^γ = exp(−γ·softplus(x))`,
/// `p^γ = exp(−γ·softplus(−x))` (no `inf·0` in the backward at saturation).
pub fn sigmoid_focal_loss(logits: &Tensor, target: &Tensor, gamma: f64, alpha: f64) -> Result<Tensor> {
    let (n, c, h, w) = logits.dims4()?;
    if target.dims() != [n, h, w] {
        core_seg::bail_arg!("focal loss: logits {:?} vs target {:?}", logits.dims(), target.dims());
    }
    let y = one_hot(target, c, logits.dtype())?;
    let sp_pos = softplus(logits)?; // −log(1 − p)
    let sp_neg = softplus(&logits.neg()?)?; // −log p
    let pos = ((sp_pos.affine(-gamma, 0.0)?.exp()? * &sp_neg)? * alpha)?;
    let neg = ((sp_neg.affine(-gamma, 0.0)?.exp()? * &sp_pos)? * (1.0 - alpha))?;
    let l = ((&y * pos)? + ((1.0 - &y)? * neg)?)?;
    Ok(l.mean_all()?)
}

/// Softmax cross-entropy over all pixels of `logits [N, C, h, w]` against hard targets `[N, h, w]`
/// (no ignore label): `L = mean_p −log softmax(z_p)[t_p]`.
pub fn ce_all(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    let (l, _) = cross_entropy_per_pixel(logits, target)?;
    Ok(l.mean_all()?)
}

/// Labelled cross-entropy with ignore label 255: `L = Σ_p [y_p ≠ 255]·ℓ_p / Z`, `Z = N·H·W` (`all_pixels`,
/// mmseg 0.27) or `Z = Σ_p [y_p ≠ 255]` (`valid_pixels`).
pub fn labeled_ce(logits: &Tensor, target: &Tensor, reduction: CeReduction) -> Result<Tensor> {
    let (l, valid) = cross_entropy_per_pixel(logits, target)?;
    let den = match reduction {
        CeReduction::AllPixels => l.elem_count() as f64,
        CeReduction::ValidPixels => valid.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?.max(1.0),
    };
    Ok((l.sum_all()? / den)?)
}
