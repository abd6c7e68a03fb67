//! Winograd convolution F(m×m, 3×3) for 3×3, stride-1, dilation-1, ungrouped convolutions (Lavin & Gray,
//! "Fast Algorithms for Convolutional Neural Networks", CVPR 2016).
//!
//! The output is cut into m×m tiles; tile `t` reads the α×α input patch `d` (α = m + 2) at its top-left
//! corner shifted by the padding. For output channel `k`:
//!
//! `Y_{k,t} = Aᵀ [ Σ_c (G g_{kc} Gᵀ) ⊙ (Bᵀ d_{c,t} B) ] A`.
//!
//! With `U_ξ[k, c] = (G g_{kc} Gᵀ)_ξ` and `V_ξ[c, t] = (Bᵀ d_{c,t} B)_ξ` at each of the α² tile positions ξ,
//! the channel sum is α² independent GEMMs `M_ξ = U_ξ · V_ξ` (`[Cout, Cin] · [Cin, T]`): 16/36 of the
//! direct multiplications for F(2,3), 36/144 for F(4,3). Backward:
//! - input gradient: the forward of the flipped, transposed kernel `g'[c, k, i, j] = g[k, c, 2−i, 2−j]` on
//!   `dy` with padding `2 − p` (so `p ≤ 2`);
//! - weight gradient: `dU_ξ = Σ_t dM_ξ · V_ξᵀ` with `dM_t = A dY_t Aᵀ`, then `dg = Gᵀ dU G`.
//!
//! Images run in chunks of bounded scratch; within a chunk the transforms ([`super::winograd_tiles`]) are
//! parallel over channel planes and the α² GEMMs parallel over ξ (one thread each, no partial sums).

use rayon::prelude::*;

use super::gemm_glue::{matmul, Parallelism, View};
use super::winograd_tiles::{kernel_in, kernel_out, padded, plane_out, planes_in, Grid, Planes, Tiling, F2, F4};
use super::Float;

/// Sizes of one Winograd convolution: input `[n, cin, h, w]` padded by `pad`, output `[n, cout, oh, ow]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sizes {
    pub n: usize,
    pub cin: usize,
    pub cout: usize,
    pub h: usize,
    pub w: usize,
    pub pad: usize,
    pub oh: usize,
    pub ow: usize,
}

/// Scratch elements per chunk at most (32 MiB of f32): bounds the transformed input and output buffers.
const CHUNK_ELEMS: usize = 8 << 20;

/// Images per chunk: as few equal chunks of `n` images (needing `total` elements together) as keep each
/// under `limit`.
fn images_per_chunk(n: usize, total: usize, limit: usize) -> usize {
    let chunks = total.div_ceil(limit.max(1)).clamp(1, n.max(1));
    n.div_ceil(chunks).max(1)
}

/// Strides of the buffers of one chunk of `tc` tiles. The tile axis is padded ([`padded`]) for whole-lane
/// access, which also keeps the α² rows of one channel (stride `ldt`) off a power-of-two stride; the α²
/// GEMM outputs (stride `ldm`, `rows` rows each) get one more cache line so that they do not share cache
/// sets either.
#[derive(Clone, Copy)]
struct Strides {
    tc: usize,
    ldt: usize,
    ldm: usize,
}

impl Strides {
    fn new(tc: usize, rows: usize) -> Self {
        let ldt = padded(tc);
        Self { tc, ldt, ldm: rows * ldt + 16 }
    }
}

/// Runs `f(first image, images, scratch)` over the batch in equal chunks whose scratch, `need(images)`
/// elements, stays under `limit` (at least one image per chunk).
fn for_chunks<T: Float>(
    n: usize,
    need: impl Fn(usize) -> usize,
    limit: usize,
    mut f: impl FnMut(usize, usize, &mut [T]),
) {
    let ipc = images_per_chunk(n, need(n), limit);
    T::with_scratch(need(ipc), |scratch| {
        for i0 in (0..n).step_by(ipc) {
            let ni = ipc.min(n - i0);
            f(i0, ni, &mut scratch[..need(ni)]);
        }
    });
}

/// `V [Cin, α², ldt]` = `Bᵀ d B` for the tiles of images `i0..i0 + ni` of `x`, parallel over channels.
fn input_transform<T: Float, W: Tiling<M, A>, const M: usize, const A: usize>(
    s: &Sizes,
    grid: Grid,
    (x, i0, ni): (&[T], usize, usize),
    ldt: usize,
    v: &mut [T],
) {
    let hw = s.h * s.w;
    v.par_chunks_mut(A * A * ldt).enumerate().for_each(|(c, vc)| {
        let src = &x[(i0 * s.cin + c) * hw..];
        let planes = Planes { src, stride: s.cin * hw, images: ni, h: s.h, w: s.w, pad: s.pad };
        planes_in::<T, M, A, A>(&W::BT, planes, grid, vc, ldt);
    });
}

/// `y [N, Cout, oh, ow]` of the Winograd convolution of `x [N, Cin, h, w]` with `w [Cout, Cin, 3, 3]`.
fn forward_t<T: Float, W: Tiling<M, A>, const M: usize, const A: usize>(
    s: &Sizes,
    x: &[T],
    w: &[T],
    limit: usize,
) -> Vec<T> {
    let (cin, cout, ohw, aa, ldc) = (s.cin, s.cout, s.oh * s.ow, A * A, padded(s.cin));
    // U [Cout, α², ldc]: G g Gᵀ per (k, c).
    let mut u = vec![T::zero(); cout * aa * ldc];
    u.par_chunks_mut(aa * ldc).enumerate().for_each(|(k, uk)| {
        kernel_in::<T, A>(&W::G, &w[k * cin * 9..][..cin * 9], cin, uk, ldc);
    });
    let grid = Grid::new(s.oh, s.ow, M);
    let tpi = grid.per_image();
    let need = |ni: usize| {
        let st = Strides::new(ni * tpi, cout);
        aa * cin * st.ldt + aa * st.ldm
    };
    let mut y = vec![T::zero(); s.n * cout * ohw];
    for_chunks::<T>(s.n, need, limit, |i0, ni, scratch| {
        let st = Strides::new(ni * tpi, cout);
        let (v, mm) = scratch.split_at_mut(aa * cin * st.ldt);
        input_transform::<T, W, M, A>(s, grid, (x, i0, ni), st.ldt, v);
        let v = &*v;
        // M_ξ [Cout, ldt] = U_ξ · V_ξ, one GEMM per ξ.
        mm.par_chunks_mut(st.ldm).enumerate().for_each(|(xi, m)| {
            let (ux, vx) = (View::rm(&u[xi * ldc..], aa * ldc), View::rm(&v[xi * st.ldt..], aa * st.ldt));
            matmul(cout, st.tc, cin, m, st.ldt, false, ux, vx, Parallelism::None);
        });
        let mm = &*mm;
        y[i0 * cout * ohw..(i0 + ni) * cout * ohw].par_chunks_mut(ohw).enumerate().for_each(|(ik, yp)| {
            let base = (ik % cout) * st.ldt + (ik / cout) * tpi;
            plane_out::<T, M, A>(&W::AT, &mm[base..], st.ldm, grid, (s.oh, s.ow), yp);
        });
    });
    y
}

/// `dW [Cout, Cin, 3, 3]` of the Winograd convolution for input `x` and output gradient `dy`.
fn grad_weight_t<T: Float, W: Tiling<M, A>, const M: usize, const A: usize>(
    s: &Sizes,
    x: &[T],
    dy: &[T],
    limit: usize,
) -> Vec<T> {
    let (cin, cout, ohw, aa, ldc) = (s.cin, s.cout, s.oh * s.ow, A * A, padded(s.cin));
    let grid = Grid::new(s.oh, s.ow, M);
    let tpi = grid.per_image();
    let need = |ni: usize| aa * (cin + cout) * padded(ni * tpi);
    // dU [α², Cout, ldc], accumulated over the chunks.
    let mut du = vec![T::zero(); aa * cout * ldc];
    for_chunks::<T>(s.n, need, limit, |i0, ni, scratch| {
        let st = Strides::new(ni * tpi, 0);
        let (v, dm) = scratch.split_at_mut(aa * cin * st.ldt);
        input_transform::<T, W, M, A>(s, grid, (x, i0, ni), st.ldt, v);
        // dM [Cout, α², ldt]: A dY Aᵀ per tile.
        dm.par_chunks_mut(aa * st.ldt).enumerate().for_each(|(k, dmk)| {
            let src = &dy[(i0 * cout + k) * ohw..];
            let planes = Planes { src, stride: cout * ohw, images: ni, h: s.oh, w: s.ow, pad: 0 };
            planes_in::<T, M, M, A>(&W::AM, planes, grid, dmk, st.ldt);
        });
        let (v, dm) = (&*v, &*dm);
        du.par_chunks_mut(cout * ldc).enumerate().for_each(|(xi, dux)| {
            let ld = aa * st.ldt;
            let (dmx, vxt) = (View::rm(&dm[xi * st.ldt..], ld), View::rm_t(&v[xi * st.ldt..], ld));
            matmul(cout, cin, st.tc, dux, ldc, true, dmx, vxt, Parallelism::None);
        });
    });
    // dg = Gᵀ dU G per (k, c).
    let mut dw = vec![T::zero(); cout * cin * 9];
    dw.par_chunks_mut(cin * 9).enumerate().for_each(|(k, dwk)| {
        kernel_out::<T, A>(&W::GT, &du[k * ldc..], cout * ldc, cin, dwk);
    });
    dw
}

/// Winograd tiling of a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tile {
    /// F(2×2, 3×3): 2.25× fewer multiplications than direct convolution.
    F2,
    /// F(4×4, 3×3): 4× fewer multiplications, larger transforms, ~10× the f32 rounding error of F(2,3).
    F4,
}

/// Forward of a 3×3 stride-1 convolution `s` (weight `[Cout, Cin, 3, 3]`).
pub(crate) fn forward<T: Float>(tile: Tile, s: &Sizes, x: &[T], w: &[T]) -> Vec<T> {
    forward_limited(tile, s, x, w, CHUNK_ELEMS)
}

fn forward_limited<T: Float>(tile: Tile, s: &Sizes, x: &[T], w: &[T], limit: usize) -> Vec<T> {
    match tile {
        Tile::F2 => forward_t::<T, F2, 2, 4>(s, x, w, limit),
        Tile::F4 => forward_t::<T, F4, 4, 6>(s, x, w, limit),
    }
}

/// Input gradient of [`forward`]: the forward of the flipped, transposed kernel on `dy` with padding `2 − p`.
pub(crate) fn grad_input<T: Float>(tile: Tile, s: &Sizes, dy: &[T], w: &[T]) -> Vec<T> {
    let mut wf = vec![T::zero(); w.len()];
    for k in 0..s.cout {
        for c in 0..s.cin {
            for ij in 0..9 {
                wf[(c * s.cout + k) * 9 + 8 - ij] = w[(k * s.cin + c) * 9 + ij];
            }
        }
    }
    let t = Sizes { n: s.n, cin: s.cout, cout: s.cin, h: s.oh, w: s.ow, pad: 2 - s.pad, oh: s.h, ow: s.w };
    forward(tile, &t, dy, &wf)
}

/// Weight gradient of [`forward`].
pub(crate) fn grad_weight<T: Float>(tile: Tile, s: &Sizes, x: &[T], dy: &[T]) -> Vec<T> {
    grad_weight_limited(tile, s, x, dy, CHUNK_ELEMS)
}

fn grad_weight_limited<T: Float>(tile: Tile, s: &Sizes, x: &[T], dy: &[T], limit: usize) -> Vec<T> {
    match tile {
        Tile::F2 => grad_weight_t::<T, F2, 2, 4>(s, x, dy, limit),
        Tile::F4 => grad_weight_t::<T, F4, 4, 6>(s, x, dy, limit),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SegRng;

    fn uniform(n: usize, seed: u64) -> Vec<f64> {
        let mut rng = SegRng::new(seed);
        (0..n).map(|_| rng.uniform_range(-0.5, 0.5)).collect()
    }

    /// Direct 3×3 correlation, the reference for the chunked Winograd paths.
    fn direct(s: &Sizes, x: &[f64], w: &[f64]) -> Vec<f64> {
        let mut y = vec![0.0; s.n * s.cout * s.oh * s.ow];
        for (i, k, oy, ox) in output_pixels(s) {
            let mut acc = 0.0;
            for c in 0..s.cin {
                for a in 0..3 {
                    for b in 0..3 {
                        let (iy, ix) = ((oy + a) as isize - s.pad as isize, (ox + b) as isize - s.pad as isize);
                        if iy >= 0 && ix >= 0 && (iy as usize) < s.h && (ix as usize) < s.w {
                            let xv = x[((i * s.cin + c) * s.h + iy as usize) * s.w + ix as usize];
                            acc += xv * w[(k * s.cin + c) * 9 + a * 3 + b];
                        }
                    }
                }
            }
            y[((i * s.cout + k) * s.oh + oy) * s.ow + ox] = acc;
        }
        y
    }

    /// Every `(image, channel, row, column)` of the output.
    fn output_pixels(s: &Sizes) -> impl Iterator<Item = (usize, usize, usize, usize)> + '_ {
        (0..s.n).flat_map(move |i| {
            (0..s.cout).flat_map(move |k| (0..s.oh).flat_map(move |oy| (0..s.ow).map(move |ox| (i, k, oy, ox))))
        })
    }

    fn max_rel(a: &[f64], b: &[f64]) -> f64 {
        let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
        a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs())) / scale
    }

    #[test]
    fn chunk_sizes_are_balanced_and_bounded() {
        assert_eq!(images_per_chunk(4, 12, 100), 4);
        assert_eq!(images_per_chunk(4, 120, 100), 2);
        assert_eq!(images_per_chunk(5, 150, 100), 3);
        assert_eq!(images_per_chunk(3, 3000, 100), 1);
        assert_eq!(images_per_chunk(0, 0, 100), 1);
    }

    /// Several chunks (a small scratch limit, uneven last chunk) give the same forward and weight gradient
    /// as one chunk and as the direct convolution; the weight gradient is checked through the adjoint
    /// identity ⟨dy, conv(x, e_j)⟩ = dW_j.
    #[test]
    fn chunked_paths_match_direct() {
        let s = Sizes { n: 5, cin: 3, cout: 2, h: 9, w: 11, pad: 1, oh: 9, ow: 11 };
        let x = uniform(s.n * s.cin * s.h * s.w, 1);
        let w = uniform(s.cout * s.cin * 9, 2);
        let dy = uniform(s.n * s.cout * s.oh * s.ow, 3);
        for tile in [Tile::F2, Tile::F4] {
            let want = direct(&s, &x, &w);
            for limit in [1, 3000, CHUNK_ELEMS] {
                let y = forward_limited(tile, &s, &x, &w, limit);
                assert!(max_rel(&y, &want) < 1e-12, "{tile:?} limit {limit}: forward {}", max_rel(&y, &want));
                let dw = grad_weight_limited(tile, &s, &x, &dy, limit);
                let dw_ref: Vec<f64> = (0..w.len())
                    .map(|j| {
                        let mut e = vec![0.0; w.len()];
                        e[j] = 1.0;
                        direct(&s, &x, &e).iter().zip(&dy).map(|(a, b)| a * b).sum()
                    })
                    .collect();
                assert!(max_rel(&dw, &dw_ref) < 1e-12, "{tile:?} limit {limit}: dW {}", max_rel(&dw, &dw_ref));
            }
        }
    }
}
