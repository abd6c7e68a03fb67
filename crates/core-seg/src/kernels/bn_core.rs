//! The per-channel arithmetic shared by the batch-norm kernels ([`super::batch_norm`], [`super::bn_act`]):
//! statistics, the backward's gradient sums and its elementwise `dx` pass. All loops are written so the compiler
//! vectorises them: lane-wise partial sums and selects instead of data-dependent branches.

use std::mem::MaybeUninit;

use candle_core::Layout;
use rayon::prelude::*;

use super::Float;

/// Per-channel statistics saved by the forward for the backward.
#[derive(Debug, Clone)]
pub(super) struct Stats {
    pub mean: Vec<f64>,
    pub var: Vec<f64>,
    pub invstd: Vec<f64>,
}

/// `(N, C, S)` of a layout.
pub(super) fn ncs(l: &Layout) -> (usize, usize, usize) {
    let d = l.dims();
    let s = d[2..].iter().product();
    (d[0], d[1], s)
}

/// Per-channel batch mean and biased variance of `x [N, C, S]` (f64, one pass over values shifted by the
/// channel's first value so that `Σd²/M − (Σd/M)²` does not cancel catastrophically).
pub(super) fn batch_stats<T: Float>(x: &[T], (n, c, s): (usize, usize, usize)) -> (Vec<f64>, Vec<f64>) {
    let m = (n * s) as f64;
    (0..c)
        .into_par_iter()
        .map(|ch| {
            // An element of the channel: the differences, formed in T, stay on the scale of σ whatever μ is.
            let shift = x[ch * s];
            let (mut s1, mut s2) = (0f64, 0f64);
            for i in 0..n {
                let xs = &x[(i * c + ch) * s..(i * c + ch + 1) * s];
                let (a, b) = lane_sums(xs, xs, xs, |v, _, _| {
                    let d = v - shift;
                    (d, d * d)
                });
                s1 += a;
                s2 += b;
            }
            let mu = s1 / m;
            (shift.to_f64_() + mu, (s2 / m - mu * mu).max(0.0))
        })
        .unzip()
}

/// Accumulator lanes of [`lane_sums`]: independent chains the compiler turns into vector adds.
const LANES: usize = 8;
/// Elements per lane summed in `T` before they are added to the f64 totals.
const BLOCK: usize = 8;

/// `(Σ f(..).0, Σ f(..).1)` over the elementwise triples of three equally long slices. Each of [`LANES`] lanes
/// sums [`BLOCK`] terms in `T`, then adds that partial sum to its f64 total: vectorised like an f32 sum, and
/// still as accurate as f64 accumulation for long rows (no f32 sum holds more than `BLOCK` terms). A fixed
/// order, so deterministic.
#[inline(always)]
pub(super) fn lane_sums<T: Float, A: Copy, B: Copy, C: Copy>(
    a: &[A],
    b: &[B],
    c: &[C],
    f: impl Fn(A, B, C) -> (T, T),
) -> (f64, f64) {
    const W: usize = LANES * BLOCK;
    let (n, zero) = (a.len(), T::zero());
    let (b, c) = (&b[..n], &c[..n]);
    let (mut p, mut q) = ([0f64; LANES], [0f64; LANES]);
    let main = n / W * W;
    for ((xa, xb), xc) in a[..main].chunks_exact(W).zip(b[..main].chunks_exact(W)).zip(c[..main].chunks_exact(W)) {
        // Map the block first (a plain loop the loop vectoriser takes, masks included), then add its lanes.
        let (mut fs, mut ft) = ([zero; W], [zero; W]);
        for i in 0..W {
            (fs[i], ft[i]) = f(xa[i], xb[i], xc[i]);
        }
        let (mut u, mut v) = ([zero; LANES], [zero; LANES]);
        for j in 0..BLOCK {
            for l in 0..LANES {
                u[l] += fs[j * LANES + l];
                v[l] += ft[j * LANES + l];
            }
        }
        for l in 0..LANES {
            p[l] += u[l].to_f64_();
            q[l] += v[l].to_f64_();
        }
    }
    for i in main..n {
        let (s, t) = f(a[i], b[i], c[i]);
        p[i % LANES] += s.to_f64_();
        q[i % LANES] += t.to_f64_();
    }
    (p.iter().sum(), q.iter().sum())
}

/// Channel `ch`'s gradient sums `(Σ g·(x − μ), Σ g)` over `[N, C, S]`, with `g = dy` masked to 0 where the fused
/// activation's output `y` lies outside `(0, hi)` (`act_out = Some((y, hi))`; `hi` = ∞ for ReLU, 6 for ReLU6).
pub(super) fn grad_sums<T: Float>(
    x: &[T],
    dy: &[T],
    act_out: Option<(&[T], T)>,
    ch: usize,
    mu: f64,
    (n, c, s): (usize, usize, usize),
) -> (f64, f64) {
    // Σ g·(x − μ) = Σ g·(x − x₀) − (μ − x₀)·Σ g with x₀ an element of the channel: the differences, formed in T,
    // stay on the scale of σ however large μ is; the correction is applied in f64.
    let (shift, zero) = (x[ch * s], T::zero());
    let (mut sgx, mut sg) = (0f64, 0f64);
    for i in 0..n {
        let r = (i * c + ch) * s..(i * c + ch + 1) * s;
        let (a, b) = match act_out {
            None => lane_sums(&dy[r.clone()], &x[r.clone()], &x[r], |g, v, _| (g * (v - shift), g)),
            Some((y, hi)) => lane_sums(&dy[r.clone()], &x[r.clone()], &y[r], |g, v, o| {
                let g = if o <= zero || o >= hi { zero } else { g };
                (g * (v - shift), g)
            }),
        };
        sgx += a;
        sg += b;
    }
    (sgx - (mu - shift.to_f64_()) * sg, sg)
}

/// One plane of `dx = k·g + a·x + b` with `g = dy` masked where the fused activation's output `y` lies outside
/// `(0, hi)` (`MASK`); `dr = g` when the residual needs its gradient (`y` is not read unless `MASK`). Branch-free,
/// so it vectorises (the mask is data-dependent). Writes every element of `d` (and `dr`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn dx_plane<T: Float, const MASK: bool>(
    d: &mut [MaybeUninit<T>],
    dr: Option<&mut [MaybeUninit<T>]>,
    x: &[T],
    y: &[T],
    dy: &[T],
    hi: T,
    (k, a, b): (T, T, T),
) {
    let (len, zero) = (d.len(), T::zero());
    let (x, y, dy) = (&x[..len], &y[..len], &dy[..len]);
    // Both values loaded unconditionally, so the mask is a select rather than a branch.
    let g = |i: usize| {
        let (g, y) = (dy[i], y[i]);
        if MASK && (y <= zero || y >= hi) {
            zero
        } else {
            g
        }
    };
    match dr {
        Some(dr) => {
            let dr = &mut dr[..len];
            for i in 0..len {
                let gi = g(i);
                dr[i].write(gi);
                d[i].write(k * gi + a * x[i] + b);
            }
        }
        None => {
            for i in 0..len {
                d[i].write(k * g(i) + a * x[i] + b);
            }
        }
    }
}
