//! The reconstruction loss (`docs/aux-recon.md`) and the PSNR that is logged beside it.

use candle_core::{DType, Tensor};
use core_seg::Result;

use crate::config::ReconLoss;
use crate::decoder::IMAGE_CHANNELS;

/// ImageNet normalisation of the pipeline (`data::augment::MEAN/STD`), for de-normalising to [0, 1].
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// Per-pixel error summed over channels, `e[n,p] = Σ_ch (x̂ − sg(x))²` (MSE) or `Σ_ch |x̂ − sg(x)|` (L1);
/// `[N,3,H,W] → [N,H,W]`. The target never receives a gradient.
pub fn pixel_error(x_hat: &Tensor, target: &Tensor, kind: ReconLoss) -> Result<Tensor> {
    let d = (x_hat - target.detach())?;
    let e = match kind {
        ReconLoss::Mse => d.sqr()?,
        ReconLoss::L1 => d.abs()?,
    };
    Ok(e.sum(1)?)
}

/// Weighted reconstruction loss
/// ```text
/// L_rec = Σ_{n,p} W_n(p)·Σ_ch e(x̂[n,ch,p] − sg(x[n,ch,p]))  /  (3·Σ_{n,p} W_n(p))      (0 when Σ W = 0)
/// ```
/// with `W = V` (the valid map: padded pixels count in neither sum, so they get no gradient) for `plain` and
/// `fgbg`, and `W = V·m` for `fgonly`. `weight` is `[N,H,W]`, any dtype.
pub fn masked_rec_loss(x_hat: &Tensor, target: &Tensor, weight: &Tensor, kind: ReconLoss) -> Result<Tensor> {
    let e = pixel_error(x_hat, target, kind)?;
    let w = weight.to_dtype(e.dtype())?;
    let num = (&e * &w)?.sum_all()?;
    let den = (w.sum_all()? * IMAGE_CHANNELS as f64)?;
    // 0/ε = 0 for an empty weight map; otherwise ε is far below any real denominator.
    Ok(num.broadcast_div(&den.maximum(1e-12)?)?)
}

/// The `fgbg` composite `x̂ = m⊙x̂_o + (1 − m)⊙x̂_b` (`m [N,H,W]` detached, in [0, 1]): where `m = 0` the
/// object image gets no gradient, where `m = 1` the background image gets none.
pub fn compose(m: &Tensor, obj: &Tensor, bg: &Tensor) -> Result<Tensor> {
    let m = m.detach().to_dtype(obj.dtype())?.unsqueeze(1)?;
    let one_minus = m.affine(-1.0, 1.0)?;
    Ok((obj.broadcast_mul(&m)? + bg.broadcast_mul(&one_minus)?)?)
}

/// PSNR (dB) of `x̂` against `x` on valid pixels after de-normalising both to [0, 1] (`x̂` clipped):
/// `10·log10(1 / MSE_01)`, `MSE_01 = Σ V·Σ_ch (x̂₀₁ − x₀₁)² / (3·Σ V)`.
pub fn psnr(x_hat: &Tensor, target: &Tensor, valid: &Tensor) -> Result<f64> {
    let dev = x_hat.device();
    let mean = Tensor::from_vec(IMAGENET_MEAN.to_vec(), (1, 3, 1, 1), dev)?;
    let std = Tensor::from_vec(IMAGENET_STD.to_vec(), (1, 3, 1, 1), dev)?;
    let to01 = |t: &Tensor| -> Result<Tensor> {
        Ok(t.detach().to_dtype(DType::F64)?.broadcast_mul(&std)?.broadcast_add(&mean)?.clamp(0.0, 1.0)?)
    };
    let mse = masked_rec_loss(&to01(x_hat)?, &to01(target)?, valid, ReconLoss::Mse)?.to_scalar::<f64>()?;
    Ok(10.0 * (1.0 / mse.max(1e-12)).log10())
}
