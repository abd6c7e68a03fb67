//! Curvilinear-structure variant (`tv.curvilinear`, `docs/tv-loss.md`) [design, speculative].
//!
//! Plain TV penalises boundary length and so erodes thin structures. For a foreground probability `p`:
//! ```text
//! ∇p           central differences (replicated border)
//! J            = G_ρ * (∇p ∇pᵀ)                        structure tensor, Gaussian σ = ρ
//! v1           = unit eigenvector of J with the smallest eigenvalue (along the structure), stop-gradient
//! raw          = Σ_p w_p · ρ_ε(v1ᵀ ∇p)
//! ```
//! `w_p` is the product of the valid map over the 5-point stencil [design: so that padding never enters].
//! The penalty smooths along curves without shrinking their width: across a line it is zero.

use candle_core::{DType, Tensor};
use core_seg::Result;

use crate::tv::charbonnier;

/// Shifts `x [N,1,H,W]` by one along `dim` with a replicated border: `(x[i+1], x[i−1])`.
fn neighbours(x: &Tensor, dim: usize) -> Result<(Tensor, Tensor)> {
    let len = x.dim(dim)?;
    if len < 2 {
        return Ok((x.clone(), x.clone()));
    }
    let next = Tensor::cat(&[x.narrow(dim, 1, len - 1)?, x.narrow(dim, len - 1, 1)?], dim)?;
    let prev = Tensor::cat(&[x.narrow(dim, 0, 1)?, x.narrow(dim, 0, len - 1)?], dim)?;
    Ok((next, prev))
}

/// Central-difference gradient `(gx, gy)` of `x [N,1,H,W]` and the stencil validity `w [N,1,H,W]`.
fn gradient(x: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    let (xr, xl) = neighbours(x, 3)?;
    let (xd, xu) = neighbours(x, 2)?;
    let gx = ((xr - xl)? * 0.5)?;
    let gy = ((xd - xu)? * 0.5)?;
    let (vr, vl) = neighbours(v, 3)?;
    let (vd, vu) = neighbours(v, 2)?;
    let w = (((((v * vr)? * vl)? * vd)? * vu)?).detach();
    Ok((gx, gy, w))
}

/// Normalised 1-D Gaussian taps of σ = `rho`, radius ⌈3σ⌉ (a single tap 1 for σ = 0).
fn gaussian_taps(rho: f64) -> Vec<f64> {
    if rho <= 0.0 {
        return vec![1.0];
    }
    let r = (3.0 * rho).ceil() as i64;
    let taps: Vec<f64> = (-r..=r).map(|i| (-(i * i) as f64 / (2.0 * rho * rho)).exp()).collect();
    let s: f64 = taps.iter().sum();
    taps.into_iter().map(|t| t / s).collect()
}

/// Separable Gaussian blur of one `h × w` plane, replicated border.
fn blur(plane: &[f64], h: usize, w: usize, taps: &[f64]) -> Vec<f64> {
    let r = (taps.len() / 2) as i64;
    let clamp = |i: i64, n: usize| i.clamp(0, n as i64 - 1) as usize;
    let mut tmp = vec![0.0; h * w];
    for y in 0..h {
        for x in 0..w {
            tmp[y * w + x] =
                taps.iter().enumerate().map(|(t, c)| c * plane[y * w + clamp(x as i64 + t as i64 - r, w)]).sum();
        }
    }
    let mut out = vec![0.0; h * w];
    for y in 0..h {
        for x in 0..w {
            out[y * w + x] =
                taps.iter().enumerate().map(|(t, c)| c * tmp[clamp(y as i64 + t as i64 - r, h) * w + x]).sum();
        }
    }
    out
}

/// Per-pixel unit vectors `v1 = (cx, cy)` along the structure (the smallest-eigenvalue eigenvector of the
/// smoothed structure tensor), computed without gradient. With `θ = ½·atan2(2J_xy, J_xx − J_yy)` the principal
/// direction is `(cos θ, sin θ)`, so `v1 = (−sin θ, cos θ)`.
pub fn structure_directions(gx: &Tensor, gy: &Tensor, rho: f64) -> Result<(Tensor, Tensor)> {
    let (n, _, h, w) = gx.dims4()?;
    let gxv: Vec<f64> = gx.detach().to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
    let gyv: Vec<f64> = gy.detach().to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
    let taps = gaussian_taps(rho);
    let (mut cx, mut cy) = (Vec::with_capacity(n * h * w), Vec::with_capacity(n * h * w));
    for b in 0..n {
        let sl = b * h * w..(b + 1) * h * w;
        let (px, py) = (&gxv[sl.clone()], &gyv[sl]);
        let jxx = blur(&px.iter().map(|a| a * a).collect::<Vec<_>>(), h, w, &taps);
        let jxy = blur(&px.iter().zip(py).map(|(a, c)| a * c).collect::<Vec<_>>(), h, w, &taps);
        let jyy = blur(&py.iter().map(|c| c * c).collect::<Vec<_>>(), h, w, &taps);
        for i in 0..h * w {
            let theta = 0.5 * (2.0 * jxy[i]).atan2(jxx[i] - jyy[i]);
            cx.push(-theta.sin());
            cy.push(theta.cos());
        }
    }
    let shape = (n, 1, h, w);
    let cx = Tensor::from_vec(cx, shape, gx.device())?.to_dtype(gx.dtype())?;
    let cy = Tensor::from_vec(cy, shape, gx.device())?.to_dtype(gx.dtype())?;
    Ok((cx, cy))
}

/// Central-difference gradient `(gx, gy)` of `p [N,1,H,W]` (replicated border) and the stencil validity `w`.
pub fn central_gradient(p: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    gradient(p, v)
}

/// `Σ_p w_p·ρ_ε(cx·∂x p + cy·∂y p)` for fixed directions `(cx, cy) [N,1,H,W]` (differentiable in `p`).
pub fn along_structure(p: &Tensor, v: &Tensor, dirs: (&Tensor, &Tensor), eps: f64) -> Result<Tensor> {
    let (gx, gy, w) = gradient(p, v)?;
    let along = ((gx * dirs.0)? + (gy * dirs.1)?)?;
    Ok((charbonnier(&along, eps)? * w)?.sum_all()?)
}

/// Raw along-structure penalty `Σ_p w_p·ρ_ε(v1ᵀ∇p)` of a foreground probability `p [N,1,H,W]`, valid map
/// `v [N,1,H,W]` (a differentiable scalar; `v1` is a constant).
pub fn curvilinear_raw(p: &Tensor, v: &Tensor, rho: f64, eps: f64) -> Result<Tensor> {
    let (gx, gy, w) = gradient(p, v)?;
    let (cx, cy) = structure_directions(&(gx * &w)?, &(gy * &w)?, rho)?;
    along_structure(p, v, (&cx, &cy), eps)
}
