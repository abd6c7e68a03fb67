//! Batch-concatenated convolution GEMMs for small feature maps (fewer than 256 output pixels, e.g. the 8²
//! maps of an OS-16 backbone at a 128² input).
//!
//! With few output pixels per image (8²) one GEMM per image is thin (`P` = 64 columns, and the weight
//! gradient has depth `P`). Here the batch is folded into the GEMM: `cols [K, N·P]` holds every image's
//! columns side by side, `dyc [Cout_g, N·P]` the gathered output gradient, and
//! - forward: `Y [Cout_g, N·P] = W_g · cols`, scattered back to NCHW;
//! - input gradient: `dcols = W_gᵀ · dyc`, then col2im per (image, channel) plane;
//! - weight gradient: `dW_g = dyc · colsᵀ` or its transpose (depth `N·P`, no partial sums to reduce).
//!
//! With several threads the batch is split between them, each running the whole computation (gathers, GEMMs,
//! col2im) on its images single-threaded, the weight gradient summed over the parts: one fork-join per call
//! where splitting each gather, GEMM and scatter cost several, and on these small maps the thread hand-offs
//! dominated (2-core Xeon, batch 8, forward + backward: 3×3 32→32 at 8² 0.81 → 0.54 ms, 1×1 320→64 at 8²
//! 1.09 → 0.70 ms).
//! For 1×1 stride-1 convs `cols` is a plain gather of the batch into `[Cin, N·P]` (no taps): on 8² maps that
//! copy is far cheaper than running four GEMMs 64 columns wide.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::conv_cpu::transposed_dw;
use super::gemm_glue::{matmul, Parallelism, View};
use super::im2col::{Geom, TapFill};
use super::{write_all, Float};

/// Whether the batch-concatenated path is used: several images, small output maps, and a `cols` buffer of
/// at most 16 Mi elements.
pub(crate) fn use_batched(g: &Geom) -> bool {
    match FORCE.load(std::sync::atomic::Ordering::Relaxed) {
        1 => return false,
        2 => return g.n > 1,
        _ => {}
    }
    g.n > 1 && g.p() < 256 && (g.kg() + g.cout_g()) * g.n * g.p() <= 16 << 20
}

/// Strategy override for benchmarks: 0 automatic, 1 always per image, 2 always batched.
static FORCE: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Benchmark knob (not part of the stable API): `None` = automatic choice between per-image and
/// batch-concatenated conv GEMMs, `Some(true)` = always batched, `Some(false)` = always per image.
#[doc(hidden)]
pub fn force_batched(v: Option<bool>) {
    let code = match v {
        None => 0,
        Some(false) => 1,
        Some(true) => 2,
    };
    FORCE.store(code, std::sync::atomic::Ordering::Relaxed);
}

/// Runs `f(index, chunk)` over the `len`-element chunks of `data`, in parallel when `nt > 1`.
fn for_chunks<T: Float>(data: &mut [T], len: usize, nt: usize, f: impl Fn(usize, &mut [T]) + Sync + Send) {
    if nt > 1 {
        data.par_chunks_mut(len).enumerate().for_each(|(i, c)| f(i, c));
    } else {
        data.chunks_mut(len).enumerate().for_each(|(i, c)| f(i, c));
    }
}

/// Images per thread when a call is split over `nt` threads, each running the whole computation on its images
/// single-threaded (one fork-join per call instead of one per gather, GEMM and scatter); `None` to run the
/// batch as one, with parallel GEMMs. Each part packs the whole weight for its GEMMs, so only layers whose
/// weight has at most [`SPLIT_MAX_WEIGHT`] elements are split (ResNet-18 at a 128² crop, batch 4: 294 → 319
/// ms per step when its 256- and 512-channel 3×3 layers were split too).
fn image_chunk(g: &Geom, nt: usize) -> Option<usize> {
    (nt > 1 && g.n >= nt && g.cout * g.kg() <= SPLIT_MAX_WEIGHT).then(|| g.n.div_ceil(nt))
}

/// Largest weight (`Cout · K_g` elements) of a layer that [`image_chunk`] splits by images.
const SPLIT_MAX_WEIGHT: usize = 1 << 18;

/// `cols [K_g, N·P]` for group `grp` of the whole batch, parallel over rows when `nt > 1`.
fn build_cols<T: Float>(g: &Geom, x: &[T], grp: usize, cols: &mut [T], nt: usize) {
    let (np, p, hw) = (g.n * g.p(), g.p(), g.h * g.w);
    let fills = TapFill::all(g, (0, g.oh));
    for_chunks(cols, np, nt, |k, row| {
        let (c, fill) = (k / fills.len(), &fills[k % fills.len()]);
        let ch = grp * g.cin_g() + c;
        for (i, dst) in row.chunks_exact_mut(p).enumerate() {
            fill.apply(g, &x[i * g.in_len() + ch * hw..i * g.in_len() + (ch + 1) * hw], dst);
        }
    });
}

/// `dyc [Cout_g, N·P]` gathered from `dy [N, Cout, P]` for group `grp`.
fn gather_dy<T: Float>(g: &Geom, dy: &[T], grp: usize, dyc: &mut [T], nt: usize) {
    let (np, p) = (g.n * g.p(), g.p());
    for_chunks(dyc, np, nt, |co, row| {
        let ch = grp * g.cout_g() + co;
        for i in 0..g.n {
            let src = i * g.out_len() + ch * p;
            row[i * p..(i + 1) * p].copy_from_slice(&dy[src..src + p]);
        }
    });
}

fn par_of(nt: usize) -> Parallelism {
    if nt > 1 {
        Parallelism::Rayon(nt)
    } else {
        Parallelism::None
    }
}

/// Forward into `y [N, Cout, P]`, every element written.
pub(crate) fn forward<T: Float>(g: &Geom, x: &[T], w: &[T], y: &mut [MaybeUninit<T>], nt: usize) {
    if let Some(c) = image_chunk(g, nt) {
        y.par_chunks_mut(c * g.out_len()).zip(x.par_chunks(c * g.in_len())).for_each(|(yc, xc)| {
            forward(&Geom { n: yc.len() / g.out_len(), ..*g }, xc, w, yc, 1);
        });
        return;
    }
    let (np, p, kg, cout_g) = (g.n * g.p(), g.p(), g.kg(), g.cout_g());
    T::with_scratch(kg * np + cout_g * np, |buf| {
        let (cols, tmp) = buf.split_at_mut(kg * np);
        for grp in 0..g.groups {
            build_cols(g, x, grp, cols, nt);
            let wg = View::rm(&w[grp * cout_g * kg..(grp + 1) * cout_g * kg], kg);
            matmul(cout_g, np, kg, tmp, np, false, wg, View::rm(cols, np), par_of(nt));
            for (i, yi) in y.chunks_mut(g.out_len()).enumerate() {
                for co in 0..cout_g {
                    let dst = (grp * cout_g + co) * p;
                    write_all(&mut yi[dst..dst + p], &tmp[co * np + i * p..co * np + (i + 1) * p]);
                }
            }
        }
    });
}

/// Input gradient into `dx [N, Cin, H, W]` (zero on entry).
pub(crate) fn grad_input<T: Float>(g: &Geom, dy: &[T], w: &[T], dx: &mut [T], nt: usize) {
    if let Some(c) = image_chunk(g, nt) {
        dx.par_chunks_mut(c * g.in_len()).zip(dy.par_chunks(c * g.out_len())).for_each(|(dxc, dyc)| {
            grad_input(&Geom { n: dxc.len() / g.in_len(), ..*g }, dyc, w, dxc, 1);
        });
        return;
    }
    let (np, p, kg, cin_g, cout_g, hw) = (g.n * g.p(), g.p(), g.kg(), g.cin_g(), g.cout_g(), g.h * g.w);
    let fills = TapFill::all(g, (0, g.oh));
    T::with_scratch(kg * np + cout_g * np, |buf| {
        let (dcols, dyc) = buf.split_at_mut(kg * np);
        for grp in 0..g.groups {
            gather_dy(g, dy, grp, dyc, nt);
            let wgt = View::rm_t(&w[grp * cout_g * kg..(grp + 1) * cout_g * kg], kg);
            matmul(kg, np, cout_g, dcols, np, false, wgt, View::rm(dyc, np), par_of(nt));
            let dcols = &*dcols;
            for_chunks(dx, hw, nt, |plane_idx, plane| {
                let (i, ch) = (plane_idx / g.cin, plane_idx % g.cin);
                if ch / cin_g != grp {
                    return;
                }
                let c = ch - grp * cin_g;
                for (t, fill) in fills.iter().enumerate() {
                    let k = c * fills.len() + t;
                    fill.scatter(g, &dcols[k * np + i * p..k * np + (i + 1) * p], plane);
                }
            });
        }
    });
}

/// Weight gradient into `dw` (overwritten): `[Cout, K_g]`, or with [`transposed_dw`] the groups' `dWᵀ_g
/// [K_g, Cout_g]` blocks one after another, for the caller to untranspose.
///
/// Transposed, `gemm` packs `dyc` (`Cout_g × N·P`) and reads `cols` in place; the other way round it packs all
/// of `cols`, `K_g / Cout_g` times more (9× on a 3×3 layer with as many input as output channels).
pub(crate) fn grad_weight<T: Float>(g: &Geom, x: &[T], dy: &[T], dw: &mut [T], nt: usize) {
    if let Some(c) = image_chunk(g, nt) {
        let parts: Vec<Vec<T>> = x
            .par_chunks(c * g.in_len())
            .zip(dy.par_chunks(c * g.out_len()))
            .map(|(xc, dyc)| {
                let mut part = vec![T::zero(); dw.len()];
                grad_weight(&Geom { n: xc.len() / g.in_len(), ..*g }, xc, dyc, &mut part, 1);
                part
            })
            .collect();
        dw.fill(T::zero());
        for part in parts {
            dw.iter_mut().zip(&part).for_each(|(a, b)| *a += *b);
        }
        return;
    }
    let (np, kg, cout_g) = (g.n * g.p(), g.kg(), g.cout_g());
    T::with_scratch(kg * np + cout_g * np, |buf| {
        let (cols, dyc) = buf.split_at_mut(kg * np);
        for grp in 0..g.groups {
            build_cols(g, x, grp, cols, nt);
            gather_dy(g, dy, grp, dyc, nt);
            let dwg = &mut dw[grp * cout_g * kg..(grp + 1) * cout_g * kg];
            if transposed_dw(g) {
                matmul(kg, cout_g, np, dwg, cout_g, false, View::rm(cols, np), View::rm_t(dyc, np), par_of(nt));
            } else {
                matmul(cout_g, kg, np, dwg, kg, false, View::rm(dyc, np), View::rm_t(cols, np), par_of(nt));
            }
        }
    });
}
