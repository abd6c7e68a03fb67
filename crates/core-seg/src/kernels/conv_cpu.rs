//! CPU drivers of the convolution kernels: dispatch between the direct depthwise kernel
//! ([`super::depthwise`]), Winograd for 3×3 stride-1 convs ([`super::winograd`]), the batch-concatenated path
//! for small maps ([`super::conv_batched`]) and per-image
//! GEMMs, parallel over the batch (single-threaded GEMMs,
//! thread-local im2col scratch) when the batch divides evenly over the threads, otherwise parallel inside
//! each GEMM.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

use super::conv_batched as batched;
use super::conv_regions as regions;
use super::depthwise;
use super::gemm_glue::{matmul, matmul_uninit, Parallelism, View};
use super::im2col::{col2im, expand_weight_grad, im2col, live_weight, Geom};
use super::winograd::{self, Sizes, Tile};
use super::{new_filled, num_threads, Float};

/// Convolution algorithm of the CPU kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConvAlgo {
    /// The direct depthwise kernel for depthwise convolutions (`groups = Cin = Cout`, up to 3×3), Winograd
    /// where it applies and pays (see [`winograd_tile`]), otherwise im2col/GEMM. The environment variable
    /// `SEMISEG_CONV_ALGO` = `direct`, `f2` or `f4` overrides this choice process-wide.
    #[default]
    Auto,
    /// im2col/GEMM for every convolution (depthwise ones as one GEMM per channel).
    Direct,
    /// Winograd with this tiling for every 3×3, stride-1, dilation-1, ungrouped convolution with padding
    /// ≤ 2; the depthwise kernel for depthwise convolutions; im2col/GEMM for the others.
    Winograd(Tile),
}

/// `SEMISEG_CONV_ALGO`, read once: the algorithm `Auto` stands for.
fn auto_override() -> Option<ConvAlgo> {
    static OVERRIDE: std::sync::OnceLock<Option<ConvAlgo>> = std::sync::OnceLock::new();
    *OVERRIDE.get_or_init(|| match std::env::var("SEMISEG_CONV_ALGO").ok()?.as_str() {
        "direct" => Some(ConvAlgo::Direct),
        "f2" => Some(ConvAlgo::Winograd(Tile::F2)),
        "f4" => Some(ConvAlgo::Winograd(Tile::F4)),
        _ => None,
    })
}

/// The Winograd tiling `algo` selects for `g`, or `None` for the direct path.
///
/// `Auto` takes Winograd F(4,3) for 3×3 stride-1 layers with at least 64 input and output channels and an
/// output map of at least 32×32. On the DeepLabV3+-R18 shapes at batch 4 (`conv_bench`, 2 threads,
/// forward + backward ms, direct → F(4,3)): decoder 304→256 at 32² 145 → 64, 256→256 126 → 55, layer1
/// 64→64 at 32² 8.9 → 7.4. Smaller maps lose: a transform works on 8 tiles of a tile row at once, and a 16²
/// map has 4 tiles per row (layer2 128→128 at 16²: 7.4 → 9.1; the synthetic model's decoder, 88→64 at 16²,
/// batch 16: 14.3 → 17.5), and on 8² maps the GEMMs are too thin (layer3 256→256: 12.9 → 22.1). With 16
/// channels the transforms cost more than the GEMMs save.
fn winograd_tile(g: &Geom, algo: ConvAlgo) -> Option<Tile> {
    let fits = g.kh == 3 && g.kw == 3 && g.stride == 1 && g.dil == 1 && g.groups == 1 && g.pad <= 2;
    if !fits {
        return None;
    }
    match algo {
        ConvAlgo::Auto => match auto_override() {
            Some(a) => winograd_tile(g, a),
            None if g.cin.min(g.cout) < 64 || g.oh.min(g.ow) < 32 => None,
            None => Some(Tile::F4),
        },
        ConvAlgo::Direct => None,
        ConvAlgo::Winograd(t) => Some(t),
    }
}

/// Whether `algo` runs `g` on the direct depthwise kernel (every algorithm but `Direct`).
fn use_depthwise(g: &Geom, algo: ConvAlgo) -> bool {
    depthwise::fits(g)
        && match algo {
            ConvAlgo::Auto => auto_override().is_none_or(|a| use_depthwise(g, a)),
            ConvAlgo::Direct => false,
            ConvAlgo::Winograd(_) => true,
        }
}

/// Whether `algo` runs `g` by output regions ([`regions`]: `Auto`, where it pays and the columns fit in the
/// batch-concatenated path's 16 Mi elements).
fn use_regions(g: &Geom, algo: ConvAlgo) -> bool {
    algo == ConvAlgo::Auto
        && auto_override().is_none()
        && (g.kg() + g.cout) * g.n * g.p() <= 16 << 20
        && regions::pays(g)
}

fn sizes(g: &Geom) -> Sizes {
    Sizes { n: g.n, cin: g.cin, cout: g.cout, h: g.h, w: g.w, pad: g.pad, oh: g.oh, ow: g.ow }
}

/// Whether to split over the batch (single-threaded GEMMs) rather than inside each GEMM.
fn batch_parallel(n: usize, nt: usize) -> bool {
    nt > 1 && n > 1 && (n.is_multiple_of(nt) || n >= 2 * nt)
}

/// `f(out_img, in_img, par)` for each of the `n` images (`out` and `input` in equal chunks per image): images in
/// parallel with single-threaded GEMMs when [`batch_parallel`], else one after another with `nt` threads inside
/// each GEMM.
fn per_image<O: Send, T: Float>(
    out: &mut [O],
    input: &[T],
    n: usize,
    nt: usize,
    f: impl Fn(&mut [O], &[T], Parallelism) + Sync,
) {
    if n == 0 || out.is_empty() {
        return;
    }
    let (out_len, in_len) = (out.len() / n, input.len() / n);
    if batch_parallel(n, nt) {
        out.par_chunks_mut(out_len).zip(input.par_chunks(in_len)).for_each(|(o, i)| f(o, i, Parallelism::None));
    } else {
        let par = if nt > 1 { Parallelism::Rayon(nt) } else { Parallelism::None };
        for (o, i) in out.chunks_mut(out_len).zip(input.chunks(in_len)) {
            f(o, i, par);
        }
    }
}

/// Target GEMM width (output pixels) of one band; 0 disables banding. A band's `cols` (`K × 256`) stays
/// in L2 between im2col and the GEMM that reads it.
static BAND_COLS: AtomicUsize = AtomicUsize::new(256);

/// Benchmark knob (not part of the stable API): output pixels per im2col band in the per-image path
/// (0 = whole image at once).
#[doc(hidden)]
pub fn set_band_cols(n: usize) {
    BAND_COLS.store(n, Ordering::Relaxed);
}

/// Output rows per band: whole rows, about `BAND_COLS` pixels.
fn band_rows(g: &Geom) -> usize {
    match BAND_COLS.load(Ordering::Relaxed) {
        0 => g.oh.max(1),
        n => (n / g.ow.max(1)).clamp(1, g.oh.max(1)),
    }
}

/// Forward of one image: `out_img [Cout, P]` (every element written) from `x_img [Cin, H, W]`, im2col and GEMM
/// band by band.
fn forward_image<T: Float>(g: &Geom, x: &[T], w: &[T], out: &mut [MaybeUninit<T>], par: Parallelism) {
    let (cin_g, cout_g, kg, p, hw) = (g.cin_g(), g.cout_g(), g.kg(), g.p(), g.h * g.w);
    let rows = band_rows(g);
    for grp in 0..g.groups {
        let xg = &x[grp * cin_g * hw..(grp + 1) * cin_g * hw];
        let wg = View::rm(&w[grp * cout_g * kg..(grp + 1) * cout_g * kg], kg);
        let og = &mut out[grp * cout_g * p..(grp + 1) * cout_g * p];
        if g.is_pointwise() {
            matmul_uninit(cout_g, p, kg, og, p, wg, View::rm(xg, p), par);
        } else {
            T::with_scratch(kg * rows * g.ow, |buf| {
                for oy0 in (0..g.oh).step_by(rows) {
                    let oy1 = (oy0 + rows).min(g.oh);
                    let pb = (oy1 - oy0) * g.ow;
                    let cols = &mut buf[..kg * pb];
                    im2col(g, xg, (oy0, oy1), cols);
                    let dst = &mut og[oy0 * g.ow..];
                    matmul_uninit(cout_g, pb, kg, dst, p, wg, View::rm(cols, pb), par);
                }
            });
        }
    }
}

/// `y [N, Cout, oh, ow]` from `x` and `w`.
pub(crate) fn forward<T: Float>(g: &Geom, algo: ConvAlgo, x: &[T], w: &[T]) -> Vec<T> {
    if use_depthwise(g, algo) {
        return depthwise::forward(g, x, w);
    }
    if let Some(tile) = winograd_tile(g, algo) {
        return winograd::forward(tile, &sizes(g), x, w);
    }
    if use_regions(g, algo) {
        return regions::forward(g, x, w);
    }
    let w = &*live_weight(g, w);
    let (nt, len) = (num_threads(), g.n * g.out_len());
    if batched::use_batched(g) {
        // SAFETY: the batched forward writes every output plane of every image.
        return unsafe { new_filled(len, len, |out| batched::forward(g, x, w, out, nt)) };
    }
    let fill = |out: &mut [MaybeUninit<T>]| per_image(out, x, g.n, nt, |o, xi, par| forward_image(g, xi, w, o, par));
    // SAFETY: `forward_image` writes every element of its image's output (no zero fill needed).
    unsafe { new_filled(len, len, fill) }
}

/// `dx` of one image (`dx_img` zero on entry) from `dy_img [Cout, P]`, GEMM and col2im band by band.
fn grad_input_image<T: Float>(g: &Geom, dy: &[T], w: &[T], dx: &mut [T], par: Parallelism) {
    let (cin_g, cout_g, kg, p, hw) = (g.cin_g(), g.cout_g(), g.kg(), g.p(), g.h * g.w);
    let rows = band_rows(g);
    for grp in 0..g.groups {
        let dyg = &dy[grp * cout_g * p..(grp + 1) * cout_g * p];
        let wgt = View::rm_t(&w[grp * cout_g * kg..(grp + 1) * cout_g * kg], kg);
        let dxg = &mut dx[grp * cin_g * hw..(grp + 1) * cin_g * hw];
        if g.is_pointwise() {
            matmul(kg, p, cout_g, dxg, p, false, wgt, View::rm(dyg, p), par);
        } else {
            T::with_scratch(kg * rows * g.ow, |buf| {
                for oy0 in (0..g.oh).step_by(rows) {
                    let oy1 = (oy0 + rows).min(g.oh);
                    let pb = (oy1 - oy0) * g.ow;
                    let dcols = &mut buf[..kg * pb];
                    let dyb = View::rm(&dyg[oy0 * g.ow..], p);
                    matmul(kg, pb, cout_g, dcols, pb, false, wgt, dyb, par);
                    col2im(g, dcols, (oy0, oy1), dxg);
                }
            });
        }
    }
}

/// `dx [N, Cin, H, W]` from `dy` and `w`.
pub(crate) fn grad_input<T: Float>(g: &Geom, algo: ConvAlgo, dy: &[T], w: &[T]) -> Vec<T> {
    if use_depthwise(g, algo) {
        return depthwise::grad_input(g, dy, w);
    }
    if let Some(tile) = winograd_tile(g, algo) {
        return winograd::grad_input(tile, &sizes(g), dy, w);
    }
    if use_regions(g, algo) {
        return regions::grad_input(g, dy, w);
    }
    if let Some(gt) = adjoint_geom(g, algo) {
        return forward(&gt, algo, dy, &flip_transpose(g, w));
    }
    let w = &*live_weight(g, w);
    let mut dx = vec![T::zero(); g.n * g.in_len()];
    let nt = num_threads();
    if batched::use_batched(g) {
        batched::grad_input(g, dy, w, &mut dx, nt);
    } else {
        per_image(&mut dx, dy, g.n, nt, |d, dyi, par| grad_input_image(g, dyi, w, d, par));
    }
    dx
}

/// The geometry of `dx` as a forward convolution of `dy`, where that replaces GEMM + col2im (`Auto` only).
///
/// For stride 1, `dx = conv2d(dy, w′)` with `w′[ci, co, i, j] = w[co, ci, kh−1−i, kw−1−j]` (per group),
/// the same dilation and padding `d·(k − 1) − pad`: each input pixel gathers the output pixels that read it,
/// so the im2col gather and a GEMM that writes `dx` once replace the scatter-add of col2im into a zeroed
/// buffer. Square kernels with `pad ≤ d·(k − 1)`, every tap live, at least 16 input channels per group and
/// at most 2¹⁸ weights: on the synthetic model's layers (3×3, 16–128 channels, 8²–16² maps, batch 16, 1
/// thread) the input gradient took 10–35 % less time, but with 8 input channels (the GEMM's rows: 3×3 8→16
/// at 32², 0.9 against 0.65 ms), on ResNet-18's 3×3 512→512 at 8² (batch 4, 2 threads: 6.8–7.0 against 5.3
/// ms, two runs) and, in one run, where most taps read padding (ASPP d12/d18 at 8²: 1.6 against 0.8 ms) col2im
/// won. 1×1 unpadded convs keep their plain GEMM.
fn adjoint_geom(g: &Geom, algo: ConvAlgo) -> Option<Geom> {
    let (k, d) = (g.kh, g.dil);
    let small = g.cin_g() >= 16 && g.cout * g.kg() <= 1 << 18 && g.full_window();
    let fits = small && g.stride == 1 && g.kw == k && g.pad <= d * (k - 1) && !g.is_pointwise();
    if !fits || algo != ConvAlgo::Auto || auto_override().is_some() {
        return None;
    }
    let cfg = super::ConvParams { stride: 1, padding: d * (k - 1) - g.pad, dilation: d, groups: g.groups };
    Geom::new("kernels::conv2d_grad_input", (g.n, g.cout, g.oh, g.ow), (g.cin, g.cout_g(), k, k), cfg).ok()
}

/// `w′ [Cin, Cout_g, kh, kw]` of [`adjoint_geom`] from `w [Cout, Cin_g, kh, kw]`: per group, channels
/// transposed and both kernel axes reversed.
fn flip_transpose<T: Float>(g: &Geom, w: &[T]) -> Vec<T> {
    let (cin_g, cout_g, kk) = (g.cin_g(), g.cout_g(), g.kh * g.kw);
    let mut out = vec![T::zero(); w.len()];
    for grp in 0..g.groups {
        for co in 0..cout_g {
            for ci in 0..cin_g {
                let src = &w[((grp * cout_g + co) * cin_g + ci) * kk..][..kk];
                let dst = &mut out[((grp * cin_g + ci) * cout_g + co) * kk..][..kk];
                dst.iter_mut().zip(src.iter().rev()).for_each(|(d, s)| *d = *s);
            }
        }
    }
    out
}

/// Whether [`backward`] computes both gradients in one pass for `g` (the depthwise kernel).
pub(crate) fn has_fused_backward(g: &Geom, algo: ConvAlgo) -> bool {
    use_depthwise(g, algo)
}

/// `[dx, dW]` (flat) from `x`, `w` and `dy` in one pass; only where [`has_fused_backward`].
pub(crate) fn backward<T: Float>(g: &Geom, x: &[T], w: &[T], dy: &[T]) -> Vec<T> {
    let (dw, dx) = depthwise::backward(g, x, dy, Some(w));
    let mut out = dx.unwrap_or_default();
    out.extend_from_slice(&dw);
    out
}

/// Whether the weight gradient runs as `dWᵀ = cols · dyᵀ` (see [`grad_weight_image`], [`batched::grad_weight`]).
pub(crate) fn transposed_dw(g: &Geom) -> bool {
    g.cout_g() <= 64 && g.kg() >= 4 * g.cout_g()
}

/// Accumulates the weight gradient of one image into `dw`: `dW_g [Cout_g, K_g] += dy_img · cols(x_img)ᵀ`,
/// or with `transposed_dw(g)` its transpose `dWᵀ_g [K_g, Cout_g] += cols · dyᵀ` (the groups' blocks one
/// after another; [`untranspose`] turns the sum back).
///
/// The transposed orientation (M = `K_g`, N = `Cout_g`, depth `P`) reads `cols` row-major and puts the long
/// dimension in M. With `gemm` 0.19's AVX2 kernels on 2 cores it made the `Cout` = 64 layers' weight
/// gradient 1.4–2× faster (layer1 3×3 64→64 at 32², batch 4: 2.4–3.2 ms vs 4.6–5.0 ms, `conv_bench`) but
/// was no faster for `Cout` = 256 (decoder 304→256: 56–59 vs 51–57 ms) and for the 3-channel stem (K = 27).
fn grad_weight_image<T: Float>(g: &Geom, x: &[T], dy: &[T], dw: &mut [T], par: Parallelism) {
    let (cin_g, cout_g, kg, p, hw) = (g.cin_g(), g.cout_g(), g.kg(), g.p(), g.h * g.w);
    let t = transposed_dw(g);
    for grp in 0..g.groups {
        let xg = &x[grp * cin_g * hw..(grp + 1) * cin_g * hw];
        let dyg = &dy[grp * cout_g * p..(grp + 1) * cout_g * p];
        let dwg = &mut dw[grp * cout_g * kg..(grp + 1) * cout_g * kg];
        let gemm = |cols: &[T], dwg: &mut [T]| {
            if t {
                matmul(kg, cout_g, p, dwg, cout_g, true, View::rm(cols, p), View::rm_t(dyg, p), par);
            } else {
                matmul(cout_g, kg, p, dwg, kg, true, View::rm(dyg, p), View::rm_t(cols, p), par);
            }
        };
        if g.is_pointwise() {
            gemm(xg, dwg);
        } else {
            T::with_scratch(kg * p, |cols| {
                im2col(g, xg, (0, g.oh), cols);
                gemm(cols, dwg);
            });
        }
    }
}

/// `dW [Cout, K_g]` from the sum of [`grad_weight_image`] (as is unless `transposed_dw(g)`).
fn untranspose<T: Float>(g: &Geom, dwt: Vec<T>) -> Vec<T> {
    let (cout_g, kg) = (g.cout_g(), g.kg());
    if !transposed_dw(g) {
        return dwt;
    }
    let mut dw = vec![T::zero(); g.cout * kg];
    for (src, dst) in dwt.chunks_exact(kg * cout_g).zip(dw.chunks_exact_mut(cout_g * kg)) {
        for (co, row) in dst.chunks_exact_mut(kg).enumerate() {
            for (k, d) in row.iter_mut().enumerate() {
                *d = src[k * cout_g + co];
            }
        }
    }
    dw
}

/// `dW [Cout, Cin_g, kh, kw]` from `x` and `dy`.
pub(crate) fn grad_weight<T: Float>(g: &Geom, algo: ConvAlgo, x: &[T], dy: &[T]) -> Vec<T> {
    if use_depthwise(g, algo) {
        return depthwise::backward(g, x, dy, None).0;
    }
    if let Some(tile) = winograd_tile(g, algo) {
        return winograd::grad_weight(tile, &sizes(g), x, dy);
    }
    if use_regions(g, algo) {
        return regions::grad_weight(g, x, dy);
    }
    expand_weight_grad(g, grad_weight_live(g, x, dy))
}

/// Weight gradient over the live kernel window, `[Cout, Cin_g, nki, nkj]`.
fn grad_weight_live<T: Float>(g: &Geom, x: &[T], dy: &[T]) -> Vec<T> {
    let wlen = g.cout * g.kg();
    let nt = num_threads();
    if batched::use_batched(g) {
        let mut dw = vec![T::zero(); wlen];
        batched::grad_weight(g, x, dy, &mut dw, nt);
        untranspose(g, dw)
    } else if batch_parallel(g.n, nt) {
        // One partial dW per chunk of images, summed at the end.
        let chunk = g.n.div_ceil(nt);
        let partials: Vec<Vec<T>> = (0..g.n.div_ceil(chunk))
            .into_par_iter()
            .map(|c| {
                let mut dwt = vec![T::zero(); wlen];
                for i in c * chunk..((c + 1) * chunk).min(g.n) {
                    let xi = &x[i * g.in_len()..(i + 1) * g.in_len()];
                    let dyi = &dy[i * g.out_len()..(i + 1) * g.out_len()];
                    grad_weight_image(g, xi, dyi, &mut dwt, Parallelism::None);
                }
                dwt
            })
            .collect();
        let mut it = partials.into_iter();
        let mut dwt = it.next().unwrap_or_else(|| vec![T::zero(); wlen]);
        for p in it {
            dwt.iter_mut().zip(&p).for_each(|(a, b)| *a += *b);
        }
        untranspose(g, dwt)
    } else {
        let par = if nt > 1 { Parallelism::Rayon(nt) } else { Parallelism::None };
        let mut dwt = vec![T::zero(); wlen];
        for (xi, dyi) in x.chunks(g.in_len()).zip(dy.chunks(g.out_len())) {
            grad_weight_image(g, xi, dyi, &mut dwt, par);
        }
        untranspose(g, dwt)
    }
}
