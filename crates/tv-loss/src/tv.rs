//! The reference composite: softmax → forward differences → (Charbonnier) norm → weighted sum / Z, built from
//! differentiable Candle primitives so that autograd gives the gradient (checked against f64 finite differences
//! in `tests/gradcheck.rs`).

use candle_core::{DType, Tensor};
use core_seg::{bail_arg, Result};

use crate::config::{TvConfig, TvKernel, TvNormalize, TvVariant};
use crate::contrast::PairWeights;
use crate::curvilinear::curvilinear_raw;
use crate::fused::tv_loss_fused;

/// `TV(softmax_K(z))` for logits `z [N,K,H,W]` (see [`tv_of_probs`]); the softmax is
/// `candle_nn::ops::softmax(z, 1)`, so gradients flow through it to the logits.
///
/// `tv.kernel` picks the implementation: the fused CPU kernel ([`crate::fused`]) or this composite.
pub fn tv_loss(logits: &Tensor, valid: Option<&Tensor>, cfg: &TvConfig) -> Result<Tensor> {
    tv_loss_weighted(logits, valid, None, cfg)
}

/// [`tv_loss`] with every forward difference also weighted by `pairs` (`tv.contrast`,
/// [`crate::contrast::contrast_weights`]); weighted TV always takes the composite path.
pub fn tv_loss_weighted(
    logits: &Tensor,
    valid: Option<&Tensor>,
    pairs: Option<&PairWeights>,
    cfg: &TvConfig,
) -> Result<Tensor> {
    if pairs.is_some() {
        if cfg.kernel == TvKernel::Fused {
            bail_arg!("tv.kernel = fused does not take contrast weights (tv.contrast): use auto or composite");
        }
        let p = candle_nn::ops::softmax(logits, 1)?;
        return tv_of_probs_weighted(&p, valid, pairs, cfg);
    }
    let fused_ok = cfg.variant == TvVariant::A && !cfg.curvilinear.enabled && crate::fused::fused_supported(logits);
    match cfg.kernel {
        TvKernel::Fused => return tv_loss_fused(logits, valid, cfg),
        TvKernel::Auto if fused_ok => return tv_loss_fused(logits, valid, cfg),
        TvKernel::Auto | TvKernel::Composite => {}
    }
    let p = candle_nn::ops::softmax(logits, 1)?;
    tv_of_probs(&p, valid, cfg)
}

/// Total variation of a probability image `P [N,K,H,W]` with valid map `V [N,H,W]` (`None` = all valid):
///
/// ```text
/// A:  TV = Σ_{n,k,i,j} vx·ρ_ε(DxP) + vy·ρ_ε(DyP)                               / (K·ΣV)
/// B:  TV = Σ_{n,k,i,j} sqrt(vx·(DxP)² + vy·(DyP)² + ε) − √ε                    / (K·ΣV)
/// C:  TV = Σ_{n,i,j}   sqrt(Σ_k vx·(DxP)² + vy·(DyP)² + ε) − √ε                / ΣV
/// ```
/// with `ρ_ε(d) = sqrt(d² + ε) − √ε` (`|d|` for ε = 0, sub-gradient sign(0) = 0), forward differences without
/// wrap-around, `vx = V_{i,j}·V_{i,j+1}`, `vy = V_{i,j}·V_{i+1,j}`, and `Z = 1` under `normalize = sum`.
/// With the curvilinear switch, the TV of the foreground class (and for K = 2 of its complement) is replaced
/// by the along-structure penalty of [`crate::curvilinear`].
pub fn tv_of_probs(p: &Tensor, valid: Option<&Tensor>, cfg: &TvConfig) -> Result<Tensor> {
    tv_of_probs_weighted(p, valid, None, cfg)
}

/// [`tv_of_probs`] with the pair weights `vx`, `vy` multiplied by `pairs` (contrast-sensitive TV).
pub fn tv_of_probs_weighted(
    p: &Tensor,
    valid: Option<&Tensor>,
    pairs: Option<&PairWeights>,
    cfg: &TvConfig,
) -> Result<Tensor> {
    cfg.validate()?;
    let (n, k, h, w) = p.dims4()?;
    if n == 0 || k == 0 || h == 0 || w == 0 {
        bail_arg!("tv: empty probability image {:?}", p.dims());
    }
    if let Some(pw) = pairs {
        let want = |dim: usize| {
            let mut s = vec![n, 1, h, w];
            s[dim] -= 1;
            s
        };
        if pw.x.dims() != want(3).as_slice() || pw.y.dims() != want(2).as_slice() {
            bail_arg!("tv: pair weights {:?}/{:?} do not match probabilities {:?}", pw.x.dims(), pw.y.dims(), p.dims());
        }
        if cfg.curvilinear.enabled {
            bail_arg!("tv: contrast weights and the curvilinear variant cannot be combined");
        }
    }
    let v = valid_map(valid, p)?;
    let wt = Weighted { v: &v, pairs };
    let eps = cfg.eps();
    let raw = match cfg.variant {
        TvVariant::C => vectorial_raw(p, &wt, eps)?,
        TvVariant::A | TvVariant::B => {
            let per_class = per_class_raw(p, &wt, cfg.variant, eps)?;
            if cfg.curvilinear.enabled {
                let fg = cfg.curvilinear.fg_class;
                if fg >= k {
                    bail_arg!("tv.curvilinear.fg_class = {fg} but the prediction has {k} classes");
                }
                // With K = 2 the background channel is 1 − p: its TV and its along-structure penalty equal the
                // foreground's, so both channels are replaced.
                let replaced: Vec<bool> = (0..k).map(|c| c == fg || k == 2).collect();
                let keep: Vec<f64> = replaced.iter().map(|&r| if r { 0.0 } else { 1.0 }).collect();
                let keep = Tensor::from_vec(keep, k, p.device())?.to_dtype(p.dtype())?;
                let n_rep = replaced.iter().filter(|&&r| r).count() as f64;
                let curv = curvilinear_raw(&p.narrow(1, fg, 1)?, &v, cfg.curvilinear.rho, eps)?;
                ((per_class * keep)?.sum_all()? + (curv * n_rep)?)?
            } else {
                per_class.sum_all()?
            }
        }
    };
    let z = match cfg.normalize {
        TvNormalize::Sum => 1.0,
        TvNormalize::Mean => {
            let count = v.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
            let per = if cfg.variant == TvVariant::C { 1.0 } else { k as f64 };
            (per * count).max(1.0)
        }
    };
    Ok(raw.affine(1.0 / z, 0.0)?)
}

/// The valid map as `[N,1,H,W]` in `p`'s dtype.
pub(crate) fn valid_map(valid: Option<&Tensor>, p: &Tensor) -> Result<Tensor> {
    let (n, _, h, w) = p.dims4()?;
    match valid {
        None => Ok(Tensor::ones((n, 1, h, w), p.dtype(), p.device())?),
        Some(v) => {
            if v.dims() != [n, h, w] {
                bail_arg!("tv: valid map {:?} does not match probabilities {:?}", v.dims(), p.dims());
            }
            Ok(v.to_dtype(p.dtype())?.unsqueeze(1)?.detach())
        }
    }
}

/// `ρ_ε(d) = sqrt(d² + ε) − √ε`; for ε = 0, `|d| = d·sign(d)` with the sign detached (gradient sign(d), 0 at 0).
pub(crate) fn charbonnier(d: &Tensor, eps: f64) -> Result<Tensor> {
    if eps == 0.0 {
        Ok((d * d.sign()?.detach())?)
    } else {
        Ok(((d.sqr()? + eps)?.sqrt()? - eps.sqrt())?)
    }
}

/// `sqrt(x)` with value and gradient 0 where `x ≤ 0` (avoids the infinite derivative at 0 when ε = 0).
fn safe_sqrt(x: &Tensor) -> Result<Tensor> {
    let pos = x.gt(0.0)?;
    let xs = pos.where_cond(x, &x.ones_like()?)?;
    Ok(pos.where_cond(&xs.sqrt()?, &x.zeros_like()?)?)
}

/// Weighted forward differences along `dim` (3 = x, 2 = y): `(v·D P, v)` with `v` the product of the valid map at
/// both ends, or `None` when the axis has a single pixel.
fn diffs(p: &Tensor, w: &Weighted, dim: usize) -> Result<Option<(Tensor, Tensor)>> {
    let len = p.dim(dim)?;
    if len < 2 {
        return Ok(None);
    }
    let d = (p.narrow(dim, 1, len - 1)? - p.narrow(dim, 0, len - 1)?)?;
    let v = w.v;
    let mut wv = (v.narrow(dim, 1, len - 1)? * v.narrow(dim, 0, len - 1)?)?;
    if let Some(pw) = w.pairs {
        wv = (wv * pw.along(dim).to_dtype(p.dtype())?.detach())?;
    }
    Ok(Some((d, wv)))
}

/// The valid map `[N,1,H,W]` and the optional contrast weights of the pairs.
struct Weighted<'a> {
    v: &'a Tensor,
    pairs: Option<&'a PairWeights>,
}

/// Sum over `n, i, j` of a `[N,K,h,w]` map → `[K]`.
fn sum_per_class(t: &Tensor) -> Result<Tensor> {
    Ok(t.sum(3)?.sum(2)?.sum(0)?)
}

/// `Σ_k vx·(DxP)² + vy·(DyP)²` on the full `[N,K,H,W]` grid (missing last column/row terms are 0).
fn squared_grad(p: &Tensor, v: &Weighted) -> Result<Tensor> {
    let mut s = p.zeros_like()?;
    if let Some((dx, vx)) = diffs(p, v, 3)? {
        s = (s + dx.sqr()?.broadcast_mul(&vx)?.pad_with_zeros(3, 0, 1)?)?;
    }
    if let Some((dy, vy)) = diffs(p, v, 2)? {
        s = (s + dy.sqr()?.broadcast_mul(&vy)?.pad_with_zeros(2, 0, 1)?)?;
    }
    Ok(s)
}

/// Raw per-class sums `[K]` of variant A or B.
fn per_class_raw(p: &Tensor, v: &Weighted, variant: TvVariant, eps: f64) -> Result<Tensor> {
    let k = p.dim(1)?;
    match variant {
        TvVariant::A => {
            let mut acc = Tensor::zeros(k, p.dtype(), p.device())?;
            for dim in [3, 2] {
                if let Some((d, wv)) = diffs(p, v, dim)? {
                    acc = (acc + sum_per_class(&charbonnier(&d, eps)?.broadcast_mul(&wv)?)?)?;
                }
            }
            Ok(acc)
        }
        TvVariant::B => sum_per_class(&norm_eps(&squared_grad(p, v)?, eps)?),
        TvVariant::C => bail_arg!("tv: variant C has no per-class decomposition"),
    }
}

/// `sqrt(s + ε) − √ε`, safe at `s + ε = 0`.
fn norm_eps(s: &Tensor, eps: f64) -> Result<Tensor> {
    if eps == 0.0 {
        safe_sqrt(s)
    } else {
        Ok(((s + eps)?.sqrt()? - eps.sqrt())?)
    }
}

/// Raw sum of variant C (classes coupled under one square root per pixel).
fn vectorial_raw(p: &Tensor, v: &Weighted, eps: f64) -> Result<Tensor> {
    Ok(norm_eps(&squared_grad(p, v)?.sum(1)?, eps)?.sum_all()?)
}
