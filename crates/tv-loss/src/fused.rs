//! Fused CPU kernel for variant A: softmax → forward differences → Charbonnier/L1 → weighted reduction in one
//! pass per image, with a hand-written backward:
//!
//! ```text
//! TV      = Σ_{n,k,i,j} vx·ρ_ε(DxP) + vy·ρ_ε(DyP)  / Z
//! sx      = vx·ρ'_ε(DxP),  sy = vy·ρ'_ε(DyP)     (ρ'_0(d) = sign d, sign 0 = 0; ρ'_ε(d) = d / sqrt(d² + ε))
//! g[k,i,j] = (sx[k,i,j−1] − sx[k,i,j] + sy[k,i−1,j] − sy[k,i,j]) / Z     (terms outside their range are 0)
//! ∂TV/∂z_k = P_k·(g_k − Σ_m P_m g_m)
//! ```
//! It is numerically the same function as the composite [`crate::tv::tv_loss`] (checked to 1e-12 in f64, and its
//! gradient against f64 finite differences). Accumulation is in f64 for f32 inputs too.
//!
//! With the `cuda` feature the same op runs on CUDA tensors (f32, f64, bf16) through `cuda/tv.cu`
//! kernels ([`fused_cuda`]): softmax into an f64 buffer, deterministic block reductions, a per-pixel backward.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};
use core_seg::{bail_arg, Result};

use crate::config::{TvConfig, TvNormalize, TvVariant};

#[cfg(feature = "cuda")]
#[path = "fused_cuda.rs"]
mod fused_cuda;

/// The fused op on `(logits [N,K,H,W], valid [N,H,W])`, both contiguous and of the same float dtype.
#[derive(Debug, Clone, Copy)]
struct FusedTvA {
    eps: f64,
    mean: bool,
    dims: (usize, usize, usize, usize),
}

impl FusedTvA {
    fn rho(&self, d: f64) -> f64 {
        if self.eps == 0.0 {
            d.abs()
        } else {
            (d * d + self.eps).sqrt() - self.eps.sqrt()
        }
    }

    fn drho(&self, d: f64) -> f64 {
        if self.eps == 0.0 {
            if d > 0.0 {
                1.0
            } else if d < 0.0 {
                -1.0
            } else {
                0.0
            }
        } else {
            d / (d * d + self.eps).sqrt()
        }
    }

    /// `Z` from the valid map.
    fn normaliser(&self, v: &[f64]) -> f64 {
        if self.mean {
            (self.dims.1 as f64 * v.iter().sum::<f64>()).max(1.0)
        } else {
            1.0
        }
    }

    /// Softmax over classes of image `b` into `p [K, H·W]`.
    fn softmax(&self, z: &[f64], b: usize, p: &mut [f64]) {
        let (_, k, h, w) = self.dims;
        let hw = h * w;
        let base = b * k * hw;
        for q in 0..hw {
            let mx = (0..k).map(|c| z[base + c * hw + q]).fold(f64::NEG_INFINITY, f64::max);
            let mut s = 0.0;
            for c in 0..k {
                let e = (z[base + c * hw + q] - mx).exp();
                p[c * hw + q] = e;
                s += e;
            }
            for c in 0..k {
                p[c * hw + q] /= s;
            }
        }
    }

    /// Visits every weighted difference of image `b`: `f(class, from, to, weight)` for `D = P[to] − P[from]`.
    fn for_diffs(&self, v: &[f64], b: usize, mut f: impl FnMut(usize, usize, usize, f64)) {
        let (_, k, h, w) = self.dims;
        let vb = &v[b * h * w..(b + 1) * h * w];
        for i in 0..h {
            for j in 0..w {
                let q = i * w + j;
                let vx = if j + 1 < w { vb[q] * vb[q + 1] } else { 0.0 };
                let vy = if i + 1 < h { vb[q] * vb[q + w] } else { 0.0 };
                for c in 0..k {
                    if vx != 0.0 {
                        f(c, q, q + 1, vx);
                    }
                    if vy != 0.0 {
                        f(c, q, q + w, vy);
                    }
                }
            }
        }
    }

    fn forward(&self, z: &[f64], v: &[f64]) -> f64 {
        let (n, k, h, w) = self.dims;
        let mut p = vec![0.0; k * h * w];
        let mut total = 0.0;
        for b in 0..n {
            self.softmax(z, b, &mut p);
            self.for_diffs(v, b, |c, from, to, wt| total += wt * self.rho(p[c * h * w + to] - p[c * h * w + from]));
        }
        total / self.normaliser(v)
    }

    /// `∂TV/∂z · grad_out`.
    fn backward(&self, z: &[f64], v: &[f64], grad_out: f64) -> Vec<f64> {
        let (n, k, h, w) = self.dims;
        let hw = h * w;
        let scale = grad_out / self.normaliser(v);
        let mut out = vec![0.0; n * k * hw];
        let (mut p, mut g) = (vec![0.0; k * hw], vec![0.0; k * hw]);
        for b in 0..n {
            self.softmax(z, b, &mut p);
            g.fill(0.0);
            self.for_diffs(v, b, |c, from, to, wt| {
                let s = wt * self.drho(p[c * hw + to] - p[c * hw + from]);
                g[c * hw + to] += s;
                g[c * hw + from] -= s;
            });
            for q in 0..hw {
                let pg: f64 = (0..k).map(|c| p[c * hw + q] * g[c * hw + q]).sum();
                for c in 0..k {
                    out[b * k * hw + c * hw + q] = scale * p[c * hw + q] * (g[c * hw + q] - pg);
                }
            }
        }
        out
    }
}

fn storage_f64(s: &CpuStorage, l: &Layout) -> candle_core::Result<Vec<f64>> {
    let (start, end) =
        l.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg("fused TV: non-contiguous input".into()))?;
    match s {
        CpuStorage::F32(v) => Ok(v[start..end].iter().map(|&x| x as f64).collect()),
        CpuStorage::F64(v) => Ok(v[start..end].to_vec()),
        _ => Err(candle_core::Error::Msg("fused TV: f32/f64 inputs only".into())),
    }
}

impl CustomOp2 for FusedTvA {
    fn name(&self) -> &'static str {
        "fused-tv-a"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let tv = self.forward(&storage_f64(s1, l1)?, &storage_f64(s2, l2)?);
        let storage = match s1 {
            CpuStorage::F32(_) => CpuStorage::F32(vec![tv as f32]),
            _ => CpuStorage::F64(vec![tv]),
        };
        Ok((storage, Shape::from(())))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        fused_cuda::forward(self, s1, l1, s2, l2)
    }

    fn bwd(
        &self,
        z: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        if !z.device().is_cpu() {
            // On the GPU: the backward kernel over (z, valid, grad), no host round trip.
            let dz = z.contiguous()?.apply_op3_no_bwd(&v.contiguous()?, &grad.contiguous()?, &FusedTvABwd(*self))?;
            return Ok((Some(dz), None));
        }
        let zf: Vec<f64> = z.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        let vf: Vec<f64> = v.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        let g = grad.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let dz = Tensor::from_vec(self.backward(&zf, &vf, g), z.shape(), z.device())?.to_dtype(z.dtype())?;
        Ok((Some(dz), None))
    }
}

/// Backward of [`FusedTvA`] on CUDA over `(z, valid, grad_out)`.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
struct FusedTvABwd(FusedTvA);

impl candle_core::CustomOp3 for FusedTvABwd {
    fn name(&self) -> &'static str {
        "fused-tv-a-bwd"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        Err(candle_core::Error::Msg("fused TV: the device backward op ran on the CPU".into()))
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
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        fused_cuda::backward(&self.0, (s1, l1), (s2, l2), (s3, l3))
    }
}

/// Whether the fused kernel runs on `logits`: f32/f64 on the CPU, or (feature `cuda`) f32/f64/bf16 on CUDA.
pub fn fused_supported(logits: &Tensor) -> bool {
    match logits.device() {
        candle_core::Device::Cpu => matches!(logits.dtype(), DType::F32 | DType::F64),
        candle_core::Device::Cuda(_) => {
            cfg!(feature = "cuda") && matches!(logits.dtype(), DType::F32 | DType::F64 | DType::BF16)
        }
        _ => false,
    }
}

/// Variant A of [`crate::tv::tv_loss`] (`TV(softmax(z))`) by the fused kernel. Errors for other variants, the
/// curvilinear switch, or tensors [`fused_supported`] rejects.
pub fn tv_loss_fused(logits: &Tensor, valid: Option<&Tensor>, cfg: &TvConfig) -> Result<Tensor> {
    cfg.validate()?;
    if cfg.variant != TvVariant::A || cfg.curvilinear.enabled {
        bail_arg!("fused TV kernel: variant A without the curvilinear switch only");
    }
    if !fused_supported(logits) {
        bail_arg!("fused TV kernel: f32/f64 CPU tensors (or CUDA tensors with the `cuda` feature) only");
    }
    let dims = logits.dims4()?;
    let (n, _, h, w) = dims;
    let v = match valid {
        None => Tensor::ones((n, h, w), logits.dtype(), logits.device())?,
        Some(v) if v.dims() == [n, h, w] => v.to_dtype(logits.dtype())?.contiguous()?.detach(),
        Some(v) => bail_arg!("tv: valid map {:?} does not match logits {:?}", v.dims(), logits.dims()),
    };
    let op = FusedTvA { eps: cfg.eps(), mean: cfg.normalize == TvNormalize::Mean, dims };
    Ok(logits.contiguous()?.apply_op2(&v, op)?)
}
