//! Convolution geometry, `im2col` and its adjoint `col2im`.
//!
//! For one image and one group, `cols[k, p]` with `k = (c, i, j)` (input channel of the group, kernel row,
//! kernel column) and `p = (oy, ox)` holds
//! `x[c, oy·s − pad + i·d, ox·s − pad + j·d]` (zero outside the image), so the convolution is the GEMM
//! `y_g[Cout_g, P] = W_g[Cout_g, K] · cols[K, P]`. `col2im` is the exact adjoint: it scatter-adds
//! `cols[k, p]` back to the input position it was read from.

use super::Float;
use candle_core::Result;

use super::ConvParams;

/// Resolved geometry of one convolution (NCHW input, `[Cout, Cin/groups, kh, kw]` weight).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geom {
    pub n: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
    pub dil: usize,
    pub groups: usize,
    pub oh: usize,
    pub ow: usize,
}

impl Geom {
    /// Validates shapes and parameters; `op` names the caller in error messages.
    pub fn new(
        op: &str,
        x: (usize, usize, usize, usize),
        wt: (usize, usize, usize, usize),
        cfg: ConvParams,
    ) -> Result<Self> {
        let (n, cin, h, w) = x;
        let (cout, cin_g, kh, kw) = wt;
        let ConvParams {
            stride,
            padding: pad,
            dilation: dil,
            groups,
        } = cfg;
        if stride == 0 || dil == 0 || groups == 0 || kh == 0 || kw == 0 {
            candle_core::bail!("{op}: stride, dilation, groups and kernel size must be ≥ 1 (got {cfg:?}, weight {wt:?})");
        }
        if cin != cin_g * groups || cout % groups != 0 {
            candle_core::bail!(
                "{op}: input {x:?} and weight {wt:?} do not match groups = {groups} (need Cin = Cin_g·groups, Cout % groups = 0)"
            );
        }
        let (eh, ew) = (dil * (kh - 1) + 1, dil * (kw - 1) + 1);
        if h + 2 * pad < eh || w + 2 * pad < ew {
            candle_core::bail!(
                "{op}: padded input {}x{} smaller than the dilated kernel {eh}x{ew} (input {x:?}, weight {wt:?}, {cfg:?})",
                h + 2 * pad,
                w + 2 * pad
            );
        }
        let oh = (h + 2 * pad - eh) / stride + 1;
        let ow = (w + 2 * pad - ew) / stride + 1;
        Ok(Self {
            n,
            cin,
            h,
            w,
            cout,
            kh,
            kw,
            stride,
            pad,
            dil,
            groups,
            oh,
            ow,
        })
    }
    pub fn cin_g(&self) -> usize {
        self.cin / self.groups
    }
    pub fn cout_g(&self) -> usize {
        self.cout / self.groups
    }
    /// GEMM depth of one group: `Cin_g · kh · kw`.
    pub fn kg(&self) -> usize {
        self.cin_g() * self.kh * self.kw
    }
    /// Output pixels per image.
    pub fn p(&self) -> usize {
        self.oh * self.ow
    }
    /// Input elements per image.
    pub fn in_len(&self) -> usize {
        self.cin * self.h * self.w
    }
    /// Output elements per image.
    pub fn out_len(&self) -> usize {
        self.cout * self.p()
    }
    /// A 1×1, stride-1, unpadded conv: `cols` is the input itself, no im2col needed.
    pub fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.pad == 0
    }
    /// Output index range `[lo, hi)` along an axis whose input position `o·s + k·d − pad` lies in `[0, len)`.
    #[inline]
    fn valid_range(&self, k: usize, len: usize, out: usize) -> (usize, usize) {
        let off = (k * self.dil) as isize - self.pad as isize; // input pos = o·s + off
        let s = self.stride as isize;
        let lo = if off >= 0 { 0 } else { ((-off) + s - 1) / s };
        let last = len as isize - 1 - off; // need o·s ≤ last
        let hi = if last < 0 { 0 } else { last / s + 1 };
        let lo = (lo as usize).min(out);
        (lo, (hi as usize).clamp(lo, out))
    }
}

/// Splits a cols row index `k` into `(c, ki, kj)`.
#[inline]
pub(crate) fn split_k(g: &Geom, k: usize) -> (usize, usize, usize) {
    (k / (g.kh * g.kw), (k / g.kw) % g.kh, k % g.kw)
}

/// Fills one cols row (`row` = `[oh·ow]`) for kernel tap `(ki, kj)` from one input channel plane `[H, W]`.
pub(crate) fn fill_row<T: Float>(g: &Geom, plane: &[T], ki: usize, kj: usize, row: &mut [T]) {
    let (w, ow, s) = (g.w, g.ow, g.stride);
    let (ylo, yhi) = g.valid_range(ki, g.h, g.oh);
    let (xlo, xhi) = g.valid_range(kj, w, ow);
    row[..ylo * ow].fill(T::zero());
    row[yhi * ow..].fill(T::zero());
    if xhi == xlo {
        row[ylo * ow..yhi * ow].fill(T::zero());
        return;
    }
    for oy in ylo..yhi {
        let iy = oy * s + ki * g.dil - g.pad;
        let src = &plane[iy * w..(iy + 1) * w];
        let seg = &mut row[oy * ow..(oy + 1) * ow];
        seg[..xlo].fill(T::zero());
        seg[xhi..].fill(T::zero());
        let ix0 = xlo * s + kj * g.dil - g.pad;
        if s == 1 {
            seg[xlo..xhi].copy_from_slice(&src[ix0..ix0 + (xhi - xlo)]);
        } else {
            for (d, v) in seg[xlo..xhi].iter_mut().zip(src[ix0..].iter().step_by(s)) {
                *d = *v;
            }
        }
    }
}

/// Adjoint of [`fill_row`]: adds one cols row back into the input channel plane it was read from.
pub(crate) fn scatter_row<T: Float>(g: &Geom, row: &[T], ki: usize, kj: usize, plane: &mut [T]) {
    let (w, ow, s) = (g.w, g.ow, g.stride);
    let (ylo, yhi) = g.valid_range(ki, g.h, g.oh);
    let (xlo, xhi) = g.valid_range(kj, w, ow);
    if xhi == xlo {
        return;
    }
    for oy in ylo..yhi {
        let iy = oy * s + ki * g.dil - g.pad;
        let dst = &mut plane[iy * w..(iy + 1) * w];
        let seg = &row[oy * ow + xlo..oy * ow + xhi];
        let ix0 = xlo * s + kj * g.dil - g.pad;
        if s == 1 {
            for (d, v) in dst[ix0..ix0 + seg.len()].iter_mut().zip(seg) {
                *d += *v;
            }
        } else {
            for (d, v) in dst[ix0..].iter_mut().step_by(s).zip(seg) {
                *d += *v;
            }
        }
    }
}

/// Writes `cols [Cin_g·kh·kw, oh·ow]` for one group of one image (`x` = `[Cin_g, H, W]`).
pub(crate) fn im2col<T: Float>(g: &Geom, x: &[T], cols: &mut [T]) {
    let hw = g.h * g.w;
    debug_assert_eq!(x.len(), g.cin_g() * hw);
    debug_assert_eq!(cols.len(), g.kg() * g.p());
    for (k, row) in cols.chunks_exact_mut(g.p()).enumerate() {
        let (c, ki, kj) = split_k(g, k);
        fill_row(g, &x[c * hw..(c + 1) * hw], ki, kj, row);
    }
}

/// Adjoint of [`im2col`]: `dx[c, iy, ix] += cols[(c, i, j), (oy, ox)]` for every in-image tap
/// (`dx` = `[Cin_g, H, W]` of one group of one image).
pub(crate) fn col2im<T: Float>(g: &Geom, cols: &[T], dx: &mut [T]) {
    let hw = g.h * g.w;
    debug_assert_eq!(dx.len(), g.cin_g() * hw);
    debug_assert_eq!(cols.len(), g.kg() * g.p());
    for (k, row) in cols.chunks_exact(g.p()).enumerate() {
        let (c, ki, kj) = split_k(g, k);
        scatter_row(g, row, ki, kj, &mut dx[c * hw..(c + 1) * hw]);
    }
}
