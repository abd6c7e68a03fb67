//! Feature aggregation (`docs/aux-mim.md`): masked-region features are pulled toward the visible prototype of the
//! same class inside each class-wise sample.
//!
//! ```text
//! Vis↓, Msk↓ [N,h,w] = avg_pool_f×f(zero_pad(Vis / Msk))                       (soft weights in [0, 1])
//! μV_n = Σ_p Vis↓_n(p)·F_n(p) / Σ_p Vis↓_n(p)                                   [N, C]
//! B (pixel→prototype):  L = Σ_{n,p} Msk↓_n(p)·(1 − cos(F_n(p), sg(μV_n))) / Σ_{n,p} Msk↓_n(p)
//! A (prototype↔prototype): μM_n likewise on Msk↓;  L = mean_n (1 − cos(μM_n, μV_n)) over n with both sums > 0
//! cos(a, b) = a·b / max(|a|·|b|, 1e-8)
//! ```
//! Samples whose visible weight is 0 carry no term. The cosine is evaluated as `a·b / √max(|a|²|b|², 1e-16)`,
//! which equals the formula above and keeps the gradient finite at zero feature vectors (ReLU outputs).

use candle_core::{DType, Tensor};
use core_seg::Result;

use crate::config::FaMode;

/// `cos(a, b)` along dim 1 of broadcast-compatible `a`, `b` (`[N, C, …]`); result without dim 1.
pub fn cosine(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let dot = a.broadcast_mul(b)?.sum(1)?;
    let na = a.sqr()?.sum(1)?;
    let nb = b.sqr()?.sum(1)?;
    let den = na.broadcast_mul(&nb)?.maximum(1e-16)?.sqrt()?;
    Ok(dot.broadcast_div(&den)?)
}

/// Weighted prototypes `Σ_p w(p)·F(p) / Σ_p w(p)` → `[N, C]` (0 where the weights sum to 0), and the weight
/// sums `[N]`.
pub fn prototypes(feat: &Tensor, w: &Tensor) -> Result<(Tensor, Tensor)> {
    let (n, _, h, wd) = feat.dims4()?;
    if w.dims() != [n, h, wd] {
        core_seg::bail_arg!("prototypes: features {:?} vs weights {:?}", feat.dims(), w.dims());
    }
    let w = w.to_dtype(feat.dtype())?;
    let num = feat.broadcast_mul(&w.unsqueeze(1)?)?.sum((2, 3))?; // [N, C]
    let sums = w.sum((1, 2))?; // [N]
    let proto = num.broadcast_div(&sums.maximum(1e-12)?.unsqueeze(1)?)?;
    Ok((proto, sums))
}

/// `L_fa` for features `F [N,C,h,w]` and pooled weights `Vis↓, Msk↓ [N,h,w]`. `visible_feat` (same shape as
/// `F`) supplies μV when it comes from another pass (`visible_from = clean_pass`); `stopgrad` detaches μV in
/// option B. Returns a scalar (0 when no sample has both parts).
pub fn feature_aggregation(
    feat: &Tensor,
    vis_w: &Tensor,
    msk_w: &Tensor,
    mode: FaMode,
    stopgrad: bool,
    visible_feat: Option<&Tensor>,
) -> Result<Tensor> {
    let vf = visible_feat.unwrap_or(feat);
    if vf.dims() != feat.dims() {
        core_seg::bail_arg!("feature_aggregation: visible features {:?} vs {:?}", vf.dims(), feat.dims());
    }
    let (mu_v, vis_sum) = prototypes(vf, vis_w)?;
    let has_vis = vis_sum.gt(0.0)?.to_dtype(feat.dtype())?; // [N]
    let msk_w = msk_w.to_dtype(feat.dtype())?;
    match mode {
        FaMode::Off => Ok(Tensor::zeros((), feat.dtype(), feat.device())?),
        FaMode::PixelProto => {
            let mu = if stopgrad { mu_v.detach() } else { mu_v };
            let cos = cosine(feat, &mu.unsqueeze(2)?.unsqueeze(3)?)?; // [N, h, w]
            let wgt = msk_w.broadcast_mul(&has_vis.unsqueeze(1)?.unsqueeze(2)?)?;
            let num = (wgt.clone() * (1.0 - cos)?)?.sum_all()?;
            Ok(num.div(&wgt.sum_all()?.maximum(1e-12)?)?)
        }
        FaMode::ProtoProto => {
            let (mu_m, msk_sum) = prototypes(feat, &msk_w)?;
            let both = (has_vis * msk_sum.gt(0.0)?.to_dtype(feat.dtype())?)?; // [N]
            let cos = cosine(&mu_m, &mu_v)?; // [N]
            let num = (both.clone() * (1.0 - cos)?)?.sum_all()?;
            Ok(num.div(&both.sum_all()?.maximum(1.0)?)?)
        }
    }
}

/// Host-side pooled weights as a tensor `[N, h, w]` of `dtype`.
pub fn weights_tensor(
    w: Vec<f32>,
    n: usize,
    (h, wd): (usize, usize),
    dtype: DType,
    dev: &candle_core::Device,
) -> Result<Tensor> {
    Ok(Tensor::from_vec(w, (n, h, wd), dev)?.to_dtype(dtype)?)
}
