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
//! - Weight gradient: `dw_t = Σ_q dy[q] · phase_t[q + off_t]`, one dot product per tap over the plane, summed
//!   over the batch in f64.
//!
//! The loops run in an AVX2 + FMA copy where the CPU has them (`simd_dispatch!`).

use std::array::from_fn;
use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::im2col::Geom;
use super::{new_filled, Float};

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
    /// Stride 2, phase row `r`: `(phase column b, start)` in the phase plane row of the even columns
    /// `ix = 0, 2, …` and of the odd ones (offsets from the start of the row's pair of phase planes).
    fn pair_cols(&self, r: usize) -> ((usize, usize), (usize, usize)) {
        let b_even = self.pad % 2;
        let (c_even, c_odd) = (self.pad / 2, self.pad.div_ceil(2));
        ((b_even, r * self.wq + c_even), (1 - b_even, r * self.wq + c_odd))
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
        let ph = &mut ph[a * s * plane..(a + 1) * s * plane];
        if s == 2 {
            let (e, o) = pl.pair_cols(r);
            let (p0, p1) = ph.split_at_mut(plane);
            let (ev, od) = if e.0 == 0 { (&mut p0[e.1..], &mut p1[o.1..]) } else { (&mut p1[e.1..], &mut p0[o.1..]) };
            // One pass over the row, even and odd columns together: vector loads and shuffles.
            for ((pair, ve), vo) in row.chunks_exact(2).zip(ev.iter_mut()).zip(od.iter_mut()) {
                (*ve, *vo) = (pair[0], pair[1]);
            }
            if pl.w % 2 == 1 {
                ev[pl.w / 2] = row[pl.w - 1];
            }
            continue;
        }
        for b in 0..s {
            let Some((ix0, c0)) = pl.first_col(b) else { continue };
            let dst = &mut ph[b * plane + r * pl.wq + c0..];
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

/// Adjoint layout of [`split_phases`]: `dx [H, W]` (every element written) read back from the phase planes
/// (padding dropped).
#[inline(always)]
fn merge_phases<T: Float>(pl: &Plan, ph: &[T], dx: &mut [MaybeUninit<T>]) {
    if pl.w == 0 {
        return;
    }
    let (s, plane) = (pl.s, pl.plane());
    for (iy, row) in dx.chunks_exact_mut(pl.w).enumerate() {
        let (a, r) = ((iy + pl.pad) % s, (iy + pl.pad) / s);
        let ph = &ph[a * s * plane..(a + 1) * s * plane];
        if s == 2 {
            let (e, o) = pl.pair_cols(r);
            let (ev, od) = (&ph[e.0 * plane + e.1..], &ph[o.0 * plane + o.1..]);
            for ((pair, ve), vo) in row.chunks_exact_mut(2).zip(ev).zip(od) {
                pair[0].write(*ve);
                pair[1].write(*vo);
            }
            if pl.w % 2 == 1 {
                row[pl.w - 1].write(ev[pl.w / 2]);
            }
            continue;
        }
        for b in 0..s {
            let Some((ix0, c0)) = pl.first_col(b) else { continue };
            let src = &ph[b * plane + r * pl.wq + c0..];
            if s == 1 {
                for (d, v) in row.iter_mut().zip(&src[..pl.w]) {
                    d.write(*v);
                }
            } else {
                for (d, v) in row[ix0..].iter_mut().step_by(s).zip(src) {
                    d.write(*v);
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

/// Accumulator lanes of [`dot`]: four AVX2 vectors of f32, enough independent chains to hide the FMA latency.
const LANES: usize = 32;
/// Lanes of [`dot`]'s second loop over what is left of a short plane.
const TAIL_LANES: usize = 8;

/// `Σ_q a[q] · b[q]`: [`LANES`] partial sums in `T` (vectorised; fixed order, so deterministic), then f64.
#[inline(always)]
fn dot<T: Float>(a: &[T], b: &[T]) -> f64 {
    let b = &b[..a.len()];
    let mut acc = [T::zero(); LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (xa, xb) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] = xa[l].mul_add_(xb[l], acc[l]);
        }
    }
    let mut tail = [T::zero(); TAIL_LANES];
    let (ta, tb) = (ra.chunks_exact(TAIL_LANES), rb.chunks_exact(TAIL_LANES));
    let (sa, sb) = (ta.remainder(), tb.remainder());
    for (xa, xb) in ta.zip(tb) {
        for l in 0..TAIL_LANES {
            tail[l] = xa[l].mul_add_(xb[l], tail[l]);
        }
    }
    let mut sum: f64 = acc.iter().chain(&tail).map(|v| v.to_f64_()).sum();
    for (x, y) in sa.iter().zip(sb) {
        sum += (*x * *y).to_f64_();
    }
    sum
}

/// The phase-plane slices each tap of the forward reads, `len` long (unused entries empty).
#[inline(always)]
fn tap_slices<'a, T>(pl: &Plan, ph: &'a [T]) -> [&'a [T]; MAX_TAPS] {
    from_fn(|t| if t < pl.nt { &ph[pl.phase[t] * pl.plane() + pl.off[t]..][..pl.len] } else { &ph[..0] })
}

simd_dispatch! {
    /// Forward of one plane: `y [oh, ow]` (every element written) from `x [H, W]` and the plane's kernel
    /// `w [kh·kw]`; `buf` is scratch of `phases_len + len` elements.
    fn forward_plane[T: Float](pl: &Plan, x: &[T], w: &[T], y: &mut [MaybeUninit<T>], buf: &mut [T]) => forward_plane_body::<T>
}

#[inline(always)]
fn forward_plane_body<T: Float>(pl: &Plan, x: &[T], w: &[T], y: &mut [MaybeUninit<T>], buf: &mut [T]) {
    let (ph, tmp) = buf.split_at_mut(pl.phases_len());
    split_phases(pl, x, ph);
    let src = tap_slices(pl, ph);
    stencil_n(&mut tmp[..pl.len], &src[..pl.nt], &w[..pl.nt]);
    for (oy, row) in y.chunks_exact_mut(pl.ow).enumerate() {
        for (d, v) in row.iter_mut().zip(&tmp[oy * pl.wq..][..pl.ow]) {
            d.write(*v);
        }
    }
}

/// The input gradient's phase planes (`dph`, rows holding image pixels only) from `dyz` (see [`fill_dy`]) and
/// the plane's kernel `w`, then interleaved into `dx [H, W]` (every element written).
#[inline(always)]
fn input_grad<T: Float>(pl: &Plan, dyz: &[T], w: &[T], dph: &mut [T], dx: &mut [MaybeUninit<T>]) {
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
    /// Input gradient of one plane: `dx [H, W]` from `dy [oh, ow]` and `w [kh·kw]`; `buf` is scratch of
    /// `phases_len + dyz_len` elements.
    fn grad_input_plane[T: Float](pl: &Plan, dy: &[T], w: &[T], dx: &mut [MaybeUninit<T>], buf: &mut [T]) => grad_input_plane_body::<T>
}

#[inline(always)]
fn grad_input_plane_body<T: Float>(pl: &Plan, dy: &[T], w: &[T], dx: &mut [MaybeUninit<T>], buf: &mut [T]) {
    let (dph, dyz) = buf.split_at_mut(pl.phases_len());
    let dyz = &mut dyz[..pl.dyz_len()];
    fill_dy(pl, dy, dyz);
    input_grad(pl, dyz, w, dph, dx);
}

simd_dispatch! {
    /// Weight gradient of one plane, `out[t] = Σ dy · x` at tap `t` (f64), and with `dx = Some(..)` its input
    /// gradient as [`grad_input_plane`] (`w` the plane's kernel) from the same copy of `dy`; `buf` is scratch
    /// of `2·phases_len + dyz_len` elements.
    fn backward_plane[T: Float](
        pl: &Plan, x: &[T], dy: &[T], w: &[T], out: &mut [f64], dx: Option<&mut [MaybeUninit<T>]>, buf: &mut [T],
    ) => backward_plane_body::<T>
}

#[inline(always)]
fn backward_plane_body<T: Float>(
    pl: &Plan,
    x: &[T],
    dy: &[T],
    w: &[T],
    out: &mut [f64],
    dx: Option<&mut [MaybeUninit<T>]>,
    buf: &mut [T],
) {
    let (ph, rest) = buf.split_at_mut(pl.phases_len());
    let (dph, dyz) = rest.split_at_mut(pl.phases_len());
    let dyz = &mut dyz[..pl.dyz_len()];
    split_phases(pl, x, ph);
    fill_dy(pl, dy, dyz);
    let a = &dyz[pl.margin..][..pl.len];
    for (t, o) in out.iter_mut().enumerate().take(pl.nt) {
        *o = dot(a, &ph[pl.phase[t] * pl.plane() + pl.off[t]..]);
    }
    if let Some(dx) = dx {
        input_grad(pl, dyz, w, dph, dx);
    }
}

/// A vector of `planes` planes of `len` elements (capacity for `spare` more), plane `i` written by
/// `fill(i, plane)`, which must write every element, and the values `fill` returned (parallel, at least
/// `min_planes` planes per task). No zero-fill: every output of the kernels here is written once.
fn planes_out<T: Float, R: Send>(
    (planes, len, spare): (usize, usize, usize),
    min_planes: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<T>]) -> R + Sync,
) -> (Vec<T>, Vec<R>) {
    if len == 0 {
        return (Vec::with_capacity(spare), (0..planes).into_par_iter().map(|i| fill(i, &mut [])).collect());
    }
    let mut side = Vec::new();
    let write = |out: &mut [MaybeUninit<T>]| {
        let planes = out.par_chunks_mut(len).enumerate().with_min_len(min_planes);
        side = planes.map(|(i, plane)| fill(i, plane)).collect();
    };
    // SAFETY: `fill` writes each of the `planes` chunks of `len` elements.
    (unsafe { new_filled(planes * len, planes * len + spare, write) }, side)
}

/// `y [N, C, oh, ow]` from `x [N, C, H, W]` and `w [C, 1, kh, kw]`.
pub(crate) fn forward<T: Float>(g: &Geom, x: &[T], w: &[T]) -> Vec<T> {
    let pl = Plan::new(g);
    let (hw, c, nt) = (g.h * g.w, g.cin, pl.nt);
    if hw == 0 {
        return vec![T::zero(); g.n * c * g.p()];
    }
    let (y, _) = planes_out((g.n * c, g.p(), 0), pl.min_planes(), |i, yp| {
        let (xp, wc) = (&x[i * hw..][..hw], &w[(i % c) * nt..][..nt]);
        T::with_scratch(pl.phases_len() + pl.len, |buf| forward_plane(&pl, xp, wc, yp, buf));
    });
    y
}

/// `dx [N, C, H, W]` from `dy [N, C, oh, ow]` and `w`.
pub(crate) fn grad_input<T: Float>(g: &Geom, dy: &[T], w: &[T]) -> Vec<T> {
    let pl = Plan::new(g);
    let (p, c, nt) = (g.p(), g.cin, pl.nt);
    let (dx, _) = planes_out((g.n * c, g.h * g.w, 0), pl.min_planes(), |i, dxp| {
        let (dyp, wc) = (&dy[i * p..][..p], &w[(i % c) * nt..][..nt]);
        T::with_scratch(pl.phases_len() + pl.dyz_len(), |buf| grad_input_plane(&pl, dyp, wc, dxp, buf));
    });
    dx
}

/// `dw [C, 1, kh, kw]` from `x` and `dy` and, when `w` is given, `dx` from the same pass over `dy`: per-plane
/// weight sums in parallel, then summed over the batch in f64. `dx` has capacity for `dw` after it.
pub(crate) fn backward<T: Float>(g: &Geom, x: &[T], dy: &[T], w: Option<&[T]>) -> (Vec<T>, Option<Vec<T>>) {
    let pl = Plan::new(g);
    let (hw, p, c, nt) = (g.h * g.w, g.p(), g.cin, pl.nt);
    let planes = g.n * c;
    let scratch = 2 * pl.phases_len() + pl.dyz_len();
    let plane_sums = |i: usize, dx: Option<&mut [MaybeUninit<T>]>| {
        let mut o = [0f64; MAX_TAPS];
        let (xp, dyp) = (&x[i * hw..][..hw], &dy[i * p..][..p]);
        let wc = w.map_or(&[][..], |w| &w[(i % c) * nt..][..nt]);
        T::with_scratch(scratch, |buf| backward_plane(&pl, xp, dyp, wc, &mut o, dx, buf));
        o
    };
    let (dx, part) = match w {
        Some(_) => {
            let (dx, part) = planes_out((planes, hw, c * nt), pl.min_planes(), |i, dxp| plane_sums(i, Some(dxp)));
            (Some(dx), part)
        }
        None => {
            (None, (0..planes).into_par_iter().with_min_len(pl.min_planes()).map(|i| plane_sums(i, None)).collect())
        }
    };
    let mut dw = vec![T::zero(); c * nt];
    for (ch, d) in dw.chunks_exact_mut(nt).enumerate() {
        for (t, v) in d.iter_mut().enumerate() {
            *v = T::from_f64_((0..g.n).map(|i| part[i * c + ch][t]).sum());
        }
    }
    (dw, dx)
}
