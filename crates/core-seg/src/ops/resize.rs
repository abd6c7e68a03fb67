//! Bilinear resize as two matrix products, `Y = A_h · X · A_wᵀ` per (n, c) plane.
//!
//! `A_h [oh, h]` and `A_w [ow, w]` hold PyTorch's interpolation weights (`F.interpolate(mode="bilinear")`),
//! so the op is exactly linear in `X` and its backward is `A_hᵀ · dY · A_w`, which Candle derives from the
//! matmuls.

use candle_core::{DType, Device, Tensor};

use crate::Result;

/// Interpolation matrix `[out, inp]` of 1-D linear resampling with PyTorch's source-index rule.
///
/// align_corners = true: `src = i · (inp − 1)/(out − 1)`; false: `src = (i + 0.5) · inp/out − 0.5`,
/// clamped below at 0. Weights `(1 − λ, λ)` go to `floor(src)` and `min(floor(src) + 1, inp − 1)`.
pub fn interp_matrix(inp: usize, out: usize, align_corners: bool) -> Vec<f64> {
    let mut m = vec![0f64; out * inp];
    for i in 0..out {
        // Same operation order as ATen (`area_pixel_compute_scale`, `area_pixel_compute_source_index`), so the
        // weights are bit-identical to PyTorch's in f64.
        let src = if align_corners {
            let scale = if out > 1 { (inp as f64 - 1.0) / (out as f64 - 1.0) } else { 0.0 };
            scale * i as f64
        } else {
            let scale = inp as f64 / out as f64;
            (scale * (i as f64 + 0.5) - 0.5).max(0.0)
        };
        let i0 = (src.floor() as usize).min(inp - 1);
        let i1 = (i0 + 1).min(inp - 1);
        let lambda = src - i0 as f64;
        m[i * inp + i0] += 1.0 - lambda;
        m[i * inp + i1] += lambda;
    }
    m
}

fn matrix(inp: usize, out: usize, align_corners: bool, dtype: DType, dev: &Device) -> Result<Tensor> {
    let m = interp_matrix(inp, out, align_corners);
    Ok(Tensor::from_vec(m, (out, inp), dev)?.to_dtype(dtype)?)
}

/// Bilinear resize of `x [N, C, H, W]` to `[N, C, oh, ow]`, differentiable in `x`.
/// Uses the direct kernel on CPU ([`crate::kernels::resize_bilinear`]).
pub fn resize_bilinear(x: &Tensor, (oh, ow): (usize, usize), align_corners: bool) -> Result<Tensor> {
    if crate::kernels::active_for(x) && x.dims4()?.2 > 0 && x.dims4()?.3 > 0 && oh > 0 && ow > 0 {
        return Ok(crate::kernels::resize_bilinear(x, (oh, ow), align_corners)?);
    }
    resize_bilinear_reference(x, (oh, ow), align_corners)
}

/// [`resize_bilinear`] as two matrix products (Candle primitives).
pub fn resize_bilinear_reference(x: &Tensor, (oh, ow): (usize, usize), align_corners: bool) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    if (h, w) == (oh, ow) {
        return Ok(x.clone());
    }
    if oh == 0 || ow == 0 || h == 0 || w == 0 {
        crate::bail_arg!("resize_bilinear: empty size {h}x{w} -> {oh}x{ow}");
    }
    let (dtype, dev) = (x.dtype(), x.device());
    // Along W: [N·C·H, W] · A_wᵀ [W, ow].
    let xw = if w == ow {
        x.contiguous()?
    } else {
        let a_w_t = matrix(w, ow, align_corners, dtype, dev)?.t()?;
        x.reshape((n * c * h, w))?.matmul(&a_w_t)?.reshape((n, c, h, ow))?
    };
    if h == oh {
        return Ok(xw);
    }
    // Along H: transpose so H is last, then [N·C·ow, H] · A_hᵀ [H, oh].
    let a_h_t = matrix(h, oh, align_corners, dtype, dev)?.t()?;
    let t = xw.transpose(2, 3)?.contiguous()?.reshape((n * c * ow, h))?;
    let y = t.matmul(&a_h_t)?.reshape((n, c, ow, oh))?.transpose(2, 3)?.contiguous()?;
    Ok(y)
}
