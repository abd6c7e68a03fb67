//! Direct depthwise convolution (`groups = Cin = Cout`, at most 9 kernel taps, any stride, padding and
//! dilation): forward, input gradient and weight gradient, one (image, channel) plane at a time, parallel over
//! the planes. No im2col: every output pixel reads its taps straight from a copy of the input plane.
//!
//! **Polyphase layout.** The zero-padded input plane (`H + 2p` × `W + 2p`) is split into `s²` phase planes
//! (`s` = stride), phase `(a, b)` holding the padded pixels at rows `≡ a`, columns `≡ b (mod s)`, each
//! `hq × wq` = `⌈(H + 2p)/s⌉ × ⌈(W + 2p)/s⌉`. Kernel tap `(i, j)` of output `(oy, ox)` reads padded pixel
//! `(oy·s + i·d, ox·s + j·d)`, which is element `(oy + ⌊id/s⌋)·wq + ox + ⌊jd/s⌋` of phase `(id mod s, jd mod s)`.
//! Numbering the outputs `q = oy·wq + ox` (rows `wq` apart; the `wq − ow` columns past each row are computed
//! and dropped), tap `t` reads its phase plane at `q + off_t`: the whole plane is one long loop of
//! `y[q] = Σ_t w_t · phase_t[q + off_t]` over contiguous slices, vectorised across rows and row ends alike
//! (on 10² maps a row is shorter than two vectors).
//!
//! - Input gradient: the adjoint, as a gather per phase plane, `dphase[r] = Σ_{t in the phase} w_t ·
//!   dy[r − off_t]`, over a copy of `dy` laid out with rows `wq` apart, zeros between the rows and before and
//!   after them; then the phase planes are interleaved back into `dx`, dropping the padding.
//! - Weight gradient: `dw_t = Σ_q dy[q] · phase_t[q + off_t]`, the nine dot products in one pass over the
//!   plane, summed over the batch in f64.
//!
//! The loops run in an AVX2 + FMA copy where the CPU has them (`simd_dispatch!`).

use std::array::from_fn;

use rayon::prelude::*;

use super::im2col::Geom;
use super::Float;

/// Kernel taps the depthwise kernels handle (a 3×3 kernel).
const MAX_TAPS: usize = 9;

/// Whether `g` is a depthwise convolution the kernels here run: one input and one output channel per group,
/// at most [`MAX_TAPS`] kernel taps.
pub(crate) fn fits(g: &Geom) -> bool {
    g.groups == g.cin && g.cout == g.cin && g.kh * g.kw <= MAX_TAPS
}

/// The polyphase geometry of one plane (see the module docs).
struct Plan {
    s: usize,
    pad: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    hq: usize,
    wq: usize,
    /// Flat output span `(oh − 1)·wq + ow`.
    len: usize,
    nt: usize,
    /// Phase plane (`a·s + b`) and flat offset of each tap, `t = i·kw + j`.
    phase: [usize; MAX_TAPS],
    off: [usize; MAX_TAPS],
    /// The largest tap offset: zeros before `dy` in the input gradient's copy of it.
    margin: usize,
}

impl Plan {
    fn new(g: &Geom) -> Self {
        let s = g.stride;
        let (hq, wq) = ((g.h + 2 * g.pad).div_ceil(s), (g.w + 2 * g.pad).div_ceil(s));
        let (mut phase, mut off) = ([0; MAX_TAPS], [0; MAX_TAPS]);
        for i in 0..g.kh {
            for j in 0..g.kw {
                let (di, dj) = (i * g.dil, j * g.dil);
                phase[i * g.kw + j] = (di % s) * s + dj % s;
                off[i * g.kw + j] = (di / s) * wq + dj / s;
            }
        }
        let nt = g.kh * g.kw;
        let margin = off[..nt].iter().copied().max().unwrap_or(0);
        let len = (g.oh - 1) * wq + g.ow;
        Self { s, pad: g.pad, h: g.h, w: g.w, oh: g.oh, ow: g.ow, hq, wq, len, nt, phase, off, margin }
    }
    fn plane(&self) -> usize {
        self.hq * self.wq
    }
    /// All phase planes of one image plane.
    fn phases_len(&self) -> usize {
        self.s * self.s * self.plane()
    }
    /// `dy` with rows `wq` apart behind `margin` zeros (see [`fill_dy`]).
    fn dyz_len(&self) -> usize {
        self.margin + self.plane()
    }
    /// The first `ix` with `(ix + pad) mod s = b`, if inside the row, and its column in phase `b`.
    fn first_col(&self, b: usize) -> Option<(usize, usize)> {
        let ix0 = (b + self.s - self.pad % self.s) % self.s;
        (ix0 < self.w).then(|| (ix0, (ix0 + self.pad) / self.s))
    }
    /// Planes per parallel task: at least ~16 Ki multiply-adds each.
    fn min_planes(&self) -> usize {
        (16384 / (self.oh * self.ow * self.nt).max(1)).max(1)
    }
}

/// The phase planes of one input plane `x [H, W]` (zero padding included) into `ph`.
#[inline(always)]
fn split_phases<T: Float>(pl: &Plan, x: &[T], ph: &mut [T]) {
    ph.fill(T::zero());
    if pl.w == 0 {
        return;
    }
    let (s, plane) = (pl.s, pl.plane());
    for (iy, row) in x.chunks_exact(pl.w).enumerate() {
        let (a, r) = ((iy + pl.pad) % s, (iy + pl.pad) / s);
        for b in 0..s {
            let Some((ix0, c0)) = pl.first_col(b) else { continue };
            let dst = &mut ph[(a * s + b) * plane + r * pl.wq + c0..];
            if s == 1 {
                dst[..pl.w].copy_from_slice(row);
            } else {
                for (d, v) in dst.iter_mut().zip(row[ix0..].iter().step_by(s)) {
                    *d = *v;
                }
            }
        }
    }
}

/// Adjoint layout of [`split_phases`]: `dx [H, W]` read back from the phase planes (padding dropped).
#[inline(always)]
fn merge_phases<T: Float>(pl: &Plan, ph: &[T], dx: &mut [T]) {
    if pl.w == 0 {
        return;
    }
    let (s, plane) = (pl.s, pl.plane());
    for (iy, row) in dx.chunks_exact_mut(pl.w).enumerate() {
        let (a, r) = ((iy + pl.pad) % s, (iy + pl.pad) / s);
        for b in 0..s {
            let Some((ix0, c0)) = pl.first_col(b) else { continue };
            let src = &ph[(a * s + b) * plane + r * pl.wq + c0..];
            if s == 1 {
                row.copy_from_slice(&src[..pl.w]);
            } else {
                for (d, v) in row[ix0..].iter_mut().step_by(s).zip(src) {
                    *d = *v;
                }
            }
        }
    }
}

/// `dy [oh, ow]` into `dyz` with rows `wq` apart after `margin` zeros, zeros everywhere else.
#[inline(always)]
fn fill_dy<T: Float>(pl: &Plan, dy: &[T], dyz: &mut [T]) {
    dyz.fill(T::zero());
    for (oy, row) in dy.chunks_exact(pl.ow).enumerate() {
        dyz[pl.margin + oy * pl.wq..][..pl.ow].copy_from_slice(row);
    }
}

/// `dst[q] = Σ_t w_t · src_t[q]` (each `src_t` at least as long as `dst`).
#[inline(always)]
fn stencil<T: Float, const N: usize>(dst: &mut [T], src: [&[T]; N], w: [T; N]) {
    let n = dst.len();
    let src = src.map(|s| &s[..n]);
    for q in 0..n {
        let mut acc = src[0][q] * w[0];
        for t in 1..N {
            acc = src[t][q].mul_add_(w[t], acc);
        }
        dst[q] = acc;
    }
}

/// [`stencil`] for `src.len()` ∈ 0..=9 terms (none: zeros).
#[inline(always)]
fn stencil_n<T: Float>(dst: &mut [T], src: &[&[T]], w: &[T]) {
    macro_rules! by_count {
        ($($n:literal)*) => {
            match src.len() {
                $($n => stencil::<T, $n>(dst, from_fn(|t| src[t]), from_fn(|t| w[t])),)*
                _ => dst.fill(T::zero()),
            }
        };
    }
    by_count!(1 2 3 4 5 6 7 8 9)
}

/// Accumulator lanes of [`dots`].
const LANES: usize = 8;

/// `out[t] = Σ_q a[q] · src_t[q]` for every `t` in one pass over `a`: [`LANES`] partial sums per tap in `T`
/// (vectorised; fixed order, so deterministic), then f64.
#[inline(always)]
fn dots<T: Float, const N: usize>(a: &[T], src: [&[T]; N], out: &mut [f64]) {
    let n = a.len();
    let src = src.map(|s| &s[..n]);
    let mut acc = [[T::zero(); LANES]; N];
    let main = n / LANES * LANES;
    for q0 in (0..main).step_by(LANES) {
        let av = &a[q0..q0 + LANES];
        for t in 0..N {
            let sv = &src[t][q0..q0 + LANES];
            for l in 0..LANES {
                acc[t][l] = av[l].mul_add_(sv[l], acc[t][l]);
            }
        }
    }
    for t in 0..N {
        let mut sum: f64 = acc[t].iter().map(|v| v.to_f64_()).sum();
        for q in main..n {
            sum += (a[q] * src[t][q]).to_f64_();
        }
        out[t] = sum;
    }
}

/// [`dots`] for `src.len()` ∈ 1..=9 taps.
#[inline(always)]
fn dots_n<T: Float>(a: &[T], src: &[&[T]], out: &mut [f64]) {
    macro_rules! by_count {
        ($($n:literal)*) => {
            match src.len() {
                $($n => dots::<T, $n>(a, from_fn(|t| src[t]), out),)*
                _ => out.fill(0.0),
            }
        };
    }
    by_count!(1 2 3 4 5 6 7 8 9)
}

/// The phase-plane slices each tap of the forward reads, `len` long (unused entries empty).
#[inline(always)]
fn tap_slices<'a, T>(pl: &Plan, ph: &'a [T]) -> [&'a [T]; MAX_TAPS] {
    from_fn(|t| if t < pl.nt { &ph[pl.phase[t] * pl.plane() + pl.off[t]..][..pl.len] } else { &ph[..0] })
}

simd_dispatch! {
    /// Forward of one plane: `y [oh, ow]` from `x [H, W]` and the plane's kernel `w [kh·kw]`; `buf` is
    /// scratch of `phases_len + len` elements.
    fn forward_plane[T: Float](pl: &Plan, x: &[T], w: &[T], y: &mut [T], buf: &mut [T]) => forward_plane_body::<T>
}

#[inline(always)]
fn forward_plane_body<T: Float>(pl: &Plan, x: &[T], w: &[T], y: &mut [T], buf: &mut [T]) {
    let (ph, tmp) = buf.split_at_mut(pl.phases_len());
    split_phases(pl, x, ph);
    let src = tap_slices(pl, ph);
    if pl.wq == pl.ow {
        stencil_n(&mut y[..pl.len], &src[..pl.nt], &w[..pl.nt]);
        return;
    }
    stencil_n(&mut tmp[..pl.len], &src[..pl.nt], &w[..pl.nt]);
    for (oy, row) in y.chunks_exact_mut(pl.ow).enumerate() {
        row.copy_from_slice(&tmp[oy * pl.wq..][..pl.ow]);
    }
}

simd_dispatch! {
    /// Input gradient of one plane: `dx [H, W]` from `dy [oh, ow]` and `w [kh·kw]`; `buf` is scratch of
    /// `phases_len + dyz_len` elements.
    fn grad_input_plane[T: Float](pl: &Plan, dy: &[T], w: &[T], dx: &mut [T], buf: &mut [T]) => grad_input_plane_body::<T>
}

#[inline(always)]
fn grad_input_plane_body<T: Float>(pl: &Plan, dy: &[T], w: &[T], dx: &mut [T], buf: &mut [T]) {
    let (dph, dyz) = buf.split_at_mut(pl.phases_len());
    let dyz = &mut dyz[..pl.dyz_len()];
    fill_dy(pl, dy, dyz);
    let (s, plane, wq) = (pl.s, pl.plane(), pl.wq);
    for phi in 0..s * s {
        // Rows of this phase that hold image pixels: r·s + a ∈ [pad, pad + H).
        let a = phi / s;
        let r0 = pl.pad.saturating_sub(a).div_ceil(s);
        let r1 = (pl.pad + pl.h).saturating_sub(a).div_ceil(s).min(pl.hq);
        if r1 <= r0 {
            continue;
        }
        let (lo, hi) = (r0 * wq, r1 * wq);
        let (mut src, mut ws, mut k) = ([&dyz[..0]; MAX_TAPS], [T::zero(); MAX_TAPS], 0);
        for t in 0..pl.nt {
            if pl.phase[t] == phi {
                src[k] = &dyz[pl.margin - pl.off[t] + lo..][..hi - lo];
                ws[k] = w[t];
                k += 1;
            }
        }
        stencil_n(&mut dph[phi * plane + lo..phi * plane + hi], &src[..k], &ws[..k]);
    }
    merge_phases(pl, dph, dx);
}

simd_dispatch! {
    /// Weight gradient of one plane: `out[t] = Σ dy · x` at tap `t` (f64); `buf` is scratch of
    /// `phases_len + dyz_len` elements.
    fn grad_weight_plane[T: Float](pl: &Plan, x: &[T], dy: &[T], out: &mut [f64], buf: &mut [T]) => grad_weight_plane_body::<T>
}

#[inline(always)]
fn grad_weight_plane_body<T: Float>(pl: &Plan, x: &[T], dy: &[T], out: &mut [f64], buf: &mut [T]) {
    let (ph, dyz) = buf.split_at_mut(pl.phases_len());
    let dyz = &mut dyz[..pl.dyz_len()];
    split_phases(pl, x, ph);
    fill_dy(pl, dy, dyz);
    let src = tap_slices(pl, ph);
    dots_n(&dyz[pl.margin..][..pl.len], &src[..pl.nt], out);
}

/// `y [N, C, oh, ow]` from `x [N, C, H, W]` and `w [C, 1, kh, kw]`.
pub(crate) fn forward<T: Float>(g: &Geom, x: &[T], w: &[T]) -> Vec<T> {
    let pl = Plan::new(g);
    let (hw, p, c, nt) = (g.h * g.w, g.p(), g.cin, pl.nt);
    let mut y = vec![T::zero(); g.n * c * p];
    y.par_chunks_mut(p).zip(x.par_chunks(hw.max(1))).enumerate().with_min_len(pl.min_planes()).for_each(
        |(i, (yp, xp))| {
            let wc = &w[(i % c) * nt..][..nt];
            T::with_scratch(pl.phases_len() + pl.len, |buf| forward_plane(&pl, xp, wc, yp, buf));
        },
    );
    y
}

/// `dx [N, C, H, W]` from `dy [N, C, oh, ow]` and `w`.
pub(crate) fn grad_input<T: Float>(g: &Geom, dy: &[T], w: &[T]) -> Vec<T> {
    let pl = Plan::new(g);
    let (hw, p, c, nt) = (g.h * g.w, g.p(), g.cin, pl.nt);
    let mut dx = vec![T::zero(); g.n * c * hw];
    dx.par_chunks_mut(hw.max(1)).zip(dy.par_chunks(p)).enumerate().with_min_len(pl.min_planes()).for_each(
        |(i, (dxp, dyp))| {
            let wc = &w[(i % c) * nt..][..nt];
            T::with_scratch(pl.phases_len() + pl.dyz_len(), |buf| grad_input_plane(&pl, dyp, wc, dxp, buf));
        },
    );
    dx
}

/// `dw [C, 1, kh, kw]` from `x` and `dy`: per-plane sums in parallel, then summed over the batch in f64.
pub(crate) fn grad_weight<T: Float>(g: &Geom, x: &[T], dy: &[T]) -> Vec<T> {
    let pl = Plan::new(g);
    let (hw, p, c, nt) = (g.h * g.w, g.p(), g.cin, pl.nt);
    let mut part = vec![0f64; g.n * c * nt];
    if hw > 0 {
        part.par_chunks_mut(nt).zip(x.par_chunks(hw).zip(dy.par_chunks(p))).with_min_len(pl.min_planes()).for_each(
            |(o, (xp, dyp))| {
                T::with_scratch(pl.phases_len() + pl.dyz_len(), |buf| grad_weight_plane(&pl, xp, dyp, o, buf));
            },
        );
    }
    let mut dw = vec![T::zero(); c * nt];
    for (ch, d) in dw.chunks_exact_mut(nt).enumerate() {
        for (t, v) in d.iter_mut().enumerate() {
            *v = T::from_f64_((0..g.n).map(|i| part[(i * c + ch) * nt + t]).sum());
        }
    }
    dw
}
