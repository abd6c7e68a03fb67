//! Fused, in-place SGD with momentum and weight decay (PyTorch `torch.optim.SGD`, `dampening = 0`).
//!
//! With `d = g + wd·p`, the first step (or `m = 0`) sets `buf = d`, later steps `buf ← m·buf + d`; then
//! `p ← p − lr·buf`. The reference path ([`crate::optim`]) builds each of these as a Candle op (six full
//! passes and five allocations per parameter); here the buffer update is one in-place pass over
//! `(buf, g, p)` and the parameter update one in-place pass over `(p, buf)`, rounded as the reference
//! (`m·buf + (g + wd·p)`, `p − lr·buf`).

use candle_core::{CpuStorage, InplaceOp2, InplaceOp3, Layout, Result, Tensor, Var};
use rayon::prelude::*;

use super::Float;

const OP: &str = "kernels::sgd_step";

/// Elements per parallel chunk (small parameters run on the calling thread).
const CHUNK: usize = 1 << 15;

/// Whether [`sgd_step`] can update `p` with `g` (and `buf`): CPU, f32/f64, same dtype, contiguous.
pub fn sgd_supported(p: &Tensor, g: &Tensor, buf: Option<&Tensor>) -> bool {
    let ok = |t: &Tensor| {
        t.device().is_cpu()
            && matches!(t.dtype(), candle_core::DType::F32 | candle_core::DType::F64)
            && t.dtype() == p.dtype()
            && t.dims() == p.dims()
            && t.is_contiguous()
    };
    !super::reference_requested() && ok(p) && ok(g) && buf.is_none_or(ok)
}

/// One SGD update of `var` with gradient `g` and momentum buffer `buf` (None on the first step); returns the
/// new buffer (`buf` itself, updated in place, or a fresh `d = g + wd·p`). Check [`sgd_supported`] first.
pub fn sgd_step(var: &Var, g: &Tensor, buf: Option<&Tensor>, lr: f64, momentum: f64, wd: f64) -> Result<Tensor> {
    let p = var.as_tensor();
    let buf = match buf {
        Some(b) if momentum != 0.0 => {
            b.inplace_op3(g, p, &MomentumOp { momentum, wd })?;
            b.clone()
        }
        _ => (g + (p * wd)?)?.detach(),
    };
    p.inplace_op2(&buf, &AxpyOp { alpha: -lr })?;
    Ok(buf)
}

/// The contiguous range of `l` in a mutable buffer.
fn range_mut<'a, T>(v: &'a mut [T], l: &Layout) -> Result<&'a mut [T]> {
    let (a, b) = l.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg(format!("{OP}: strided")))?;
    Ok(&mut v[a..b])
}

/// `buf ← m·buf + g + wd·p`.
struct MomentumOp {
    momentum: f64,
    wd: f64,
}

fn momentum<T: Float>(buf: &mut [T], g: &[T], p: &[T], m: f64, wd: f64) {
    let (m, wd) = (T::from_f64_(m), T::from_f64_(wd));
    buf.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK).zip(p.par_chunks(CHUNK))).for_each(|(b, (g, p))| {
        for ((b, g), p) in b.iter_mut().zip(g).zip(p) {
            *b = m * *b + (*g + wd * *p);
        }
    });
}

impl InplaceOp3 for MomentumOp {
    fn name(&self) -> &'static str {
        "kernels-sgd-momentum"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<()> {
        match s1 {
            CpuStorage::F32(v) => momentum::<f32>(
                range_mut(v, l1)?,
                super::contiguous_slice(OP, s2, l2)?,
                super::contiguous_slice(OP, s3, l3)?,
                self.momentum,
                self.wd,
            ),
            CpuStorage::F64(v) => momentum::<f64>(
                range_mut(v, l1)?,
                super::contiguous_slice(OP, s2, l2)?,
                super::contiguous_slice(OP, s3, l3)?,
                self.momentum,
                self.wd,
            ),
            _ => return super::unsupported_dtype(OP, s2),
        }
        Ok(())
    }
}

/// `p ← p + α·x`.
struct AxpyOp {
    alpha: f64,
}

fn axpy<T: Float>(p: &mut [T], x: &[T], alpha: f64) {
    let a = T::from_f64_(alpha);
    p.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(p, x)| {
        for (p, x) in p.iter_mut().zip(x) {
            *p += a * *x;
        }
    });
}

impl InplaceOp2 for AxpyOp {
    fn name(&self) -> &'static str {
        "kernels-sgd-axpy"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<()> {
        match s1 {
            CpuStorage::F32(v) => axpy::<f32>(range_mut(v, l1)?, super::contiguous_slice(OP, s2, l2)?, self.alpha),
            CpuStorage::F64(v) => axpy::<f64>(range_mut(v, l1)?, super::contiguous_slice(OP, s2, l2)?, self.alpha),
            _ => return super::unsupported_dtype(OP, s2),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    /// Three fused steps match the Candle reference formula bit for bit (f32, a parameter larger than one
    /// parallel chunk).
    #[test]
    fn fused_sgd_matches_reference() -> Result<()> {
        let dev = Device::Cpu;
        let n = 3 * CHUNK + 17;
        let p0 = Tensor::randn(0f32, 1.0, n, &dev)?;
        let var = Var::from_tensor(&p0)?;
        let (lr, m, wd) = (0.05, 0.9, 1e-4);
        let (mut p_ref, mut buf_ref, mut buf): (Tensor, Option<Tensor>, Option<Tensor>) = (p0.copy()?, None, None);
        for _ in 0..3 {
            let g = Tensor::randn(0f32, 1.0, n, &dev)?;
            assert!(sgd_supported(var.as_tensor(), &g, buf.as_ref()));
            buf = Some(sgd_step(&var, &g, buf.as_ref(), lr, m, wd)?);
            let d = (&g + (&p_ref * wd)?)?;
            let b = match &buf_ref {
                Some(b) => ((b * m)? + &d)?,
                None => d,
            };
            p_ref = (&p_ref - (&b * lr)?)?;
            buf_ref = Some(b);
        }
        let diff = |a: &Tensor, b: &Tensor| -> Result<f32> { (a - b)?.abs()?.max(0)?.to_scalar::<f32>() };
        assert_eq!(diff(var.as_tensor(), &p_ref)?, 0.0);
        assert_eq!(diff(buf.as_ref().expect("buffer"), buf_ref.as_ref().expect("buffer"))?, 0.0);
        Ok(())
    }
}
