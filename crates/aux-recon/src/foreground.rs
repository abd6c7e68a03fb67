//! The detached foreground probability `m [N,H,W]` of the disentangled modes (`docs/aux-recon.md`).
//!
//! ```text
//! soft(p)        = Σ_{c∈fg} P_c(p),          P = softmax(sg(z)) of the train-mode prediction
//! labelled (gt)  = [y ∈ fg]  where y ≠ 255,   soft elsewhere
//! unlabelled     = [ŷ ∈ fg]  where conf ≥ τ,  soft elsewhere          (fg_source_u = pseudo)
//! either (soft)  = soft everywhere
//! ```

use candle_core::{DType, Tensor};
use core_seg::ops::IGNORE_INDEX;
use core_seg::plugin::Pseudo;
use core_seg::Result;

use crate::config::{FgSourceL, FgSourceU};

/// `[label ∈ fg]` as f32 `[N,H,W]` (`labels` u32).
pub fn indicator(labels: &Tensor, fg: &[u32]) -> Result<Tensor> {
    let labels = labels.to_dtype(DType::U32)?;
    let mut m = labels.zeros_like()?.to_dtype(DType::F32)?;
    for &c in fg {
        m = (m + labels.eq(c)?.to_dtype(DType::F32)?)?;
    }
    Ok(m)
}

/// `Σ_{c∈fg} softmax(sg(z))_c` of logits `[N,K,H,W]` → f32 `[N,H,W]`.
pub fn soft(logits: &Tensor, fg: &[u32]) -> Result<Tensor> {
    let (_, _, h, w) = logits.dims4()?;
    if fg.is_empty() {
        let n = logits.dim(0)?;
        return Ok(Tensor::zeros((n, h, w), DType::F32, logits.device())?);
    }
    let p = candle_nn::ops::softmax(&logits.detach().to_dtype(DType::F32)?, 1)?;
    let idx = Tensor::from_vec(fg.to_vec(), fg.len(), logits.device())?;
    Ok(p.index_select(&idx, 1)?.sum(1)?)
}

/// `m` of labelled images from the ground truth `mask [N,H,W]` and the detached logits of the same rows.
pub fn labeled(mask: &Tensor, logits: &Tensor, fg: &[u32], source: FgSourceL) -> Result<Tensor> {
    let s = soft(logits, fg)?;
    match source {
        FgSourceL::Soft => Ok(s),
        FgSourceL::Gt => {
            let mask = mask.to_dtype(DType::U32)?;
            Ok(mask.ne(IGNORE_INDEX)?.where_cond(&indicator(&mask, fg)?, &s)?)
        }
    }
}

/// `m` of unlabelled views from their (pasted) pseudo-labels and the detached logits of the same rows.
pub fn unlabeled(pseudo: &Pseudo, logits: &Tensor, fg: &[u32], tau: f64, source: FgSourceU) -> Result<Tensor> {
    let s = soft(logits, fg)?;
    match source {
        FgSourceU::Soft => Ok(s),
        FgSourceU::Pseudo => {
            let confident = pseudo.conf.to_dtype(DType::F64)?.ge(tau)?;
            Ok(confident.where_cond(&indicator(&pseudo.label, fg)?, &s)?)
        }
    }
}
