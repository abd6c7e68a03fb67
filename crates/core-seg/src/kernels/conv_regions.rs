//! Batch-concatenated convolution by output regions: dilated kernels on small maps without the padding taps.
//!
//! With padding = dilation on a map not much larger than the dilation (DeepLabV3+'s ASPP at rate 6 on the
//! 10² maps of a 160² crop at output stride 16; dilations 2, 4 and 6 on the 8² maps of an output-stride-8
//! backbone at a 64² crop), most kernel taps fall on padding for most output pixels: a 3×3 kernel at
//! dilation 6 on an 8² map reads the image at a quarter of its tap positions, and im2col + GEMM multiplies
//! the other three quarters by zero. Here each output axis is cut where a kernel tap enters or leaves the
//! image, so that on each piece a tap is inside the image for every pixel or for none. A region (a row
//! piece × a column piece) is its own small convolution over its live taps only; with `T_r` live taps and
//! `P_r` pixels, batch folded into the columns:
//!
//! - forward: `Y_r [Cout, N·P_r] = W_r [Cout, Cin·T_r] · cols_r [Cin·T_r, N·P_r]`, pixels of regions without
//!   a live tap are zero;
//! - input gradient: `dx += col2im_r(W_rᵀ · dY_r)`;
//! - weight gradient: `dW[live taps of r] += dY_r · cols_rᵀ`.
//!
//! No element of `cols_r` is padding, so the GEMMs do only the multiply-adds that touch the image. The
//! regions run in parallel, one single-threaded GEMM each. [`pays`] takes this path when it removes at least
//! half of the GEMM work of the live-window im2col ([`super::im2col::Geom`]); ungrouped convolutions only.
//! Measured on a 2-core Xeon (AVX-512), batch 8, 8² maps, forward + backward ms, im2col → regions: 128→128 at
//! dilation 4 (44 % of the taps live) 3.19 → 2.16, 128→64 at dilation 6 (25 %) 2.48 → 1.76; at dilation 2
//! (69 % live) the nine small GEMMs lose, 64→64 1.53 → 1.73.
//!
//! The input gradient's col2im sums channels-last (`dcols_rᵀ [N·P_r, T_r·Cin]`), one `Cin`-long add per pixel
//! and tap instead of one per region row (2–4 values at dilation 6 on an 8² map), then transposes each image
//! into its planes. Same machine, 2 threads, 2026-12-04, backward ms, region rows → whole pixels: 512→256 at
//! dilation 6, batch 16 (ResNet-18's ASPP at a 128² crop) 14.9 → 13.1; 128→128 at dilation 4, batch 8,
//! 1.26 → 1.07. Gathering the forward's columns channels-last as well made the forward slower (the GEMM
//! then reads them transposed): 0.42 → 0.49 ms at 128→128, dilation 4.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::gemm_glue::{matmul, Parallelism, View};
use super::im2col::Geom;
use super::{new_filled, Float};

/// An output range along one axis and the kernel indices that are inside the image for all of it.
#[derive(Debug, Clone, PartialEq)]
struct Piece {
    lo: usize,
    hi: usize,
    taps: Vec<usize>,
}

/// The pieces of one axis (`len` input and `out` output positions, `k` kernel taps): cut at every position
/// where a tap's valid output range starts or ends.
fn pieces(g: &Geom, len: usize, out: usize, k: usize) -> Vec<Piece> {
    let ranges: Vec<(usize, usize)> = (0..k).map(|t| g.valid_range(t, len, out)).collect();
    let mut cuts: Vec<usize> = ranges.iter().flat_map(|&(a, b)| [a, b]).chain([0, out]).collect();
    cuts.sort_unstable();
    cuts.dedup();
    cuts.windows(2)
        .map(|w| Piece {
            lo: w[0],
            hi: w[1],
            taps: (0..k).filter(|&t| ranges[t].0 <= w[0] && w[1] <= ranges[t].1).collect(),
        })
        .collect()
}

/// One region: row and column pieces and its live taps `(ki, kj)`.
struct Region<'a> {
    rows: &'a Piece,
    cols: &'a Piece,
}

impl Region<'_> {
    fn pixels(&self) -> usize {
        (self.rows.hi - self.rows.lo) * (self.cols.hi - self.cols.lo)
    }
    /// The output pixels `(oy, ox)`, row-major.
    fn positions(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        (self.rows.lo..self.rows.hi).flat_map(move |oy| (self.cols.lo..self.cols.hi).map(move |ox| (oy, ox)))
    }
    fn taps(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.rows.taps.iter().flat_map(|&i| self.cols.taps.iter().map(move |&j| (i, j)))
    }
    fn ntaps(&self) -> usize {
        self.rows.taps.len() * self.cols.taps.len()
    }
}

/// The regions of `g` with at least one live tap.
fn regions<'a>(rows: &'a [Piece], cols: &'a [Piece]) -> impl Iterator<Item = Region<'a>> {
    rows.iter().flat_map(move |r| cols.iter().map(move |c| Region { rows: r, cols: c })).filter(|r| r.ntaps() > 0)
}

fn axes(g: &Geom) -> (Vec<Piece>, Vec<Piece>) {
    (pieces(g, g.h, g.oh, g.kh), pieces(g, g.w, g.ow, g.kw))
}

/// Whether the region path removes at least half of the multiply-adds of the live-window im2col.
pub(crate) fn pays(g: &Geom) -> bool {
    if g.groups != 1 || g.kh * g.kw == 1 {
        return false;
    }
    let (rows, cols) = axes(g);
    let live: usize = regions(&rows, &cols).map(|r| r.pixels() * r.ntaps()).sum();
    2 * live <= g.p() * g.nki * g.nkj
}

/// `cols_r [T_r·Cin, N·P_r]` of region `r`: row `(t, c)`, column `(image, pixel)`.
fn build_cols<T: Float>(g: &Geom, r: &Region, x: &[T], cols: &mut [T]) {
    let (pr, hw, cw) = (r.pixels(), g.h * g.w, r.cols.hi - r.cols.lo);
    // Per tap, the plane index of the region's first pixel; the region's rows are `stride·W` apart.
    let starts: Vec<usize> = r.taps().map(|t| input_index(g, (r.rows.lo, r.cols.lo), t)).collect();
    let row_step = g.stride * g.w;
    for (k, row) in cols.chunks_mut(g.n * pr).enumerate() {
        let (c, start) = (k % g.cin, starts[k / g.cin]);
        for (i, dst) in row.chunks_exact_mut(pr).enumerate() {
            let src = &x[(i * g.cin + c) * hw + start..(i * g.cin + c + 1) * hw];
            for (seg, from) in dst.chunks_exact_mut(cw).zip(src.chunks(row_step)) {
                copy_strided(seg, from, g.stride);
            }
        }
    }
}

/// `dst[i] = src[i·stride]`. Region rows are a few pixels long (2–4 at dilation 6 on an 8² map), where a
/// `memcpy` call costs more than the copy itself.
#[inline(always)]
fn copy_strided<T: Float>(dst: &mut [T], src: &[T], stride: usize) {
    if stride == 1 {
        copy_short(dst, src);
    } else {
        dst.iter_mut().zip(src.iter().step_by(stride)).for_each(|(d, v)| *d = *v);
    }
}

/// `dst = src[..dst.len()]`, as fixed-size moves for up to 8 elements (a `memcpy` call otherwise: the
/// compiler turns element loops into one too).
#[inline(always)]
fn copy_short<T: Float>(dst: &mut [T], src: &[T]) {
    macro_rules! fixed {
        ($($n:literal)*) => {
            match dst.len() {
                $($n => {
                    if let (Ok(d), Ok(s)) = (<&mut [T; $n]>::try_from(&mut dst[..]), <&[T; $n]>::try_from(&src[..$n])) {
                        *d = *s;
                    }
                })*
                n => dst.copy_from_slice(&src[..n]),
            }
        };
    }
    fixed!(1 2 3 4 5 6 7 8)
}

/// Flat index in an input plane of tap `(ki, kj)` of output pixel `(oy, ox)` (inside the image by construction).
#[inline(always)]
fn input_index(g: &Geom, (oy, ox): (usize, usize), (ki, kj): (usize, usize)) -> usize {
    (oy * g.stride + ki * g.dil - g.pad) * g.w + ox * g.stride + kj * g.dil - g.pad
}

/// The weight `[Cout, Cin, kh, kw]` tap-major, `[kh·kw, Cout·Cin]`: one pass, after which every region's
/// weight is a row of contiguous `Cin`-long copies.
fn tap_major<T: Float>(g: &Geom, w: &[T]) -> Vec<T> {
    let (kk, oc_n) = (g.kh * g.kw, g.cout * g.cin);
    let mut out = Vec::with_capacity(kk * oc_n);
    for t in 0..kk {
        out.extend(w.iter().skip(t).step_by(kk));
    }
    out
}

/// `W_r [Cout, T_r·Cin]` (column `(t, c)`) from the tap-major weight `wt` ([`tap_major`]).
fn region_weight<T: Float>(g: &Geom, r: &Region, wt: &[T]) -> Vec<T> {
    let (cin, oc_n) = (g.cin, g.cout * g.cin);
    let mut out = Vec::with_capacity(oc_n * r.ntaps());
    for co in 0..g.cout {
        for (ki, kj) in r.taps() {
            let t = ki * g.kw + kj;
            out.extend_from_slice(&wt[t * oc_n + co * cin..t * oc_n + (co + 1) * cin]);
        }
    }
    out
}

/// `dY_r [Cout, N·P_r]` gathered from `dy [N, Cout, oh, ow]`.
fn gather_dy<T: Float>(g: &Geom, r: &Region, dy: &[T], out: &mut [T]) {
    let (pr, p, cw) = (r.pixels(), g.p(), r.cols.hi - r.cols.lo);
    let fill = |co: usize, row: &mut [T]| {
        for i in 0..g.n {
            let plane = &dy[(i * g.cout + co) * p..(i * g.cout + co + 1) * p];
            let dst = &mut row[i * pr..(i + 1) * pr];
            for (oy, seg) in (r.rows.lo..r.rows.hi).zip(dst.chunks_exact_mut(cw)) {
                copy_short(seg, &plane[oy * g.ow + r.cols.lo..oy * g.ow + r.cols.hi]);
            }
        }
    };
    out.chunks_mut(g.n * pr).enumerate().for_each(|(co, row)| fill(co, row));
}

/// Forward: `y [N, Cout, oh, ow]`, every element written. Regions run in parallel, one single-threaded GEMM
/// each (a region's GEMM is too small to split).
pub(crate) fn forward<T: Float>(g: &Geom, x: &[T], w: &[T]) -> Vec<T> {
    let (rows, cols) = axes(g);
    let all: Vec<Region> = regions(&rows, &cols).collect();
    let wt = tap_major(g, w);
    let outs: Vec<Vec<T>> = all
        .par_iter()
        .map(|r| {
            let (np, kr) = (g.n * r.pixels(), g.cin * r.ntaps());
            let wr = region_weight(g, r, &wt);
            let mut yr = vec![T::zero(); g.cout * np];
            T::with_scratch(kr * np, |cr| {
                build_cols(g, r, x, cr);
                matmul(g.cout, np, kr, &mut yr, np, false, View::rm(&wr, kr), View::rm(cr, np), Parallelism::None);
            });
            yr
        })
        .collect();
    let mut y = vec![T::zero(); g.n * g.out_len()];
    y.par_chunks_mut(g.p()).enumerate().for_each(|(plane, yp)| {
        let (i, co) = (plane / g.cout, plane % g.cout);
        for (r, yr) in all.iter().zip(&outs) {
            let (pr, cw) = (r.pixels(), r.cols.hi - r.cols.lo);
            let np = g.n * pr;
            let src = &yr[co * np + i * pr..co * np + (i + 1) * pr];
            for (oy, seg) in (r.rows.lo..r.rows.hi).zip(src.chunks_exact(cw)) {
                copy_short(&mut yp[oy * g.ow + r.cols.lo..oy * g.ow + r.cols.hi], seg);
            }
        }
    });
    y
}

/// Input gradient `dx [N, Cin, H, W]`: `dcols_rᵀ = dY_rᵀ · W_r` of every region in parallel, then col2im per
/// image in channels-last order (one `Cin`-long add per pixel and tap).
pub(crate) fn grad_input<T: Float>(g: &Geom, dy: &[T], w: &[T]) -> Vec<T> {
    let (rows, cols) = axes(g);
    let all: Vec<Region> = regions(&rows, &cols).collect();
    let wt = tap_major(g, w);
    let dcols: Vec<Vec<T>> = all
        .par_iter()
        .map(|r| {
            let (np, kr) = (g.n * r.pixels(), g.cin * r.ntaps());
            let wr = region_weight(g, r, &wt);
            let mut dc = vec![T::zero(); np * kr];
            T::with_scratch(g.cout * np, |dyr| {
                gather_dy(g, r, dy, dyr);
                let (d, wv) = (View::rm_t(dyr, np), View::rm(&wr, kr));
                matmul(np, kr, g.cout, &mut dc, kr, false, d, wv, Parallelism::None);
            });
            dc
        })
        .collect();
    // col2im per image: channels-last in a scratch buffer (whole-pixel adds), then into the image's planes.
    let (cin, hw) = (g.cin, g.h * g.w);
    let taps: Vec<Vec<(usize, usize)>> = all.iter().map(|r| r.taps().collect()).collect();
    let fill = |dx: &mut [MaybeUninit<T>]| {
        dx.par_chunks_mut(hw * cin).enumerate().for_each(|(i, out)| {
            T::with_scratch(hw * cin, |img| {
                let img = &mut img[..hw * cin];
                img.fill(T::zero());
                for ((r, dc), taps) in all.iter().zip(&dcols).zip(&taps) {
                    let (pr, kr) = (r.pixels(), cin * taps.len());
                    for (pos, row) in r.positions().zip(dc[i * pr * kr..(i + 1) * pr * kr].chunks_exact(kr)) {
                        for (&tap, src) in taps.iter().zip(row.chunks_exact(cin)) {
                            let s = input_index(g, pos, tap) * cin;
                            img[s..s + cin].iter_mut().zip(src).for_each(|(d, v)| *d += *v);
                        }
                    }
                }
                for (c, plane) in out.chunks_exact_mut(hw).enumerate() {
                    plane.iter_mut().zip(img[c..].iter().step_by(cin)).for_each(|(d, v)| {
                        d.write(*v);
                    });
                }
            });
        });
    };
    let len = g.n * g.in_len();
    // SAFETY: `fill` writes every element: each image's `Cin` planes in full (`hw` values each, from the
    // `hw`-long stride-`Cin` walk over the scratch buffer).
    unsafe { new_filled(len, len, fill) }
}

/// Weight gradient `dW [Cout, Cin, kh, kw]` (zero on taps that never touch the image): every region's
/// `dY_r · cols_rᵀ` in parallel, then summed into the taps.
pub(crate) fn grad_weight<T: Float>(g: &Geom, x: &[T], dy: &[T]) -> Vec<T> {
    let (rows, cols) = axes(g);
    let all: Vec<Region> = regions(&rows, &cols).collect();
    let parts: Vec<Vec<T>> = all
        .par_iter()
        .map(|r| {
            let (np, kr) = (g.n * r.pixels(), g.cin * r.ntaps());
            let mut dwr = vec![T::zero(); g.cout * kr];
            T::with_scratch(kr * np + g.cout * np, |buf| {
                let (cr, dyr) = buf.split_at_mut(kr * np);
                build_cols(g, r, x, cr);
                gather_dy(g, r, dy, dyr);
                let (d, c) = (View::rm(dyr, np), View::rm_t(cr, np));
                matmul(g.cout, kr, np, &mut dwr, kr, false, d, c, Parallelism::None);
            });
            dwr
        })
        .collect();
    let mut dw = vec![T::zero(); g.cout * g.cin * g.kh * g.kw];
    for (r, dwr) in all.iter().zip(&parts) {
        for (co, src) in dwr.chunks_exact(g.cin * r.ntaps()).enumerate() {
            for ((ki, kj), tap_row) in r.taps().zip(src.chunks_exact(g.cin)) {
                for (c, v) in tap_row.iter().enumerate() {
                    dw[((co * g.cin + c) * g.kh + ki) * g.kw + kj] += *v;
                }
            }
        }
    }
    dw
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::ConvParams;

    fn geom(h: usize, w: usize, d: usize) -> Geom {
        let cfg = ConvParams { stride: 1, padding: d, dilation: d, groups: 1 };
        Geom::new("test", (2, 3, h, w), (4, 3, 3, 3), cfg).expect("geometry")
    }

    #[test]
    fn pieces_cut_where_taps_enter_or_leave_the_image() {
        // Dilation 6 on 8 pixels: tap 0 (offset −6) is inside for outputs 6..8, tap 2 (+6) for 0..2.
        let g = geom(8, 8, 6);
        let p = pieces(&g, 8, 8, 3);
        let want = [(0, 2, vec![1, 2]), (2, 6, vec![1]), (6, 8, vec![0, 1])];
        assert_eq!(p, want.map(|(lo, hi, taps)| Piece { lo, hi, taps }).to_vec());
        assert!(pays(&g));
        // Dilation 4: 44 % of the tap positions are inside; dilation 2: 69 %, and dilation 1 loses only the
        // border taps: not worth nine GEMMs.
        assert!(pays(&geom(8, 8, 4)));
        assert!(!pays(&geom(8, 8, 2)));
        assert!(!pays(&geom(8, 8, 1)));
        // Dilation 12 on 8 pixels: the live window is the centre tap already (a 1×1 GEMM).
        assert!(!pays(&geom(8, 8, 12)));
        // Dilation 2 on a 4×5 map: 49 % of the tap positions are inside.
        assert!(pays(&geom(4, 5, 2)));
    }
}
