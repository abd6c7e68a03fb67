//! Convolution geometry, `im2col` and its adjoint `col2im`.
//!
//! For one image and one group, `cols[k, p]` with `k = (c, i, j)` (input channel of the group, kernel row,
//! kernel column) and `p = (oy, ox)` holds
//! `x[c, oy·s − pad + i·d, ox·s − pad + j·d]` (zero outside the image), so the convolution is the GEMM
//! `y_g[Cout_g, P] = W_g[Cout_g, K] · cols[K, P]`. `col2im` is the exact adjoint: it scatter-adds
//! `cols[k, p]` back to the input position it was read from.
//!
//! Kernel taps that fall outside the (padded) image for every output position contribute nothing (e.g.
//! dilation 12 or 18 on an 8² map leaves only the centre tap). [`Geom`] keeps only the smallest window of
//! kernel rows `ki0..ki0 + nki` and columns `kj0..kj0 + nkj` that holds every live tap, so `K` shrinks by up
//! to `kh·kw`; the weight is gathered to that window ([`live_weight`]) and its gradient scattered back
//! ([`expand_weight_grad`]), zero on the dead taps.

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
    /// Live kernel window: rows `ki0..ki0 + nki`, columns `kj0..kj0 + nkj`.
    pub ki0: usize,
    pub nki: usize,
    pub kj0: usize,
    pub nkj: usize,
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
        let ConvParams { stride, padding: pad, dilation: dil, groups } = cfg;
        if stride == 0 || dil == 0 || groups == 0 || kh == 0 || kw == 0 {
            candle_core::bail!(
                "{op}: stride, dilation, groups and kernel size must be ≥ 1 (got {cfg:?}, weight {wt:?})"
            );
        }
        if cin_g == 0 || h == 0 || w == 0 {
            candle_core::bail!("{op}: empty input channels or image (input {x:?}, weight {wt:?}): nothing to convolve");
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
        let mut g =
            Self { n, cin, h, w, cout, kh, kw, stride, pad, dil, groups, oh, ow, ki0: 0, nki: kh, kj0: 0, nkj: kw };
        let g0 = g;
        let live = |len: usize, out: usize, k: usize| {
            let live: Vec<usize> = (0..k)
                .filter(|&t| {
                    let (lo, hi) = g0.valid_range(t, len, out);
                    hi > lo
                })
                .collect();
            match (live.first(), live.last()) {
                (Some(&a), Some(&b)) => (a, b + 1 - a),
                _ => (0, 0),
            }
        };
        (g.ki0, g.nki) = live(h, oh, kh);
        (g.kj0, g.nkj) = live(w, ow, kw);
        Ok(g)
    }
    /// Whether the live window is the whole kernel.
    pub fn full_window(&self) -> bool {
        self.nki == self.kh && self.nkj == self.kw
    }
    pub fn cin_g(&self) -> usize {
        self.cin / self.groups
    }
    pub fn cout_g(&self) -> usize {
        self.cout / self.groups
    }
    /// GEMM depth of one group over the live kernel window: `Cin_g · nki · nkj`.
    pub fn kg(&self) -> usize {
        self.cin_g() * self.nki * self.nkj
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
    pub(crate) fn valid_range(&self, k: usize, len: usize, out: usize) -> (usize, usize) {
        let off = (k * self.dil) as isize - self.pad as isize; // input pos = o·s + off
        let s = self.stride as isize;
        let lo = if off >= 0 { 0 } else { ((-off) + s - 1) / s };
        let last = len as isize - 1 - off; // need o·s ≤ last
        let hi = if last < 0 { 0 } else { last / s + 1 };
        let lo = (lo as usize).min(out);
        (lo, (hi as usize).clamp(lo, out))
    }
}

/// Splits a cols row index `k` into `(c, ki, kj)` (kernel indices within the full kernel).
#[inline]
pub(crate) fn split_k(g: &Geom, k: usize) -> (usize, usize, usize) {
    (k / (g.nki * g.nkj), g.ki0 + (k / g.nkj) % g.nki, g.kj0 + k % g.nkj)
}

/// The weight `[Cout, Cin_g, kh, kw]` restricted to the live window, `[Cout, Cin_g, nki, nkj]` (borrowed when
/// the window is the whole kernel).
pub(crate) fn live_weight<'a, T: Float>(g: &Geom, w: &'a [T]) -> std::borrow::Cow<'a, [T]> {
    if g.full_window() {
        return std::borrow::Cow::Borrowed(w);
    }
    let mut out = Vec::with_capacity(g.cout * g.kg());
    for oc in 0..g.cout * g.cin_g() {
        for ki in g.ki0..g.ki0 + g.nki {
            let row = (oc * g.kh + ki) * g.kw;
            out.extend_from_slice(&w[row + g.kj0..row + g.kj0 + g.nkj]);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Scatters a live-window weight gradient `[Cout, Cin_g, nki, nkj]` into the full `[Cout, Cin_g, kh, kw]`
/// (zero on dead taps).
pub(crate) fn expand_weight_grad<T: Float>(g: &Geom, dw: Vec<T>) -> Vec<T> {
    if g.full_window() {
        return dw;
    }
    let mut out = vec![T::zero(); g.cout * g.cin_g() * g.kh * g.kw];
    if g.nki * g.nkj == 0 {
        return out;
    }
    for (oc, src) in dw.chunks_exact(g.nki * g.nkj).enumerate() {
        for (a, seg) in src.chunks_exact(g.nkj).enumerate() {
            let row = (oc * g.kh + g.ki0 + a) * g.kw + g.kj0;
            out[row..row + g.nkj].copy_from_slice(seg);
        }
    }
    out
}

/// How one kernel tap fills its `cols` row from an input channel plane `[H, W]` for the output rows `oy0..oy1`
/// (`row` = `[(oy1 − oy0)·ow]`): the valid ranges are computed once per tap and band and applied to every
/// channel plane and image, not once per plane (on 8² maps a row is 64 values, and the divisions cost about as
/// much as the copy).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TapFill {
    tap: (usize, usize),
    band: (usize, usize),
    /// Output rows `ylo..yhi` (inside the band) whose tap row lies in the image.
    rows: (usize, usize),
    /// Output columns `xlo..xhi` whose tap column lies in the image.
    cols: (usize, usize),
}

impl TapFill {
    pub(crate) fn new(g: &Geom, (ki, kj): (usize, usize), (oy0, oy1): (usize, usize)) -> Self {
        let (ylo, yhi) = g.valid_range(ki, g.h, g.oh);
        let rows = (ylo.clamp(oy0, oy1), yhi.clamp(oy0, oy1));
        Self { tap: (ki, kj), band: (oy0, oy1), rows, cols: g.valid_range(kj, g.w, g.ow) }
    }

    /// One per live kernel tap, in the order of a channel's `cols` rows (`k mod nki·nkj`).
    pub(crate) fn all(g: &Geom, band: (usize, usize)) -> Vec<Self> {
        (0..g.nki * g.nkj)
            .map(|t| {
                let (_, ki, kj) = split_k(g, t);
                Self::new(g, (ki, kj), band)
            })
            .collect()
    }

    /// Writes the cols row of this tap and band from one channel plane.
    #[inline]
    pub(crate) fn apply<T: Float>(&self, g: &Geom, plane: &[T], row: &mut [T]) {
        let (w, ow, s) = (g.w, g.ow, g.stride);
        let ((ki, kj), (oy0, _), (ylo, yhi), (xlo, xhi)) = (self.tap, self.band, self.rows, self.cols);
        row[..(ylo - oy0) * ow].fill(T::zero());
        row[(yhi - oy0) * ow..].fill(T::zero());
        if xhi == xlo {
            row[(ylo - oy0) * ow..(yhi - oy0) * ow].fill(T::zero());
            return;
        }
        if s == 1 && ow == w {
            return self.fill_shifted(g, plane, &mut row[(ylo - oy0) * ow..(yhi - oy0) * ow]);
        }
        for oy in ylo..yhi {
            let iy = oy * s + ki * g.dil - g.pad;
            let src = &plane[iy * w..(iy + 1) * w];
            let seg = &mut row[(oy - oy0) * ow..(oy - oy0 + 1) * ow];
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

    /// Adjoint of [`TapFill::apply`]: adds the cols row back into the channel plane it was read from.
    #[inline]
    pub(crate) fn scatter<T: Float>(&self, g: &Geom, row: &[T], plane: &mut [T]) {
        let (w, ow, s) = (g.w, g.ow, g.stride);
        let ((ki, kj), (oy0, _), (ylo, yhi), (xlo, xhi)) = (self.tap, self.band, self.rows, self.cols);
        if xhi == xlo {
            return;
        }
        for oy in ylo..yhi {
            let iy = oy * s + ki * g.dil - g.pad;
            let dst = &mut plane[iy * w..(iy + 1) * w];
            let r = (oy - oy0) * ow;
            let seg = &row[r + xlo..r + xhi];
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

    /// [`TapFill::apply`] for stride 1 and `ow = w` (a "same" convolution), the output rows `ylo..yhi` that all
    /// read the image (`dst`, whole rows): the rows are one shifted copy of the plane,
    /// `dst[j] = plane[j + di·w + dj]` with `(di, dj)` the tap's offset, after which the columns whose tap falls
    /// left or right of the image (wrapped in from the neighbouring row) are zeroed. On 8-pixel-wide maps this
    /// replaces 8-element copies and fills, one per row, by one copy.
    #[inline]
    fn fill_shifted<T: Float>(&self, g: &Geom, plane: &[T], dst: &mut [T]) {
        let w = g.w;
        let ((ki, kj), (ylo, _), (xlo, xhi)) = (self.tap, self.rows, self.cols);
        let start = ((ylo + ki * g.dil) * w + kj * g.dil) as isize - (g.pad * (w + 1)) as isize;
        let (lo, hi) = ((-start).max(0) as usize, dst.len().min((plane.len() as isize - start).max(0) as usize));
        if lo < hi {
            dst[lo..hi].copy_from_slice(&plane[(start + lo as isize) as usize..(start + hi as isize) as usize]);
        }
        if xlo > 0 || xhi < w {
            for seg in dst.chunks_exact_mut(w) {
                seg[..xlo].iter_mut().for_each(|v| *v = T::zero());
                seg[xhi..].iter_mut().for_each(|v| *v = T::zero());
            }
        }
    }
}

/// Writes `cols [Cin_g·nki·nkj, (oy1 − oy0)·ow]` for one group of one image (`x` = `[Cin_g, H, W]`),
/// output rows `oy0..oy1`.
pub(crate) fn im2col<T: Float>(g: &Geom, x: &[T], band: (usize, usize), cols: &mut [T]) {
    let (hw, pb) = (g.h * g.w, (band.1 - band.0) * g.ow);
    debug_assert_eq!(x.len(), g.cin_g() * hw);
    debug_assert_eq!(cols.len(), g.kg() * pb);
    if pb == 0 {
        return;
    }
    let fills = TapFill::all(g, band);
    for (k, row) in cols.chunks_exact_mut(pb).enumerate() {
        let c = k / fills.len();
        fills[k % fills.len()].apply(g, &x[c * hw..(c + 1) * hw], row);
    }
}

/// Adjoint of [`im2col`]: `dx[c, iy, ix] += cols[(c, i, j), (oy, ox)]` for every in-image tap
/// (`dx` = `[Cin_g, H, W]` of one group of one image; `cols` covers output rows `oy0..oy1`).
pub(crate) fn col2im<T: Float>(g: &Geom, cols: &[T], band: (usize, usize), dx: &mut [T]) {
    let (hw, pb) = (g.h * g.w, (band.1 - band.0) * g.ow);
    debug_assert_eq!(dx.len(), g.cin_g() * hw);
    debug_assert_eq!(cols.len(), g.kg() * pb);
    if pb == 0 {
        return;
    }
    let fills = TapFill::all(g, band);
    for (k, row) in cols.chunks_exact(pb).enumerate() {
        let c = k / fills.len();
        fills[k % fills.len()].scatter(g, row, &mut dx[c * hw..(c + 1) * hw]);
    }
}
