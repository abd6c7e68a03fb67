//! The paper's comparison baseline: MRF post-processing of a purely supervised model's probabilities
//! (`docs/tv-loss.md`; the paper's energy and solver are unknown, this 4-connected Potts model is our [design]).
//!
//! ```text
//! E(l) = Σ_p −log P_{l_p}(p) + β Σ_{(p,q)∈N4} w_pq·[l_p ≠ l_q]
//! w_pq = exp(−‖I_p − I_q‖² / (2σ²)),  σ² = mean over the image's N4 pairs of ‖I_p − I_q‖²   (contrast = true)
//! w_pq = 1                                                                                  (contrast = false)
//! ```
//! - `mean_field` (default): `Q ← P`, then `iters` parallel updates `Q_p(l) ∝ P_l(p)·exp(β Σ_{q∈N4(p)} w_pq Q_q(l))`.
//! - `icm`: start from argmax P; raster sweeps `l_p ← argmin_l −log P_l(p) + β Σ_q w_pq [l ≠ l_q]` (ties keep
//!   the current label) until no label changes, at most `icm_max_sweeps` sweeps.
//!
//! `I` is the RGB image in [0, 1] (de-normalised); a uniform image (σ² = 0) uses w = 1.

use candle_core::{DType, Tensor};
use core_seg::{bail_arg, Error, Result};
use serde::{Deserialize, Serialize};

/// MRF inference algorithm (`mrf.solver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MrfSolver {
    #[default]
    MeanField,
    Icm,
}

/// `[mrf]` post-processing settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MrfConfig {
    pub solver: MrfSolver,
    /// Mean-field iterations [design: 5].
    pub iters: usize,
    /// Contrast-sensitive pairwise weights from the image [design: true].
    pub contrast: bool,
    /// β used by [`mrf_smooth`] (the value chosen on validation from `beta_grid`).
    pub beta: f64,
    /// Candidates for β, chosen on validation [design: {0.25, 0.5, 1, 2, 4}].
    pub beta_grid: Vec<f64>,
    /// Upper bound on ICM sweeps [design: 20].
    pub icm_max_sweeps: usize,
}

impl Default for MrfConfig {
    fn default() -> Self {
        Self {
            solver: MrfSolver::MeanField,
            iters: 5,
            contrast: true,
            beta: 1.0,
            beta_grid: vec![0.25, 0.5, 1.0, 2.0, 4.0],
            icm_max_sweeps: 20,
        }
    }
}

/// Pairwise weights of one image: `wx[i·W + j]` for `(i,j)–(i,j+1)`, `wy[i·W + j]` for `(i,j)–(i+1,j)`.
struct Pairwise {
    wx: Vec<f64>,
    wy: Vec<f64>,
}

fn pairwise(img: Option<&[f64]>, h: usize, w: usize) -> Pairwise {
    let mut pw = Pairwise { wx: vec![1.0; h * w], wy: vec![1.0; h * w] };
    let Some(img) = img else { return pw };
    let hw = h * w;
    let d2 = |a: usize, b: usize| (0..3).map(|c| (img[c * hw + a] - img[c * hw + b]).powi(2)).sum::<f64>();
    let (mut sum, mut count) = (0.0, 0usize);
    for i in 0..h {
        for j in 0..w {
            let p = i * w + j;
            if j + 1 < w {
                pw.wx[p] = d2(p, p + 1);
                sum += pw.wx[p];
                count += 1;
            }
            if i + 1 < h {
                pw.wy[p] = d2(p, p + w);
                sum += pw.wy[p];
                count += 1;
            }
        }
    }
    let sigma2 = if count > 0 { sum / count as f64 } else { 0.0 };
    if sigma2 <= 0.0 {
        pw.wx.fill(1.0);
        pw.wy.fill(1.0);
    } else {
        pw.wx.iter_mut().chain(pw.wy.iter_mut()).for_each(|d| *d = (-*d / (2.0 * sigma2)).exp());
    }
    pw
}

/// Calls `f(q, w_pq)` for each 4-neighbour `q` of pixel `(i, j)`.
fn for_neighbours(pw: &Pairwise, h: usize, w: usize, i: usize, j: usize, mut f: impl FnMut(usize, f64)) {
    let p = i * w + j;
    if j > 0 {
        f(p - 1, pw.wx[p - 1]);
    }
    if j + 1 < w {
        f(p + 1, pw.wx[p]);
    }
    if i > 0 {
        f(p - w, pw.wy[p - w]);
    }
    if i + 1 < h {
        f(p + w, pw.wy[p]);
    }
}

/// Mean-field Potts smoothing of one image's `P [K, H·W]`; returns `Q [K, H·W]`.
fn mean_field(logp: &[f64], k: usize, h: usize, w: usize, pw: &Pairwise, beta: f64, iters: usize) -> Vec<f64> {
    let hw = h * w;
    let mut q = softmax_cols(logp, k, hw);
    let mut next = vec![0.0; k * hw];
    for _ in 0..iters {
        for i in 0..h {
            for j in 0..w {
                let p = i * w + j;
                for l in 0..k {
                    let mut m = 0.0;
                    for_neighbours(pw, h, w, i, j, |qn, wq| m += wq * q[l * hw + qn]);
                    next[l * hw + p] = logp[l * hw + p] + beta * m;
                }
            }
        }
        q = softmax_cols(&next, k, hw);
    }
    q
}

/// Column-wise softmax of a `[K, n]` score array.
fn softmax_cols(s: &[f64], k: usize, n: usize) -> Vec<f64> {
    let mut out = vec![0.0; k * n];
    for p in 0..n {
        let mx = (0..k).map(|l| s[l * n + p]).fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = (0..k).map(|l| (s[l * n + p] - mx).exp()).sum();
        for l in 0..k {
            out[l * n + p] = (s[l * n + p] - mx).exp() / z;
        }
    }
    out
}

/// ICM on one image; returns the labels `[H·W]`.
fn icm(logp: &[f64], k: usize, h: usize, w: usize, pw: &Pairwise, beta: f64, max_sweeps: usize) -> Vec<usize> {
    let hw = h * w;
    let mut lab: Vec<usize> = (0..hw)
        .map(|p| (0..k).fold(0, |best, l| if logp[l * hw + p] > logp[best * hw + p] { l } else { best }))
        .collect();
    for _ in 0..max_sweeps {
        let mut changed = false;
        for i in 0..h {
            for j in 0..w {
                let p = i * w + j;
                let cost = |l: usize| {
                    let mut c = -logp[l * hw + p];
                    for_neighbours(pw, h, w, i, j, |q, wq| c += if lab[q] != l { beta * wq } else { 0.0 });
                    c
                };
                let (mut best, mut best_c) = (lab[p], cost(lab[p]));
                for l in 0..k {
                    let c = cost(l);
                    if c < best_c {
                        (best, best_c) = (l, c);
                    }
                }
                if best != lab[p] {
                    lab[p] = best;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    lab
}

/// Potts-MRF smoothing of `probs [N,K,H,W]` with the optional RGB `image [N,3,H,W]` in [0, 1] (required when
/// `contrast = true`). Returns `[N,K,H,W]` in `probs`' dtype: the mean-field marginals `Q` (which sum to 1 per
/// pixel), or for ICM the one-hot encoding of the final labels. Labels are the argmax over `K`.
pub fn mrf_smooth(probs: &Tensor, image: Option<&Tensor>, cfg: &MrfConfig) -> Result<Tensor> {
    let (n, k, h, w) = probs.dims4()?;
    if !cfg.beta.is_finite() || cfg.beta < 0.0 {
        return Err(Error::Config(format!("mrf: beta must be finite and >= 0, got {}", cfg.beta)));
    }
    let img: Option<Vec<f64>> = match (cfg.contrast, image) {
        (false, _) => None,
        (true, None) => return Err(Error::Config("mrf: contrast = true needs the RGB image".into())),
        (true, Some(im)) => {
            if im.dims() != [n, 3, h, w] {
                bail_arg!("mrf: image {:?} does not match probabilities {:?}", im.dims(), probs.dims());
            }
            Some(im.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?)
        }
    };
    let pv: Vec<f64> = probs.detach().to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
    let (plane, khw) = (h * w, k * h * w);
    let mut out = Vec::with_capacity(n * khw);
    for b in 0..n {
        let logp: Vec<f64> = pv[b * khw..(b + 1) * khw].iter().map(|&x| x.max(1e-300).ln()).collect();
        let pw = pairwise(img.as_ref().map(|v| &v[b * 3 * plane..(b + 1) * 3 * plane]), h, w);
        match cfg.solver {
            MrfSolver::MeanField => out.extend(mean_field(&logp, k, h, w, &pw, cfg.beta, cfg.iters)),
            MrfSolver::Icm => {
                let lab = icm(&logp, k, h, w, &pw, cfg.beta, cfg.icm_max_sweeps);
                out.extend((0..k).flat_map(|l| lab.iter().map(move |&x| if x == l { 1.0 } else { 0.0 })));
            }
        }
    }
    Ok(Tensor::from_vec(out, (n, k, h, w), probs.device())?.to_dtype(probs.dtype())?)
}

/// The RGB image in [0, 1] that the contrast weights need, from a network input normalised as
/// `(x − mean) / std` (pass `data::augment::{MEAN, STD}`): `clamp(x·std + mean, 0, 1)`.
pub fn rgb_from_normalized(image: &Tensor, mean: [f32; 3], std: [f32; 3]) -> Result<Tensor> {
    let (_, c, _, _) = image.dims4()?;
    if c != 3 {
        bail_arg!("mrf: expected an RGB image [N,3,H,W], got {:?}", image.dims());
    }
    let col = |v: [f32; 3]| -> Result<Tensor> {
        Ok(Tensor::from_vec(v.to_vec(), (1, 3, 1, 1), image.device())?.to_dtype(image.dtype())?)
    };
    Ok(image.broadcast_mul(&col(std)?)?.broadcast_add(&col(mean)?)?.clamp(0.0, 1.0)?)
}

/// Labels `[N,H,W]` (u32) after [`mrf_smooth`].
pub fn mrf_labels(probs: &Tensor, image: Option<&Tensor>, cfg: &MrfConfig) -> Result<Tensor> {
    Ok(mrf_smooth(probs, image, cfg)?.argmax(1)?)
}

/// Chooses β from `cfg.beta_grid` by maximising `score(β)` (e.g. validation mIoU); the first best wins ties.
/// Returns `(β, score)`.
pub fn select_beta(cfg: &MrfConfig, mut score: impl FnMut(f64) -> Result<f64>) -> Result<(f64, f64)> {
    let mut best: Option<(f64, f64)> = None;
    for &beta in &cfg.beta_grid {
        let s = score(beta)?;
        if best.is_none_or(|(_, b)| s > b) {
            best = Some((beta, s));
        }
    }
    best.ok_or_else(|| Error::Config("mrf: beta_grid is empty".into()))
}
