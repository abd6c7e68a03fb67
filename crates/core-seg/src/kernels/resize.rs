//! Direct bilinear resize (`F.interpolate(mode="bilinear")`), forward and backward.
//!
//! Per axis, output index `i` reads source `src(i)` (align_corners: `i·(in − 1)/(out − 1)`; otherwise
//! `max((i + ½)·in/out − ½, 0)`), taps `i₀ = min(⌊src⌋, in − 1)`, `i₁ = min(i₀ + 1, in − 1)`, weights
//! `(1 − λ, λ)` with `λ = src − i₀` — the rule of [`crate::ops::interp_matrix`]. Then
//! `y[oy, ox] = Σ_{a,b} wy_a·wx_b·x[iy_a, ix_b]`; the backward scatters `dy` with the same four weights.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous_slice, new_filled, require_cpu_or_cuda, unsupported_dtype, Float};

const OP: &str = "kernels::resize_bilinear";

/// Bilinear resize of `x [N, C, H, W]` to `[N, C, oh, ow]`, differentiable in `x`.
pub fn resize_bilinear(x: &Tensor, (oh, ow): (usize, usize), align_corners: bool) -> Result<Tensor> {
    require_cpu_or_cuda(OP, x)?;
    let (_, _, h, w) = x.dims4()?;
    if oh == 0 || ow == 0 || h == 0 || w == 0 {
        candle_core::bail!("{OP}: empty size {h}x{w} -> {oh}x{ow}");
    }
    if (h, w) == (oh, ow) {
        return Ok(x.clone());
    }
    x.contiguous()?.apply_op1(ResizeOp { oh, ow, align_corners })
}

/// Taps `(i₀, i₁, λ)` for each output index along one axis.
fn taps(inp: usize, out: usize, align_corners: bool) -> Vec<(usize, usize, f64)> {
    (0..out)
        .map(|i| {
            let src = if align_corners {
                if out > 1 {
                    i as f64 * (inp as f64 - 1.0) / (out as f64 - 1.0)
                } else {
                    0.0
                }
            } else {
                ((i as f64 + 0.5) * inp as f64 / out as f64 - 0.5).max(0.0)
            };
            let i0 = (src.floor() as usize).min(inp - 1);
            let i1 = (i0 + 1).min(inp - 1);
            (i0, i1, src - i0 as f64)
        })
        .collect()
}

/// Typed taps: `(i₀, i₁, 1 − λ, λ)`.
fn typed<T: Float>(t: &[(usize, usize, f64)]) -> Vec<(usize, usize, T, T)> {
    t.iter().map(|&(a, b, l)| (a, b, T::from_f64_(1.0 - l), T::from_f64_(l))).collect()
}

fn forward<T: Float>(
    x: &[T],
    (h, w): (usize, usize),
    ty: &[(usize, usize, f64)],
    tx: &[(usize, usize, f64)],
) -> Vec<T> {
    let (oh, ow) = (ty.len(), tx.len());
    let (ty, tx) = (typed::<T>(ty), typed::<T>(tx));
    let len = x.len() / (h * w) * oh * ow;
    let fill = |y: &mut [MaybeUninit<T>]| {
        y.par_chunks_mut(oh * ow).zip(x.par_chunks(h * w)).for_each(|(yo, xi)| {
            for (oy, &(y0, y1, wy0, wy1)) in ty.iter().enumerate() {
                let (r0, r1) = (&xi[y0 * w..(y0 + 1) * w], &xi[y1 * w..(y1 + 1) * w]);
                for (o, &(x0, x1, wx0, wx1)) in yo[oy * ow..(oy + 1) * ow].iter_mut().zip(&tx) {
                    o.write(wy0 * (wx0 * r0[x0] + wx1 * r0[x1]) + wy1 * (wx0 * r1[x0] + wx1 * r1[x1]));
                }
            }
        })
    };
    // SAFETY: `fill` writes every output plane (one per input plane), row by row over all `oh` rows and `ow`
    // columns (`tx` has `ow` entries).
    unsafe { new_filled(len, len, fill) }
}

fn backward<T: Float>(
    dy: &[T],
    (h, w): (usize, usize),
    ty: &[(usize, usize, f64)],
    tx: &[(usize, usize, f64)],
) -> Vec<T> {
    let (oh, ow) = (ty.len(), tx.len());
    let (ty, tx) = (typed::<T>(ty), typed::<T>(tx));
    let mut dx = vec![T::zero(); dy.len() / (oh * ow) * h * w];
    dx.par_chunks_mut(h * w).zip(dy.par_chunks(oh * ow)).for_each(|(d, g)| {
        for (oy, &(y0, y1, wy0, wy1)) in ty.iter().enumerate() {
            for (gv, &(x0, x1, wx0, wx1)) in g[oy * ow..(oy + 1) * ow].iter().zip(&tx) {
                let (a, b) = (wy0 * *gv, wy1 * *gv);
                d[y0 * w + x0] += wx0 * a;
                d[y0 * w + x1] += wx1 * a;
                d[y1 * w + x0] += wx0 * b;
                d[y1 * w + x1] += wx1 * b;
            }
        }
    });
    dx
}

struct ResizeOp {
    oh: usize,
    ow: usize,
    align_corners: bool,
}

impl CustomOp1 for ResizeOp {
    fn name(&self) -> &'static str {
        "kernels-resize-bilinear"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l.shape().dims4()?;
        let ty = taps(h, self.oh, self.align_corners);
        let tx = taps(w, self.ow, self.align_corners);
        let y = match s {
            CpuStorage::F32(_) => CpuStorage::F32(forward::<f32>(contiguous_slice(OP, s, l)?, (h, w), &ty, &tx)),
            CpuStorage::F64(_) => CpuStorage::F64(forward::<f64>(contiguous_slice(OP, s, l)?, (h, w), &ty, &tx)),
            _ => return unsupported_dtype(OP, s),
        };
        Ok((y, Shape::from((n, c, self.oh, self.ow))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &candle_core::CudaStorage, l: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        super::cuda::resize::forward(s, l, (self.oh, self.ow), self.align_corners)
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let (_, _, h, w) = x.dims4()?;
        let dx = dy.contiguous()?.apply_op1_no_bwd(&ResizeBwdOp { h, w, align_corners: self.align_corners })?;
        Ok(Some(dx))
    }
}

/// Adjoint of [`ResizeOp`]: maps `dy [N, C, oh, ow]` to `dx [N, C, h, w]`.
struct ResizeBwdOp {
    h: usize,
    w: usize,
    align_corners: bool,
}

impl CustomOp1 for ResizeBwdOp {
    fn name(&self) -> &'static str {
        "kernels-resize-bilinear-bwd"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, oh, ow) = l.shape().dims4()?;
        let ty = taps(self.h, oh, self.align_corners);
        let tx = taps(self.w, ow, self.align_corners);
        let hw = (self.h, self.w);
        let dx = match s {
            CpuStorage::F32(_) => CpuStorage::F32(backward::<f32>(contiguous_slice(OP, s, l)?, hw, &ty, &tx)),
            CpuStorage::F64(_) => CpuStorage::F64(backward::<f64>(contiguous_slice(OP, s, l)?, hw, &ty, &tx)),
            _ => return unsupported_dtype(OP, s),
        };
        Ok((dx, Shape::from((n, c, self.h, self.w))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &candle_core::CudaStorage, l: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        super::cuda::resize::backward(s, l, (self.h, self.w), self.align_corners)
    }
}
