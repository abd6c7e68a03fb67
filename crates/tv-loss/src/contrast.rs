//! Contrast-sensitive pair weights (`tv.contrast`, a [design] extension beyond the abstract).
//!
//! Plain TV charges every class change the same, so it also pulls predicted boundaries away from the image's
//! edges. With `tv.contrast = true` each forward difference is weighted by the MRF baseline's pairwise weight
//!
//! ```text
//! w_pq = exp(−‖x_p − x_q‖² / (2σ²)),   σ² = the image's mean of ‖x_p − x_q‖² over its 4-neighbour pairs
//! ```
//!
//! (`x` the network input; σ² is per image, so the weights do not change when an image is scaled), so a class
//! change across a strong image edge costs little and one inside a flat region costs fully — the regularised-loss
//! reading of the contrast-sensitive Potts model the paper compares against.

use candle_core::{DType, Tensor};
use core_seg::{bail_arg, Result};

/// Weights of the horizontal pairs `(i,j)–(i,j+1)` `[N,1,H,W−1]` and vertical pairs `(i,j)–(i+1,j)` `[N,1,H−1,W]`
/// (an axis of length 1 gives an empty tensor).
#[derive(Debug, Clone)]
pub struct PairWeights {
    pub x: Tensor,
    pub y: Tensor,
}

impl PairWeights {
    /// The weight of the pairs along `dim` (3 = x, 2 = y).
    pub fn along(&self, dim: usize) -> &Tensor {
        if dim == 3 {
            &self.x
        } else {
            &self.y
        }
    }
}

/// `Σ_c (x[.., c, pair end] − x[.., c, pair start])²` along `dim`, `[N,1,h,w]`.
fn squared_step(x: &Tensor, dim: usize) -> Result<Tensor> {
    let len = x.dim(dim)?;
    if len < 2 {
        let mut shape = x.dims().to_vec();
        shape[1] = 1;
        shape[dim] = 0;
        return Ok(Tensor::zeros(shape, x.dtype(), x.device())?);
    }
    let d = (x.narrow(dim, 1, len - 1)? - x.narrow(dim, 0, len - 1)?)?;
    Ok(d.sqr()?.sum_keepdim(1)?)
}

/// The contrast weights of images `x [N,C,H,W]`, in f64 (no gradient flows into them). A constant image has σ² = 0 and
/// gets weight 1 everywhere.
pub fn contrast_weights(x: &Tensor) -> Result<PairWeights> {
    let (n, _, h, w) = x.dims4()?;
    if h * w == 0 {
        bail_arg!("tv.contrast: empty image {:?}", x.dims());
    }
    let x = x.detach().to_dtype(DType::F64)?;
    let (dx, dy) = (squared_step(&x, 3)?, squared_step(&x, 2)?);
    let pairs = (h * w.saturating_sub(1) + h.saturating_sub(1) * w).max(1) as f64;
    let per_image = |d: &Tensor| -> Result<Tensor> { Ok(d.flatten_from(1)?.sum(1)?) };
    let sigma2 = ((per_image(&dx)? + per_image(&dy)?)? / pairs)?.maximum(1e-30)?.reshape((n, 1, 1, 1))?;
    let weight = |d: &Tensor| -> Result<Tensor> { Ok(d.broadcast_div(&(&sigma2 * 2.0)?)?.neg()?.exp()?) };
    let (wx, wy) = (weight(&dx)?, weight(&dy)?);
    Ok(PairWeights { x: wx, y: wy })
}
