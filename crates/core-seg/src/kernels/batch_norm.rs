//! Fused training-mode batch normalisation.
//!
//! Over the `M = N·S` values of channel `c` (`S` = product of the dims after the channel dim):
//! `μ = Σx/M`, `σ² = Σ(x − μ)²/M` (biased, accumulated in f64 in one pass over shifted values),
//! `x̂ = (x − μ)/√(σ² + ε)`, `y = γ·x̂ + β`.
//! Backward (`g = dy`): `dβ = Σg`, `dγ = Σ g·x̂`, `dx = γ/√(σ² + ε) · (g − dβ/M − x̂·dγ/M)`.

use std::mem::MaybeUninit;
use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::bn_core::{batch_stats, dx_plane, grad_sums, ncs, Stats};
use super::{contiguous_slice, new_filled, require_cpu_or_cuda, unsupported_dtype, Float};

const OP: &str = "kernels::batch_norm_train";

/// The statistics where the forward ran (host vectors, or a device buffer with the `cuda` feature).
#[derive(Debug, Clone)]
enum Saved {
    Host(Stats),
    #[cfg(feature = "cuda")]
    Device(super::cuda::bn::DeviceStats),
}

/// Training-mode batch norm of `x [N, C, ...]` with affine `gamma`, `beta` `[C]`.
///
/// Returns `(y, batch_mean [C], batch_var_biased [C])`; the statistics are detached, the caller updates its
/// running estimates (PyTorch uses the unbiased `var·M/(M − 1)` there). Differentiable in x, γ and β.
/// Errors if a channel has fewer than two values (PyTorch raises too).
///
/// On CUDA with a NCCL communicator set ([`crate::dist`]), the statistics are those of the global batch
/// (SyncBN): the per-channel sums are all-reduced in the forward, the gradient sums in the backward.
pub fn batch_norm_train(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<(Tensor, Tensor, Tensor)> {
    require_cpu_or_cuda(OP, x)?;
    let dims = x.dims();
    if dims.len() < 2 || gamma.dims() != [dims[1]] || beta.dims() != [dims[1]] {
        candle_core::bail!(
            "{OP}: x {dims:?} needs rank ≥ 2 and gamma {:?}, beta {:?} of shape [C]",
            gamma.dims(),
            beta.dims()
        );
    }
    if gamma.dtype() != x.dtype() || beta.dtype() != x.dtype() {
        candle_core::bail!(
            "{OP}: dtypes differ: x {:?}, gamma {:?}, beta {:?}",
            x.dtype(),
            gamma.dtype(),
            beta.dtype()
        );
    }
    if dims[0] == 0 || dims[1] == 0 {
        candle_core::bail!("{OP}: empty input {dims:?}");
    }
    let m = x.elem_count() / dims[1];
    if m < 2 {
        candle_core::bail!("{OP}: {m} value(s) per channel in training mode (x {dims:?})");
    }
    let saved = Arc::new(Mutex::new(None));
    let y = x.contiguous()?.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, BnOp { eps, saved: saved.clone() })?;
    let stats = saved
        .lock()
        .map_err(|_| candle_core::Error::Msg(format!("{OP}: poisoned stats")))?
        .clone()
        .ok_or_else(|| candle_core::Error::Msg(format!("{OP}: forward saved no statistics")))?;
    let c = dims[1];
    match stats {
        Saved::Host(stats) => {
            let mean = Tensor::from_vec(stats.mean, c, x.device())?.to_dtype(x.dtype())?;
            let var = Tensor::from_vec(stats.var, c, x.device())?.to_dtype(x.dtype())?;
            Ok((y, mean, var))
        }
        #[cfg(feature = "cuda")]
        Saved::Device(st) => {
            // Mean and variance stay on the device: no synchronisation per BN layer.
            let mv = gamma.contiguous()?.apply_op1_no_bwd(&BnStatsOp { st })?;
            Ok((y, mv.narrow(0, 0, c)?, mv.narrow(0, c, c)?))
        }
    }
}

/// `[mean, var]` of a CUDA forward, read from its saved statistics (applied to γ for device and dtype).
#[cfg(feature = "cuda")]
struct BnStatsOp {
    st: super::cuda::bn::DeviceStats,
}

#[cfg(feature = "cuda")]
impl candle_core::CustomOp1 for BnStatsOp {
    fn name(&self) -> &'static str {
        "kernels-batch-norm-stats"
    }

    fn cpu_fwd(&self, _s: &CpuStorage, _l: &Layout) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("{OP}: device statistics read on the CPU")
    }

    fn cuda_fwd(&self, s: &candle_core::CudaStorage, _l: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        super::cuda::bn::stats_out(s, &self.st)
    }
}

struct BnOp {
    eps: f64,
    saved: Arc<Mutex<Option<Saved>>>,
}

fn forward<T: Float>(x: &[T], gamma: &[T], beta: &[T], eps: f64, (n, c, s): (usize, usize, usize)) -> (Vec<T>, Stats) {
    let (mean, var) = batch_stats(x, (n, c, s));
    let invstd: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    let fill = |y: &mut [MaybeUninit<T>]| {
        y.par_chunks_mut(s.max(1)).zip(x.par_chunks(s.max(1))).enumerate().for_each(|(plane, (yo, xi))| {
            let ch = plane % c;
            let scale = gamma[ch].to_f64_() * invstd[ch];
            let (sc, sh) = (T::from_f64_(scale), T::from_f64_(beta[ch].to_f64_() - mean[ch] * scale));
            yo.iter_mut().zip(xi).for_each(|(o, v)| _ = o.write(*v * sc + sh));
        })
    };
    // SAFETY: `fill` writes every plane of `y` (as many as of `x`, each as long), element by element.
    let y = unsafe { new_filled(x.len(), x.len(), fill) };
    (y, Stats { mean, var, invstd })
}

impl CustomOp3 for BnOp {
    fn name(&self) -> &'static str {
        "kernels-batch-norm-train"
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
        let dims = ncs(l1);
        let (y, stats) = match (s1, s2, s3) {
            (CpuStorage::F32(_), CpuStorage::F32(_), CpuStorage::F32(_)) => {
                let (y, st) = forward::<f32>(
                    contiguous_slice(OP, s1, l1)?,
                    contiguous_slice(OP, s2, l2)?,
                    contiguous_slice(OP, s3, l3)?,
                    self.eps,
                    dims,
                );
                (CpuStorage::F32(y), st)
            }
            (CpuStorage::F64(_), CpuStorage::F64(_), CpuStorage::F64(_)) => {
                let (y, st) = forward::<f64>(
                    contiguous_slice(OP, s1, l1)?,
                    contiguous_slice(OP, s2, l2)?,
                    contiguous_slice(OP, s3, l3)?,
                    self.eps,
                    dims,
                );
                (CpuStorage::F64(y), st)
            }
            _ => return unsupported_dtype(OP, s1),
        };
        if let Ok(mut g) = self.saved.lock() {
            *g = Some(Saved::Host(stats));
        }
        Ok((y, l1.shape().clone()))
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
        let (y, shape, st) = super::cuda::bn::forward(s1, l1, s2, l2, s3, l3, self.eps)?;
        if let Ok(mut g) = self.saved.lock() {
            *g = Some(Saved::Device(st));
        }
        Ok((y, shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let stats = self
            .saved
            .lock()
            .map_err(|_| candle_core::Error::Msg(format!("{OP}: poisoned stats")))?
            .clone()
            .ok_or_else(|| candle_core::Error::Msg(format!("{OP}: backward before forward")))?;
        let numel = x.elem_count();
        let c = x.dims()[1];
        let flat = x.contiguous()?.apply_op3_no_bwd(&gamma.contiguous()?, &dy.contiguous()?, &BnBwdOp { stats })?;
        let dx = flat.narrow(0, 0, numel)?.reshape(x.shape())?;
        let dgamma = flat.narrow(0, numel, c)?;
        let dbeta = flat.narrow(0, numel + c, c)?;
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
}

/// Fused backward over (x, γ, dy); output is the flat concatenation `[dx, dγ, dβ]`.
struct BnBwdOp {
    stats: Saved,
}

fn backward<T: Float>(x: &[T], gamma: &[T], dy: &[T], st: &Stats, (n, c, s): (usize, usize, usize)) -> Vec<T> {
    let m = (n * s) as f64;
    let (dgamma, dbeta): (Vec<f64>, Vec<f64>) = (0..c)
        .into_par_iter()
        .map(|ch| {
            let (sgx, sg) = grad_sums(x, dy, None, ch, st.mean[ch], (n, c, s));
            (sgx * st.invstd[ch], sg)
        })
        .unzip();
    let fill = |out: &mut [MaybeUninit<T>]| {
        let (dx, rest) = out.split_at_mut(x.len());
        let planes = dx.par_chunks_mut(s.max(1)).zip(x.par_chunks(s.max(1)).zip(dy.par_chunks(s.max(1))));
        planes.enumerate().for_each(|(plane, (d, (xi, gi)))| {
            let ch = plane % c;
            let (mu, is) = (st.mean[ch], st.invstd[ch]);
            // dx = k·(g − dβ/M − (x − μ)·is·dγ/M) = k·g + a·x + b
            let k = gamma[ch].to_f64_() * is;
            let a = -k * is * dgamma[ch] / m;
            let b = -k * dbeta[ch] / m - a * mu;
            dx_plane::<T, false>(d, None, xi, xi, gi, T::zero(), (T::from_f64_(k), T::from_f64_(a), T::from_f64_(b)));
        });
        for ch in 0..c {
            rest[ch].write(T::from_f64_(dgamma[ch]));
            rest[c + ch].write(T::from_f64_(dbeta[ch]));
        }
    };
    // SAFETY: `fill` writes every plane of `dx` through `dx_plane`, then `dγ` and `dβ`.
    unsafe { new_filled(x.len() + 2 * c, x.len() + 2 * c, fill) }
}

impl CustomOp3 for BnBwdOp {
    fn name(&self) -> &'static str {
        "kernels-batch-norm-train-bwd"
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
        if l1.dims() != l3.dims() {
            candle_core::bail!("{OP} backward: x {:?} vs dy {:?}", l1.dims(), l3.dims());
        }
        let dims = ncs(l1);
        #[allow(irrefutable_let_patterns)]
        let Saved::Host(stats) = &self.stats
        else {
            candle_core::bail!("{OP} backward: the forward ran on another device");
        };
        let out = match (s1, s2, s3) {
            (CpuStorage::F32(_), CpuStorage::F32(_), CpuStorage::F32(_)) => CpuStorage::F32(backward::<f32>(
                contiguous_slice(OP, s1, l1)?,
                contiguous_slice(OP, s2, l2)?,
                contiguous_slice(OP, s3, l3)?,
                stats,
                dims,
            )),
            (CpuStorage::F64(_), CpuStorage::F64(_), CpuStorage::F64(_)) => CpuStorage::F64(backward::<f64>(
                contiguous_slice(OP, s1, l1)?,
                contiguous_slice(OP, s2, l2)?,
                contiguous_slice(OP, s3, l3)?,
                stats,
                dims,
            )),
            _ => return unsupported_dtype(OP, s1),
        };
        Ok((out, Shape::from(l1.shape().elem_count() + 2 * dims.1)))
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
        if l1.dims() != l3.dims() {
            candle_core::bail!("{OP} backward: x {:?} vs dy {:?}", l1.dims(), l3.dims());
        }
        let Saved::Device(st) = &self.stats else {
            candle_core::bail!("{OP} backward: the forward ran on another device");
        };
        super::cuda::bn::backward(s1, l1, s2, l2, s3, l3, st)
    }
}
