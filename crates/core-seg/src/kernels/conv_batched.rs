//! Batch-concatenated convolution GEMMs for small feature maps (fewer than 256 output pixels, e.g. the 8²
//! maps of an OS-16 backbone at a 128² input).
//!
//! With few output pixels per image (8²) one GEMM per image is thin (`P` = 64 columns, and the weight
//! gradient has depth `P`). Here the batch is folded into the GEMM: `cols [K, N·P]` holds every image's
//! columns side by side, `dyc [Cout_g, N·P]` the gathered output gradient, and
//! - forward: `Y [Cout_g, N·P] = W_g · cols`, scattered back to NCHW;
//! - input gradient: `dcols = W_gᵀ · dyc`, then col2im per (image, channel) plane;
//! - weight gradient: `dW_g = dyc · colsᵀ` (depth `N·P`, no partial sums to reduce).
//!
//! Each GEMM is parallelised internally; im2col, gathers and col2im are parallel over rows or planes.
//! For 1×1 stride-1 convs `cols` is a plain gather of the batch into `[Cin, N·P]` (no taps): on 8² maps that
//! copy is far cheaper than running four GEMMs 64 columns wide.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::gemm_glue::{matmul, Parallelism, View};
use super::im2col::{fill_row, scatter_row, split_k, Geom};
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

/// `cols [K_g, N·P]` for group `grp` of the whole batch, parallel over rows.
fn build_cols<T: Float>(g: &Geom, x: &[T], grp: usize, cols: &mut [T]) {
    let (np, p, hw) = (g.n * g.p(), g.p(), g.h * g.w);
    cols.par_chunks_mut(np).enumerate().for_each(|(k, row)| {
        let (c, ki, kj) = split_k(g, k);
        let ch = grp * g.cin_g() + c;
        for i in 0..g.n {
            let plane = &x[i * g.in_len() + ch * hw..i * g.in_len() + (ch + 1) * hw];
            fill_row(g, plane, (ki, kj), (0, g.oh), &mut row[i * p..(i + 1) * p]);
        }
    });
}

/// `dyc [Cout_g, N·P]` gathered from `dy [N, Cout, P]` for group `grp`.
fn gather_dy<T: Float>(g: &Geom, dy: &[T], grp: usize, dyc: &mut [T]) {
    let (np, p) = (g.n * g.p(), g.p());
    dyc.par_chunks_mut(np).enumerate().for_each(|(co, row)| {
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
    let (np, p, kg, cout_g) = (g.n * g.p(), g.p(), g.kg(), g.cout_g());
    T::with_scratch(kg * np + cout_g * np, |buf| {
        let (cols, tmp) = buf.split_at_mut(kg * np);
        for grp in 0..g.groups {
            build_cols(g, x, grp, cols);
            let wg = View::rm(&w[grp * cout_g * kg..(grp + 1) * cout_g * kg], kg);
            matmul(cout_g, np, kg, tmp, np, false, wg, View::rm(cols, np), par_of(nt));
            let tmp = &*tmp;
            y.par_chunks_mut(g.out_len()).enumerate().for_each(|(i, yi)| {
                for co in 0..cout_g {
                    let dst = (grp * cout_g + co) * p;
                    write_all(&mut yi[dst..dst + p], &tmp[co * np + i * p..co * np + (i + 1) * p]);
                }
            });
        }
    });
}

/// Input gradient into `dx [N, Cin, H, W]` (zero on entry).
pub(crate) fn grad_input<T: Float>(g: &Geom, dy: &[T], w: &[T], dx: &mut [T], nt: usize) {
    let (np, p, kg, cin_g, cout_g, hw) = (g.n * g.p(), g.p(), g.kg(), g.cin_g(), g.cout_g(), g.h * g.w);
    T::with_scratch(kg * np + cout_g * np, |buf| {
        let (dcols, dyc) = buf.split_at_mut(kg * np);
        for grp in 0..g.groups {
            gather_dy(g, dy, grp, dyc);
            let wgt = View::rm_t(&w[grp * cout_g * kg..(grp + 1) * cout_g * kg], kg);
            matmul(kg, np, cout_g, dcols, np, false, wgt, View::rm(dyc, np), par_of(nt));
            let dcols = &*dcols;
            dx.par_chunks_mut(hw).enumerate().for_each(|(plane_idx, plane)| {
                let (i, ch) = (plane_idx / g.cin, plane_idx % g.cin);
                if ch / cin_g != grp {
                    return;
                }
                let c = ch - grp * cin_g;
                for a in 0..g.nki {
                    for b in 0..g.nkj {
                        let k = (c * g.nki + a) * g.nkj + b;
                        let (ki, kj) = (g.ki0 + a, g.kj0 + b);
                        let row = &dcols[k * np + i * p..k * np + (i + 1) * p];
                        scatter_row(g, row, (ki, kj), (0, g.oh), plane);
                    }
                }
            });
        }
    });
}

/// Weight gradient into `dw [Cout, K_g]` (overwritten).
pub(crate) fn grad_weight<T: Float>(g: &Geom, x: &[T], dy: &[T], dw: &mut [T], nt: usize) {
    let (np, kg, cout_g) = (g.n * g.p(), g.kg(), g.cout_g());
    T::with_scratch(kg * np + cout_g * np, |buf| {
        let (cols, dyc) = buf.split_at_mut(kg * np);
        for grp in 0..g.groups {
            build_cols(g, x, grp, cols);
            gather_dy(g, dy, grp, dyc);
            let dwg = &mut dw[grp * cout_g * kg..(grp + 1) * cout_g * kg];
            matmul(cout_g, kg, np, dwg, kg, false, View::rm(dyc, np), View::rm_t(cols, np), par_of(nt));
        }
    });
}
