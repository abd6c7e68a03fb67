//! Max pooling 3×3, stride 2, padding 1 (the ResNet stem), with a correct gradient.

use candle_core::{Tensor, D};

use crate::Result;

/// `out[i, j] = max_{0≤a,b<3} x_pad[2i + a, 2j + b]`, with `x` padded by one `−∞` row/column on each side
/// (PyTorch `nn.MaxPool2d(3, 2, 1)`). Output size `⌊(H − 1)/2⌋ + 1`.
///
/// Built as the elementwise `maximum` of the nine strided views, so the gradient flows to the argmax
/// (ties split it; harmless). Candle's own 2-D max pooling scales the gradient by 1/k².
/// Uses the argmax kernel on CPU ([`crate::kernels::max_pool_3x3_s2_p1`]; gradient to the first maximum).
pub fn max_pool_3x3_s2_p1(x: &Tensor) -> Result<Tensor> {
    if crate::kernels::active_for(x) {
        return Ok(crate::kernels::max_pool_3x3_s2_p1(x)?);
    }
    max_pool_3x3_s2_p1_reference(x)
}

/// [`max_pool_3x3_s2_p1`] as the maximum of nine strided views (Candle primitives).
pub fn max_pool_3x3_s2_p1_reference(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (oh, ow) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
    // Pad to (2·oh + 2) × (2·ow + 2): one row/col on top/left, the rest on bottom/right.
    let (ph, pw) = (2 * oh + 2, 2 * ow + 2);
    let neg = -1e30;
    let padded = pad_const(x, (1, ph - h - 1), (1, pw - w - 1), neg)?;
    let mut out: Option<Tensor> = None;
    for a in 0..3 {
        // Rows a, a+2, ..., a+2(oh-1): narrow then keep the first of each pair.
        let rows = padded.narrow(2, a, 2 * oh)?.reshape((n, c, oh, 2, pw))?.narrow(3, 0, 1)?.squeeze(3)?;
        for b in 0..3 {
            let v = rows.narrow(D::Minus1, b, 2 * ow)?.reshape((n, c, oh, ow, 2))?.narrow(4, 0, 1)?.squeeze(4)?;
            out = Some(match out {
                None => v,
                Some(m) => m.maximum(&v)?,
            });
        }
    }
    Ok(out.expect("nine views"))
}

/// Pads dims 2 and 3 of a 4-D tensor with a constant.
fn pad_const(x: &Tensor, (top, bottom): (usize, usize), (left, right): (usize, usize), v: f64) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let fill = |hh: usize, ww: usize| -> Result<Tensor> {
        Ok(Tensor::full(v, (n, c, hh, ww), x.device())?.to_dtype(x.dtype())?)
    };
    let mut parts = Vec::new();
    if left > 0 {
        parts.push(fill(h, left)?);
    }
    parts.push(x.clone());
    if right > 0 {
        parts.push(fill(h, right)?);
    }
    let x = Tensor::cat(&parts, 3)?;
    let w2 = w + left + right;
    let mut parts = Vec::new();
    if top > 0 {
        parts.push(fill(top, w2)?);
    }
    parts.push(x);
    if bottom > 0 {
        parts.push(fill(bottom, w2)?);
    }
    Ok(Tensor::cat(&parts, 2)?)
}
