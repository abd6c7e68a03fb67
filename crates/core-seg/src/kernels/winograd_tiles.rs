//! The tile transforms of Winograd F(M×M, 3×3) ([`super::winograd`]): the matrices, and the per-channel
//! input, output and kernel transforms.
//!
//! A transform handles [`LANES`] horizontally adjacent tiles (or, for kernels, input channels) at once as
//! lane vectors, so its arithmetic vectorises across tiles; zero entries of the constant matrices are
//! skipped at compile time. Every lane vector is read and written whole: the tile axis of each buffer is
//! padded to a multiple of [`LANES`] plus [`LANES`] (see [`padded`]), and the lanes past the last tile of a
//! row land either in that padding or in slots that are written later. Each per-channel task is compiled
//! twice and picks AVX2 at run time when the CPU has it (8-wide instead of SSE2's 4-wide arithmetic).

use super::Float;

/// Transform matrices of one Winograd tiling F(M×M, 3×3), α = `A` = `M` + 2.
pub(crate) trait Tiling<const M: usize, const A: usize> {
    /// Input transform `Bᵀ`.
    const BT: [[f64; A]; A];
    /// Kernel transform `G`.
    const G: [[f64; 3]; A];
    /// Output transform `Aᵀ`.
    const AT: [[f64; A]; M];
    const GT: [[f64; A]; 3] = transpose(Self::G);
    const AM: [[f64; M]; A] = transpose(Self::AT);
}

const fn transpose<const R: usize, const C: usize>(m: [[f64; C]; R]) -> [[f64; R]; C] {
    let mut t = [[0.0; R]; C];
    let mut r = 0;
    while r < R {
        let mut c = 0;
        while c < C {
            t[c][r] = m[r][c];
            c += 1;
        }
        r += 1;
    }
    t
}

/// F(2×2, 3×3): interpolation points 0, ±1, ∞.
pub(crate) struct F2;
impl Tiling<2, 4> for F2 {
    const BT: [[f64; 4]; 4] = [[1., 0., -1., 0.], [0., 1., 1., 0.], [0., -1., 1., 0.], [0., 1., 0., -1.]];
    const G: [[f64; 3]; 4] = [[1., 0., 0.], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0., 0., 1.]];
    const AT: [[f64; 4]; 2] = [[1., 1., 1., 0.], [0., 1., -1., -1.]];
}

/// F(4×4, 3×3): interpolation points 0, ±1, ±2, ∞.
pub(crate) struct F4;
impl Tiling<4, 6> for F4 {
    const BT: [[f64; 6]; 6] = [
        [4., 0., -5., 0., 1., 0.],
        [0., -4., -4., 1., 1., 0.],
        [0., 4., -4., -1., 1., 0.],
        [0., -2., -1., 2., 1., 0.],
        [0., 2., -1., -2., 1., 0.],
        [0., 4., 0., -5., 0., 1.],
    ];
    const G: [[f64; 3]; 6] = [
        [1. / 4., 0., 0.],
        [-1. / 6., -1. / 6., -1. / 6.],
        [-1. / 6., 1. / 6., -1. / 6.],
        [1. / 24., 1. / 12., 1. / 6.],
        [1. / 24., -1. / 12., 1. / 6.],
        [0., 0., 1.],
    ];
    const AT: [[f64; 6]; 4] =
        [[1., 1., 1., 1., 1., 0.], [0., 1., -1., 2., -2., 0.], [0., 1., 1., 4., 4., 0.], [0., 1., -1., 8., -8., 1.]];
}

/// Tiles (or kernel channels) transformed together.
pub(crate) const LANES: usize = 8;
type Lane<T> = [T; LANES];

/// A tile-axis length padded for whole-lane reads and writes: a multiple of [`LANES`], plus [`LANES`].
pub(crate) fn padded(len: usize) -> usize {
    len.next_multiple_of(LANES) + LANES
}

/// `mat · d · matᵀ` for a constant `mat [R, C]` and a `C × C` patch of lane vectors.
#[inline(always)]
fn sandwich<T: Float, const R: usize, const C: usize>(mat: &[[f64; C]; R], d: &[[Lane<T>; C]; C]) -> [[Lane<T>; R]; R] {
    let mut left = [[[T::zero(); LANES]; C]; R];
    for r in 0..R {
        for i in 0..C {
            if mat[r][i] == 0.0 {
                continue;
            }
            let m = T::from_f64_(mat[r][i]);
            for j in 0..C {
                for l in 0..LANES {
                    left[r][j][l] += m * d[i][j][l];
                }
            }
        }
    }
    let mut out = [[[T::zero(); LANES]; R]; R];
    for r in 0..R {
        for s in 0..R {
            for j in 0..C {
                if mat[s][j] == 0.0 {
                    continue;
                }
                let m = T::from_f64_(mat[s][j]);
                for l in 0..LANES {
                    out[r][s][l] += left[r][j][l] * m;
                }
            }
        }
    }
    out
}

/// Tile grid of one image.
#[derive(Clone, Copy)]
pub(crate) struct Grid {
    pub th: usize,
    pub tw: usize,
}

impl Grid {
    pub fn new(oh: usize, ow: usize, m: usize) -> Self {
        Self { th: oh.div_ceil(m), tw: ow.div_ceil(m) }
    }
    pub fn per_image(&self) -> usize {
        self.th * self.tw
    }
    /// The groups of [`LANES`] tiles: `(ty, first tx, tile index within the image)`. The transforms loop over
    /// these in their own bodies: work passed in as a closure would be compiled apart from the AVX2 copy of
    /// its caller (a closure does not inherit `target_feature`).
    #[inline(always)]
    fn groups(&self) -> impl Iterator<Item = (usize, usize, usize)> {
        let tw = self.tw;
        (0..self.th).flat_map(move |ty| (0..tw).step_by(LANES).map(move |tx0| (ty, tx0, ty * tw + tx0)))
    }
}

/// The planes of one channel for a run of images: plane `i` is `src[i·stride..][..h·w]`, read through a
/// `pad`-wide zero border.
#[derive(Clone, Copy)]
pub(crate) struct Planes<'a, T> {
    pub src: &'a [T],
    pub stride: usize,
    pub images: usize,
    pub h: usize,
    pub w: usize,
    pub pad: usize,
}

simd_dispatch! {
    /// For every tile of every image, the `P × P` patch at `(ty·M − pad, tx·M − pad)` transformed by
    /// `mat · d · matᵀ`, stored at `out[ξ·ld + i·tiles_per_image + t]` (`[α², ld]` layout, `ld` ≥
    /// [`padded`] of the tiles).
    pub(crate) fn planes_in[T: Float, const M: usize, const P: usize, const A: usize](
        mat: &[[f64; P]; A], planes: Planes<'_, T>, grid: Grid, out: &mut [T], ld: usize,
    ) => planes_in_body::<T, M, P, A>
}

#[inline(always)]
fn planes_in_body<T: Float, const M: usize, const P: usize, const A: usize>(
    mat: &[[f64; P]; A],
    planes: Planes<'_, T>,
    grid: Grid,
    out: &mut [T],
    ld: usize,
) {
    // Zero-padded copy of each plane: `pad` rows/columns before it, enough after it for every lane.
    let (ph, pw) = (grid.th * M + P - M, grid.tw.next_multiple_of(LANES) * M + P - M);
    let mut pp = vec![T::zero(); ph * pw];
    let seg_len = (LANES - 1) * M + P;
    let (rows, cols) = (planes.h.min(ph.saturating_sub(planes.pad)), planes.w.min(pw.saturating_sub(planes.pad)));
    for i in 0..planes.images {
        let plane = &planes.src[i * planes.stride..][..planes.h * planes.w];
        for (y, row) in plane.chunks_exact(planes.w).take(rows).enumerate() {
            pp[(y + planes.pad) * pw + planes.pad..][..cols].copy_from_slice(&row[..cols]);
        }
        let t0 = i * grid.per_image();
        for (ty, tx0, t) in grid.groups() {
            let mut d = [[[T::zero(); LANES]; P]; P];
            for (a, da) in d.iter_mut().enumerate() {
                let seg = &pp[(ty * M + a) * pw + tx0 * M..][..seg_len];
                for (b, dab) in da.iter_mut().enumerate() {
                    *dab = std::array::from_fn(|l| seg[l * M + b]);
                }
            }
            for (xi, v) in sandwich(mat, &d).iter().flatten().enumerate() {
                out[xi * ld + t0 + t..][..LANES].copy_from_slice(v);
            }
        }
    }
}

simd_dispatch! {
    /// The output plane `y [oh, ow]` of one (image, channel) from `M_ξ` at `mm[ξ·ld + t]`: `Aᵀ · A` per
    /// tile, writing the part of each tile that lies inside the plane.
    pub(crate) fn plane_out[T: Float, const M: usize, const A: usize](
        at: &[[f64; A]; M], mm: &[T], ld: usize, grid: Grid, oh_ow: (usize, usize), y: &mut [T],
    ) => plane_out_body::<T, M, A>
}

#[inline(always)]
fn plane_out_body<T: Float, const M: usize, const A: usize>(
    at: &[[f64; A]; M],
    mm: &[T],
    ld: usize,
    grid: Grid,
    (oh, ow): (usize, usize),
    y: &mut [T],
) {
    for (ty, tx0, t) in grid.groups() {
        let nl = (grid.tw - tx0).min(LANES);
        let mut d = [[[T::zero(); LANES]; A]; A];
        for (xi, dx) in d.iter_mut().flatten().enumerate() {
            dx.copy_from_slice(&mm[xi * ld + t..][..LANES]);
        }
        let yt = sandwich(at, &d);
        let whole = nl == LANES && (tx0 + LANES) * M <= ow;
        for (a, ya) in yt.iter().enumerate().take(oh.saturating_sub(ty * M)) {
            let row = &mut y[(ty * M + a) * ow..][..ow];
            if whole {
                let seg = &mut row[tx0 * M..][..LANES * M];
                for (b, yab) in ya.iter().enumerate() {
                    for (l, &v) in yab.iter().enumerate() {
                        seg[l * M + b] = v;
                    }
                }
            } else {
                for l in 0..nl {
                    for (b, yab) in ya.iter().enumerate() {
                        if let Some(o) = row.get_mut((tx0 + l) * M + b) {
                            *o = yab[l];
                        }
                    }
                }
            }
        }
    }
}

simd_dispatch! {
    /// `uk [α², ld]` = `G g_c Gᵀ` for the 3×3 kernels `g_c = gk[c·9..][..9]` of `cin` channels (`ld` ≥
    /// [`padded`]`(cin)`).
    pub(crate) fn kernel_in[T: Float, const A: usize](g: &[[f64; 3]; A], gk: &[T], cin: usize, uk: &mut [T], ld: usize)
        => kernel_in_body::<T, A>
}

#[inline(always)]
fn kernel_in_body<T: Float, const A: usize>(g: &[[f64; 3]; A], gk: &[T], cin: usize, uk: &mut [T], ld: usize) {
    let mut tail = [T::zero(); 9 * LANES];
    for c0 in (0..cin).step_by(LANES) {
        let seg = match gk.get(c0 * 9..(c0 + LANES) * 9) {
            Some(seg) => seg,
            None => {
                let n = (cin - c0) * 9;
                tail[..n].copy_from_slice(&gk[c0 * 9..][..n]);
                tail[n..].fill(T::zero());
                &tail[..]
            }
        };
        let mut d = [[[T::zero(); LANES]; 3]; 3];
        for (ij, dij) in d.iter_mut().flatten().enumerate() {
            *dij = std::array::from_fn(|l| seg[l * 9 + ij]);
        }
        for (xi, v) in sandwich(g, &d).iter().flatten().enumerate() {
            uk[xi * ld + c0..][..LANES].copy_from_slice(v);
        }
    }
}

simd_dispatch! {
    /// The 3×3 kernel gradients `dwk [cin, 3, 3]` = `Gᵀ dU_c G` of one output channel, `dU_c` read as
    /// `du[ξ·ld + c]` (`ld` ≥ [`padded`]`(cin)`).
    pub(crate) fn kernel_out[T: Float, const A: usize](gt: &[[f64; A]; 3], du: &[T], ld: usize, cin: usize, dwk: &mut [T])
        => kernel_out_body::<T, A>
}

#[inline(always)]
fn kernel_out_body<T: Float, const A: usize>(gt: &[[f64; A]; 3], du: &[T], ld: usize, cin: usize, dwk: &mut [T]) {
    for c0 in (0..cin).step_by(LANES) {
        let mut d = [[[T::zero(); LANES]; A]; A];
        for (xi, dv) in d.iter_mut().flatten().enumerate() {
            dv.copy_from_slice(&du[xi * ld + c0..][..LANES]);
        }
        let g = sandwich(gt, &d);
        for (l, dwc) in dwk[c0 * 9..].chunks_exact_mut(9).take(LANES).enumerate() {
            for (ij, v) in g.iter().flatten().enumerate() {
                dwc[ij] = v[l];
            }
        }
    }
}
