//! Patch masks (`docs/aux-mim.md`) and their transfer to feature resolution.
//!
//! ```text
//! n_h = ⌈H/P⌉, n_w = ⌈W/P⌉
//! M0 [B, n_h, n_w] ∈ {0,1}: exactly round(r·n_h·n_w) ones per image (exact) or i.i.d. Bernoulli(r)
//! M  [B, H, W]      = M0 with every cell blown up to P×P, cropped to H×W        (1 = masked)
//! ```
//! Masks are host-side `Vec<u8>` (row-major `[B, H, W]`): they are data, never differentiated.

use candle_core::{DType, Device, Tensor};
use core_seg::rng::SegRng;
use core_seg::Result;

use crate::config::{MaskConfig, MaskSampling};

/// Number of masked cells of an `exact` mask over `cells` cells: `round(r·cells)`.
pub fn exact_count(cells: usize, ratio: f64) -> usize {
    ((ratio * cells as f64).round() as usize).min(cells)
}

/// One cell grid `[cells]` ∈ {0,1}.
pub fn cell_grid(rng: &mut SegRng, cells: usize, ratio: f64, sampling: MaskSampling) -> Vec<u8> {
    match sampling {
        MaskSampling::Exact => {
            let mut order: Vec<usize> = (0..cells).collect();
            rng.shuffle(&mut order);
            let mut g = vec![0u8; cells];
            for &i in order.iter().take(exact_count(cells, ratio)) {
                g[i] = 1;
            }
            g
        }
        MaskSampling::Bernoulli => (0..cells).map(|_| u8::from(rng.bernoulli(ratio))).collect(),
    }
}

/// One image's pixel mask `[H·W]`.
pub fn image_mask(rng: &mut SegRng, (h, w): (usize, usize), cfg: &MaskConfig) -> Result<Vec<u8>> {
    let p = cfg.patch;
    if p == 0 || h == 0 || w == 0 {
        core_seg::bail_arg!("patch mask: patch {p}, image {h}x{w}");
    }
    let (nh, nw) = (h.div_ceil(p), w.div_ceil(p));
    let grid = cell_grid(rng, nh * nw, cfg.ratio, cfg.sampling);
    let mut m = vec![0u8; h * w];
    for y in 0..h {
        for x in 0..w {
            m[y * w + x] = grid[(y / p) * nw + x / p];
        }
    }
    Ok(m)
}

/// `M [B, H, W]` for `b` images, drawn image by image from `rng`.
pub fn patch_mask(rng: &mut SegRng, b: usize, hw: (usize, usize), cfg: &MaskConfig) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(b * hw.0 * hw.1);
    for _ in 0..b {
        out.extend(image_mask(rng, hw, cfg)?);
    }
    Ok(out)
}

/// A host mask `[B, H, W]` as a tensor of `dtype` (`[B, 1, H, W]` when `channel` is set).
pub fn to_tensor(
    m: &[u8],
    b: usize,
    (h, w): (usize, usize),
    channel: bool,
    dtype: DType,
    dev: &Device,
) -> Result<Tensor> {
    let t = Tensor::from_vec(m.to_vec(), (b, h, w), dev)?;
    let t = if channel { t.unsqueeze(1)? } else { t };
    Ok(t.to_dtype(dtype)?)
}

/// The mask sampled at the top-left pixel of each stride-`s` cell: `M_s[i, j] = M[min(i·s, H−1), min(j·s, W−1)]`,
/// shape `[B, fh, fw]` (exact when P is a multiple of `s`).
pub fn sample_at_stride(m: &[u8], b: usize, (h, w): (usize, usize), (fh, fw): (usize, usize), s: usize) -> Vec<u8> {
    let mut out = vec![0u8; b * fh * fw];
    for n in 0..b {
        for i in 0..fh {
            for j in 0..fw {
                let (y, x) = ((i * s).min(h - 1), (j * s).min(w - 1));
                out[(n * fh + i) * fw + j] = m[(n * h + y) * w + x];
            }
        }
    }
    out
}

/// Soft weights at feature resolution: `avg_pool_{f×f, stride f}(zero_pad_to(f·fh × f·fw, m))`, `[N, fh, fw]`.
/// With `binarize`, weights > 0.5 become 1 and the rest 0.
pub fn pool_weights(
    m: &[f32],
    n: usize,
    (h, w): (usize, usize),
    (fh, fw): (usize, usize),
    f: usize,
    binarize: bool,
) -> Result<Vec<f32>> {
    if f * fh < h || f * fw < w {
        core_seg::bail_arg!("pool_weights: {fh}x{fw} cells of {f} px do not cover {h}x{w}");
    }
    let mut out = vec![0f32; n * fh * fw];
    let inv = 1.0 / (f * f) as f32;
    for k in 0..n {
        for y in 0..h {
            for x in 0..w {
                out[(k * fh + y / f) * fw + x / f] += m[(k * h + y) * w + x] * inv;
            }
        }
    }
    if binarize {
        for v in &mut out {
            *v = if *v > 0.5 { 1.0 } else { 0.0 };
        }
    }
    Ok(out)
}

/// Stride of a feature map of side `fh` over an image of side `h`: `⌈h/fh⌉`.
pub fn stride_of(h: usize, fh: usize) -> usize {
    h.div_ceil(fh.max(1))
}
