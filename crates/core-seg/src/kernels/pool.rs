//! Max pooling 3×3, stride 2, padding 1 (the ResNet stem) with saved argmax.
//!
//! `y[i, j] = max_{a,b ∈ 0..3} x[2i − 1 + a, 2j − 1 + b]` over in-image taps; output size `⌊(H − 1)/2⌋ + 1`.
//! The forward records, per output, the plane index of the first maximum in row-major tap order (PyTorch's
//! tie rule; NaN wins as in PyTorch); the backward adds `dy` there (gradient 1 at the argmax).

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous_slice, require_cpu_or_cuda, unsupported_dtype, Float};

const OP: &str = "kernels::max_pool_3x3_s2_p1";

/// `nn.MaxPool2d(3, stride=2, padding=1)` of `x [N, C, H, W]`, differentiable.
pub fn max_pool_3x3_s2_p1(x: &Tensor) -> Result<Tensor> {
    require_cpu_or_cuda(OP, x)?;
    let (_, _, h, w) = x.dims4()?;
    if h == 0 || w == 0 {
        candle_core::bail!("{OP}: empty input {:?}", x.dims());
    }
    x.contiguous()?.apply_op1(MaxPoolOp { argmax: Mutex::new(None) })
}

fn out_hw(h: usize, w: usize) -> (usize, usize) {
    ((h - 1) / 2 + 1, (w - 1) / 2 + 1)
}

/// The forward's argmax, kept where the forward ran.
#[derive(Clone)]
enum Argmax {
    Host(Arc<Vec<u32>>),
    #[cfg(feature = "cuda")]
    Device(Arc<candle_core::cuda_backend::cudarc::driver::CudaSlice<u32>>),
}

struct MaxPoolOp {
    argmax: Mutex<Option<Argmax>>,
}

fn forward<T: Float>(x: &[T], (h, w): (usize, usize)) -> (Vec<T>, Vec<u32>) {
    let (oh, ow) = out_hw(h, w);
    let planes = x.len() / (h * w);
    let mut y = vec![T::zero(); planes * oh * ow];
    let mut idx = vec![0u32; planes * oh * ow];
    y.par_chunks_mut(oh * ow).zip(idx.par_chunks_mut(oh * ow)).zip(x.par_chunks(h * w)).for_each_init(
        || (Vec::new(), Vec::new(), Vec::new(), Vec::new()),
        |(rv, rk, ev, od), ((yo, io), xi)| pool_plane(xi, (h, w), (rv, rk, ev, od), yo, io),
    );
    (y, idx)
}

/// Replaces `(m, k)` by `(v, kv)` where `v > m` or `v` is NaN (PyTorch's rule: the first maximum in tap order,
/// the last NaN), as selects: on real activations the comparison is a coin flip a branch would mispredict.
#[inline(always)]
fn take<T: Float>((m, k): (T, u32), (v, kv): (T, u32)) -> (T, u32) {
    #[allow(clippy::eq_op)]
    let t = (v > m) | (v != v);
    (if t { v } else { m }, if t { kv } else { k })
}

/// One plane, separably: the maximum over each output column's 1–3 input columns, row by row, into `(rv, rk)`
/// (`[H, ow]` values and plane indices), then over each output row's 1–3 rows. Row-major tap order is kept:
/// the column pass takes a row's first maximum, the row pass the first row holding the overall maximum.
fn pool_plane<T: Float>(
    xi: &[T],
    (h, w): (usize, usize),
    (rv, rk, ev, od): (&mut Vec<T>, &mut Vec<u32>, &mut Vec<T>, &mut Vec<T>),
    yo: &mut [T],
    io: &mut [u32],
) {
    let (oh, ow) = out_hw(h, w);
    rv.resize(h * ow, T::zero());
    rk.resize(h * ow, 0);
    let span = |o: usize, len: usize| ((2 * o).saturating_sub(1), (2 * o + 2).min(len));
    for r in 0..h {
        let (row, base) = (&xi[r * w..(r + 1) * w], (r * w) as u32);
        let (vals, keys) = (&mut rv[r * ow..(r + 1) * ow], &mut rk[r * ow..(r + 1) * ow]);
        // Columns 1..=n read three in-image columns each; the first and, for odd W, the last read two.
        let n = (w / 2).min(ow).saturating_sub(1);
        for j in (0..1).chain(n + 1..ow) {
            let (c0, c1) = span(j, w);
            let taps = row[c0 + 1..c1].iter().zip(base + c0 as u32 + 1..);
            (vals[j], keys[j]) = taps.fold((row[c0], base + c0 as u32), |acc, (&v, k)| take(acc, (v, k)));
        }
        if n == 0 {
            continue;
        }
        // Deinterleaved (`ev[j] = row[2j]`, `od[j] = row[2j + 1]`), the three taps of the inner columns are three
        // contiguous arrays and the loop vectorises.
        ev.clear();
        od.clear();
        ev.extend(row.iter().step_by(2));
        od.extend(row.iter().skip(1).step_by(2));
        let (left, mid, right) = (&od[..n], &ev[1..=n], &od[1..=n]);
        let (v, k) = (&mut vals[1..=n], &mut keys[1..=n]);
        for j in 0..n {
            let c = base + 2 * j as u32 + 1;
            (v[j], k[j]) = take(take((left[j], c), (mid[j], c + 1)), (right[j], c + 2));
        }
    }
    for i in 0..oh {
        let (r0, r1) = span(i, h);
        let (out, outk) = (&mut yo[i * ow..(i + 1) * ow], &mut io[i * ow..(i + 1) * ow]);
        out.copy_from_slice(&rv[r0 * ow..(r0 + 1) * ow]);
        outk.copy_from_slice(&rk[r0 * ow..(r0 + 1) * ow]);
        for r in r0 + 1..r1 {
            let (vals, keys) = (&rv[r * ow..(r + 1) * ow], &rk[r * ow..(r + 1) * ow]);
            for j in 0..ow {
                (out[j], outk[j]) = take((out[j], outk[j]), (vals[j], keys[j]));
            }
        }
    }
}

impl CustomOp1 for MaxPoolOp {
    fn name(&self) -> &'static str {
        "kernels-max-pool-3x3-s2-p1"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l.shape().dims4()?;
        if h * w > u32::MAX as usize {
            candle_core::bail!("{OP}: plane {h}x{w} too large for u32 indices");
        }
        let (y, idx) = match s {
            CpuStorage::F32(_) => {
                let (y, i) = forward::<f32>(contiguous_slice(OP, s, l)?, (h, w));
                (CpuStorage::F32(y), i)
            }
            CpuStorage::F64(_) => {
                let (y, i) = forward::<f64>(contiguous_slice(OP, s, l)?, (h, w));
                (CpuStorage::F64(y), i)
            }
            _ => return unsupported_dtype(OP, s),
        };
        if let Ok(mut g) = self.argmax.lock() {
            *g = Some(Argmax::Host(Arc::new(idx)));
        }
        let (oh, ow) = out_hw(h, w);
        Ok((y, Shape::from((n, c, oh, ow))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &candle_core::CudaStorage, l: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        let (y, shape, idx) = super::cuda::pool::forward(s, l)?;
        if let Ok(mut g) = self.argmax.lock() {
            *g = Some(Argmax::Device(idx));
        }
        Ok((y, shape))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let argmax = self
            .argmax
            .lock()
            .map_err(|_| candle_core::Error::Msg(format!("{OP}: poisoned argmax")))?
            .clone()
            .ok_or_else(|| candle_core::Error::Msg(format!("{OP}: backward before forward")))?;
        let (_, _, h, w) = x.dims4()?;
        let dx = dy.contiguous()?.apply_op1_no_bwd(&MaxPoolBwdOp { argmax, h, w })?;
        Ok(Some(dx))
    }
}

/// Scatters `dy` to the saved argmax positions.
struct MaxPoolBwdOp {
    argmax: Argmax,
    h: usize,
    w: usize,
}

fn backward<T: Float>(dy: &[T], argmax: &[u32], (h, w): (usize, usize)) -> Vec<T> {
    let (oh, ow) = out_hw(h, w);
    let mut dx = vec![T::zero(); dy.len() / (oh * ow) * h * w];
    dx.par_chunks_mut(h * w).zip(dy.par_chunks(oh * ow).zip(argmax.par_chunks(oh * ow))).for_each(|(d, (g, a))| {
        for (gv, &ai) in g.iter().zip(a) {
            d[ai as usize] += *gv;
        }
    });
    dx
}

impl CustomOp1 for MaxPoolBwdOp {
    fn name(&self) -> &'static str {
        "kernels-max-pool-3x3-s2-p1-bwd"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, oh, ow) = l.shape().dims4()?;
        #[allow(irrefutable_let_patterns)]
        let Argmax::Host(argmax) = &self.argmax
        else {
            candle_core::bail!("{OP} backward: the forward ran on another device");
        };
        if (oh, ow) != out_hw(self.h, self.w) || argmax.len() != l.shape().elem_count() {
            candle_core::bail!("{OP} backward: dy {:?} does not match the forward", l.dims());
        }
        let hw = (self.h, self.w);
        let dx = match s {
            CpuStorage::F32(_) => CpuStorage::F32(backward::<f32>(contiguous_slice(OP, s, l)?, argmax, hw)),
            CpuStorage::F64(_) => CpuStorage::F64(backward::<f64>(contiguous_slice(OP, s, l)?, argmax, hw)),
            _ => return unsupported_dtype(OP, s),
        };
        Ok((dx, Shape::from((n, c, self.h, self.w))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &candle_core::CudaStorage, l: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        let Argmax::Device(argmax) = &self.argmax else {
            candle_core::bail!("{OP} backward: the forward ran on another device");
        };
        super::cuda::pool::backward(s, l, argmax, (self.h, self.w))
    }
}
