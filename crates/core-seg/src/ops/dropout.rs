//! Channel dropout (PyTorch `nn.Dropout2d`) with masks from the project RNG.

use candle_core::Tensor;

use crate::rng::SegRng;
use crate::Result;

/// A keep mask `[N, C, 1, 1]` whose entries are `1/(1 − p)` with probability `1 − p`, else 0.
pub fn dropout2d_mask(n: usize, c: usize, p: f64, rng: &mut SegRng, x: &Tensor) -> Result<Tensor> {
    if !(0.0..1.0).contains(&p) {
        crate::bail_arg!("dropout2d: p = {p} outside [0, 1)");
    }
    let scale = 1.0 / (1.0 - p);
    let mask: Vec<f64> = (0..n * c).map(|_| if rng.bernoulli(p) { 0.0 } else { scale }).collect();
    Ok(Tensor::from_vec(mask, (n, c, 1, 1), x.device())?.to_dtype(x.dtype())?)
}

/// Dropout2d: every (sample, channel) plane of `x [N, C, H, W]` is zeroed with probability `p`, else scaled by
/// `1/(1 − p)`. Always active (UniMatch's feature perturbation uses it in both train and eval mode).
pub fn dropout2d(x: &Tensor, p: f64, rng: &mut SegRng) -> Result<Tensor> {
    let (n, c, _, _) = x.dims4()?;
    let mask = dropout2d_mask(n, c, p, rng, x)?;
    dropout2d_with_mask(x, &mask)
}

/// Applies a given Dropout2d keep mask `[N, C, 1, 1]` (entries 0 or `1/(1 − p)`, e.g. from
/// [`dropout2d_mask`]) to `x [N, C, H, W]`: `y = x · mask`, broadcast over H and W. Differentiable in `x`.
pub fn dropout2d_with_mask(x: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let (n, c, _, _) = x.dims4()?;
    if mask.dims() != [n, c, 1, 1] {
        crate::bail_arg!("dropout2d: mask {:?} does not match input {:?} (want [N, C, 1, 1])", mask.dims(), x.dims());
    }
    Ok(x.broadcast_mul(&mask.to_dtype(x.dtype())?)?)
}
