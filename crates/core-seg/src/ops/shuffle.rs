//! PixelShuffle / PixelUnshuffle (PyTorch semantics), as reshapes and permutations.

use candle_core::Tensor;

use crate::Result;

/// `[N, C·r², H, W] → [N, C, H·r, W·r]` with `out[n, c, h·r + i, w·r + j] = x[n, c·r² + i·r + j, h, w]`.
pub fn pixel_shuffle(x: &Tensor, r: usize) -> Result<Tensor> {
    let (n, crr, h, w) = x.dims4()?;
    if r == 0 || crr % (r * r) != 0 {
        crate::bail_arg!("pixel_shuffle: {crr} channels not divisible by r² = {}", r * r);
    }
    let c = crr / (r * r);
    let y = x.reshape((n, c, r, r, h, w))?.permute((0, 1, 4, 2, 5, 3))?;
    Ok(y.contiguous()?.reshape((n, c, h * r, w * r))?)
}

/// Inverse of [`pixel_shuffle`]: `[N, C, H·r, W·r] → [N, C·r², H, W]`.
pub fn pixel_unshuffle(x: &Tensor, r: usize) -> Result<Tensor> {
    let (n, c, hr, wr) = x.dims4()?;
    if r == 0 || hr % r != 0 || wr % r != 0 {
        crate::bail_arg!("pixel_unshuffle: {hr}x{wr} not divisible by r = {r}");
    }
    let (h, w) = (hr / r, wr / r);
    let y = x.reshape((n, c, h, r, w, r))?.permute((0, 1, 3, 5, 2, 4))?;
    Ok(y.contiguous()?.reshape((n, c * r * r, h, w))?)
}
