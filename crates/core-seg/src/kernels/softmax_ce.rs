//! Fused per-pixel softmax cross-entropy with ignore label 255.
//!
//! For logits `z [N, K, H, W]` and labels `t [N, H, W]`: `ℓ_p = log Σ_k exp(z_{k,p}) − z_{t_p,p}` (computed
//! as `m + log Σ exp(z − m)`, `m = max_k z`), `ℓ_p = 0` where `t_p = 255`. Backward:
//! `∂ℓ_p/∂z_{k,p} = softmax(z_p)_k − [k = t_p]` on valid pixels, 0 on ignored ones, times the incoming
//! gradient of `ℓ_p`.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous_slice, require_cpu_or_cuda, unsupported_dtype, Float};

const OP: &str = "kernels::softmax_cross_entropy";
const IGNORE: u32 = crate::ops::IGNORE_INDEX;

/// Per-pixel loss map `[N, H, W]` (0 on ignored pixels) of `logits [N, K, H, W]` against integer `target
/// [N, H, W]` (converted to u32). Differentiable in the logits. Labels other than `0..K` and 255 are an error.
pub fn softmax_cross_entropy(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    require_cpu_or_cuda(OP, logits)?;
    let (n, k, h, w) = logits.dims4()?;
    if k == 0 || h * w == 0 || target.dims() != [n, h, w] {
        candle_core::bail!("{OP}: logits {:?} vs target {:?}", logits.dims(), target.dims());
    }
    let t = target.to_dtype(DType::U32)?.contiguous()?;
    logits.contiguous()?.apply_op2(&t, SoftmaxCeOp)
}

/// Log-sum-exp per pixel of one image (`z` = `[K, S]`) into `lse [S]`, using `lse` as the running max first.
fn lse_image<T: Float>(z: &[T], k: usize, s: usize, lse: &mut [T], sum: &mut [T]) {
    lse.copy_from_slice(&z[..s]);
    for c in 1..k {
        for (m, v) in lse.iter_mut().zip(&z[c * s..(c + 1) * s]) {
            if *v > *m {
                *m = *v;
            }
        }
    }
    sum.fill(T::zero());
    for c in 0..k {
        for ((a, v), m) in sum.iter_mut().zip(&z[c * s..(c + 1) * s]).zip(lse.iter()) {
            *a += (*v - *m).exp_();
        }
    }
    for (m, a) in lse.iter_mut().zip(sum.iter()) {
        *m += a.ln_();
    }
}

fn check_labels(t: &[u32], k: usize) -> Result<()> {
    if let Some(bad) = t.iter().find(|&&v| v != IGNORE && v as usize >= k) {
        candle_core::bail!("{OP}: target label {bad} outside 0..{k} (and not {IGNORE})");
    }
    Ok(())
}

fn forward<T: Float>(z: &[T], t: &[u32], k: usize, s: usize) -> Vec<T> {
    let mut loss = vec![T::zero(); t.len()];
    loss.par_chunks_mut(s).zip(z.par_chunks(k * s).zip(t.par_chunks(s))).for_each(|(l, (zi, ti))| {
        T::with_scratch(2 * s, |buf| {
            let (lse, sum) = buf.split_at_mut(s);
            lse_image(zi, k, s, lse, sum);
            for (p, (lo, &lab)) in l.iter_mut().zip(ti).enumerate() {
                if lab != IGNORE {
                    *lo = lse[p] - zi[lab as usize * s + p];
                }
            }
        })
    });
    loss
}

fn backward<T: Float>(z: &[T], t: &[u32], dl: &[T], k: usize, s: usize) -> Vec<T> {
    let mut dz = vec![T::zero(); z.len()];
    dz.par_chunks_mut(k * s).zip(z.par_chunks(k * s).zip(t.par_chunks(s).zip(dl.par_chunks(s)))).for_each(
        |(d, (zi, (ti, gi)))| {
            T::with_scratch(2 * s, |buf| {
                let (lse, sum) = buf.split_at_mut(s);
                lse_image(zi, k, s, lse, sum);
                // Per-pixel scale: dℓ_p on valid pixels, 0 on ignored ones (kept in `sum`).
                for ((g, &lab), sc) in gi.iter().zip(ti).zip(sum.iter_mut()) {
                    *sc = if lab == IGNORE { T::zero() } else { *g };
                }
                for c in 0..k {
                    let (dr, zr) = (&mut d[c * s..(c + 1) * s], &zi[c * s..(c + 1) * s]);
                    for (((o, v), m), sc) in dr.iter_mut().zip(zr).zip(lse.iter()).zip(sum.iter()) {
                        *o = *sc * (*v - *m).exp_();
                    }
                }
                for (p, (&lab, sc)) in ti.iter().zip(sum.iter()).enumerate() {
                    if lab != IGNORE {
                        d[lab as usize * s + p] -= *sc;
                    }
                }
            })
        },
    );
    dz
}

struct SoftmaxCeOp;

impl CustomOp2 for SoftmaxCeOp {
    fn name(&self) -> &'static str {
        "kernels-softmax-cross-entropy"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, k, h, w) = l1.shape().dims4()?;
        let t = contiguous_slice_u32(s2, l2)?;
        check_labels(t, k)?;
        let loss = match s1 {
            CpuStorage::F32(_) => CpuStorage::F32(forward::<f32>(contiguous_slice(OP, s1, l1)?, t, k, h * w)),
            CpuStorage::F64(_) => CpuStorage::F64(forward::<f64>(contiguous_slice(OP, s1, l1)?, t, k, h * w)),
            _ => return unsupported_dtype(OP, s1),
        };
        Ok((loss, Shape::from((n, h, w))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        super::cuda::ce::forward(s1, l1, s2, l2)
    }

    fn bwd(
        &self,
        logits: &Tensor,
        target: &Tensor,
        _res: &Tensor,
        dl: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dz = logits.contiguous()?.apply_op3_no_bwd(target, &dl.contiguous()?, &SoftmaxCeBwdOp)?;
        Ok((Some(dz), None))
    }
}

fn contiguous_slice_u32<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [u32]> {
    let data = s.as_slice::<u32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{OP}: target must be contiguous"),
    }
}

/// Backward over (logits, target, dℓ) → dlogits.
struct SoftmaxCeBwdOp;

impl CustomOp3 for SoftmaxCeBwdOp {
    fn name(&self) -> &'static str {
        "kernels-softmax-cross-entropy-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, k, h, w) = l1.shape().dims4()?;
        if l3.dims() != [n, h, w] {
            candle_core::bail!("{OP} backward: loss gradient {:?} vs logits {:?}", l3.dims(), l1.dims());
        }
        let t = contiguous_slice_u32(s2, l2)?;
        let dz = match (s1, s3) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => CpuStorage::F32(backward::<f32>(
                contiguous_slice(OP, s1, l1)?,
                t,
                contiguous_slice(OP, s3, l3)?,
                k,
                h * w,
            )),
            (CpuStorage::F64(_), CpuStorage::F64(_)) => CpuStorage::F64(backward::<f64>(
                contiguous_slice(OP, s1, l1)?,
                t,
                contiguous_slice(OP, s3, l3)?,
                k,
                h * w,
            )),
            _ => return unsupported_dtype(OP, s1),
        };
        Ok((dz, l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        super::cuda::ce::backward(s1, l1, s2, l2, s3, l3)
    }
}
