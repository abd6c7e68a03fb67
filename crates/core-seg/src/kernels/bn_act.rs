//! Batch norm fused with the residual add and activation that follow it (ResNet blocks and DeepLab heads:
//! ReLU; MobileNetV2: ReLU6, or the residual add alone).
//!
//! Per channel `c` with scale `k = γ·is`, `is = 1/√(σ² + ε)`: `z = k·(x − μ) + β (+ r)`, `y = act(z)` with
//! `act` = identity, `max(z, 0)` or `min(max(z, 0), 6)` ([`Act`]). Training mode takes `μ, σ²` from the batch
//! (as [`super::batch_norm_train`]), evaluation mode from the running estimates (constants). Backward
//! (`g = dy·act'`, i.e. `dy·[0 < y < hi]` with `hi` = ∞ for ReLU and 6 for ReLU6; `M = N·S`):
//! `dr = g`, `dβ = Σg`, `dγ = Σ g·(x − μ)·is`, and `dx = k·g` in evaluation mode,
//! `dx = k·(g − dβ/M − (x − μ)·is·dγ/M)` in training mode.
//!
//! One pass writes `y` (instead of BN, add and activation each allocating and sweeping the tensor), and the
//! backward reads the activation's mask from `y`, so none of Candle's relu/clamp/add backward temporaries are
//! built. (The masks are PyTorch's: `y > 0` for ReLU, `0 < y < 6` for ReLU6 (`hardtanh`); Candle's reference
//! ReLU passes the gradient at `z = 0` too.)

use std::mem::MaybeUninit;
use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::bn_core::{batch_stats, dx_plane, grad_sums, ncs, Stats};
use super::{contiguous_slice, new_filled, require_cpu, unsupported_dtype, Float};

const OP: &str = "kernels::batch_norm_act";

/// The activation fused after batch norm (and the residual add). `true`/`false` convert to `Relu`/`None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Act {
    /// No activation: `y = z`.
    #[default]
    None,
    /// `y = max(z, 0)`.
    Relu,
    /// `y = min(max(z, 0), 6)` (MobileNetV2's `nn.ReLU6`).
    Relu6,
}

impl From<bool> for Act {
    fn from(relu: bool) -> Self {
        if relu {
            Act::Relu
        } else {
            Act::None
        }
    }
}

impl Act {
    /// The upper clip of a clipping activation (∞ for ReLU), `None` without activation.
    fn upper<T: Float>(self) -> Option<T> {
        match self {
            Act::None => None,
            Act::Relu => Some(T::from_f64_(f64::INFINITY)),
            Act::Relu6 => Some(T::from_f64_(6.0)),
        }
    }

    /// `act(y)` as Candle ops (the reference path of layers that cannot use the fused kernel).
    pub fn apply(self, y: &Tensor) -> Result<Tensor> {
        match self {
            Act::None => Ok(y.clone()),
            Act::Relu => y.relu(),
            Act::Relu6 => y.clamp(0f32, 6f32),
        }
    }
}

/// Where the normalisation statistics come from.
#[derive(Debug, Clone, Copy)]
pub enum BnStats<'a> {
    /// Batch statistics (training mode).
    Batch,
    /// Given mean and (biased) variance `[C]` (evaluation mode: the running estimates, not differentiated).
    Running(&'a Tensor, &'a Tensor),
}

/// `act(BN(x) + residual)` of `x [N, C, ...]` with affine `gamma`, `beta` `[C]` ([`Act`]; `true` = ReLU).
/// Returns `y` and, for [`BnStats::Batch`], the detached batch mean and biased variance `[C]`. Differentiable
/// in x, γ, β and the residual. CPU only, f32/f64.
pub fn batch_norm_act(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    stats: BnStats<'_>,
    residual: Option<&Tensor>,
    act: impl Into<Act>,
) -> Result<(Tensor, Option<(Tensor, Tensor)>)> {
    let act = act.into();
    require_cpu(OP, x)?;
    let dims = x.dims();
    if dims.len() < 2 || gamma.dims() != [dims[1]] || beta.dims() != [dims[1]] || dims[0] * dims[1] == 0 {
        candle_core::bail!(
            "{OP}: x {dims:?} needs rank ≥ 2, C > 0 and gamma {:?}, beta {:?} of shape [C]",
            gamma.dims(),
            beta.dims()
        );
    }
    if let Some(r) = residual {
        if r.dims() != dims || r.dtype() != x.dtype() {
            candle_core::bail!("{OP}: residual {:?} {:?} vs x {dims:?} {:?}", r.dims(), r.dtype(), x.dtype());
        }
    }
    let c = dims[1];
    let given = match stats {
        BnStats::Batch => {
            if x.elem_count() / c < 2 {
                candle_core::bail!("{OP}: {} value(s) per channel in training mode (x {dims:?})", x.elem_count() / c);
            }
            None
        }
        BnStats::Running(mean, var) => {
            let mean: Vec<f64> = mean.to_dtype(candle_core::DType::F64)?.flatten_all()?.to_vec1()?;
            let var: Vec<f64> = var.to_dtype(candle_core::DType::F64)?.flatten_all()?.to_vec1()?;
            if mean.len() != c || var.len() != c {
                candle_core::bail!(
                    "{OP}: running statistics of {} / {} channels for x {dims:?}",
                    mean.len(),
                    var.len()
                );
            }
            let invstd = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
            Some(Stats { mean, var, invstd })
        }
    };
    let gb = Tensor::cat(&[gamma, beta], 0)?.to_dtype(x.dtype())?;
    let op = BnActOp { eps, act, given, saved: Arc::new(Mutex::new(None)) };
    let saved = op.saved.clone();
    let x = x.contiguous()?;
    let y = match residual {
        Some(r) => x.apply_op3(&gb, &r.contiguous()?, op)?,
        None => x.apply_op2(&gb, op)?,
    };
    if !matches!(stats, BnStats::Batch) {
        return Ok((y, None));
    }
    let st = saved
        .lock()
        .map_err(|_| candle_core::Error::Msg(format!("{OP}: poisoned stats")))?
        .as_ref()
        .map(|st| (st.mean.clone(), st.var.clone()))
        .ok_or_else(|| candle_core::Error::Msg(format!("{OP}: forward saved no statistics")))?;
    let mean = Tensor::from_vec(st.0, c, x.device())?.to_dtype(x.dtype())?;
    let var = Tensor::from_vec(st.1, c, x.device())?.to_dtype(x.dtype())?;
    Ok((y, Some((mean, var))))
}

#[derive(Clone)]
struct BnActOp {
    eps: f64,
    act: Act,
    /// Running statistics (evaluation mode); `None` = batch statistics.
    given: Option<Stats>,
    /// The statistics the forward used, for the backward and for the caller's running estimates.
    saved: Arc<Mutex<Option<Stats>>>,
}

fn forward<T: Float>(x: &[T], gb: &[T], r: Option<&[T]>, op: &BnActOp, dims: (usize, usize, usize)) -> (Vec<T>, Stats) {
    let (_, c, s) = dims;
    let st = op.given.clone().unwrap_or_else(|| {
        let (mean, var) = batch_stats(x, dims);
        let invstd = var.iter().map(|v| 1.0 / (v + op.eps).sqrt()).collect();
        Stats { mean, var, invstd }
    });
    let s1 = s.max(1);
    let fill = |y: &mut [MaybeUninit<T>]| {
        y.par_chunks_mut(s1).zip(x.par_chunks(s1)).enumerate().for_each(|(plane, (yo, xi))| {
            let ch = plane % c;
            let scale = gb[ch].to_f64_() * st.invstd[ch];
            let (k, b) = (T::from_f64_(scale), T::from_f64_(gb[c + ch].to_f64_() - st.mean[ch] * scale));
            match (r, op.act.upper::<T>()) {
                (Some(r), Some(hi)) => {
                    let ri = &r[plane * s..(plane + 1) * s];
                    yo.iter_mut().zip(xi).zip(ri).for_each(|((o, v), q)| _ = o.write(clip(*v * k + b + *q, hi)))
                }
                (Some(r), None) => {
                    let ri = &r[plane * s..(plane + 1) * s];
                    yo.iter_mut().zip(xi).zip(ri).for_each(|((o, v), q)| _ = o.write(*v * k + b + *q))
                }
                (None, Some(hi)) => yo.iter_mut().zip(xi).for_each(|(o, v)| _ = o.write(clip(*v * k + b, hi))),
                (None, None) => yo.iter_mut().zip(xi).for_each(|(o, v)| _ = o.write(*v * k + b)),
            }
        })
    };
    // SAFETY: `fill` writes every plane of `y` (as many as of `x`, each as long), element by element.
    (unsafe { new_filled(x.len(), x.len(), fill) }, st)
}

/// `min(max(z, 0), hi)`, NaN to 0 (selects, so the loops vectorise).
#[inline(always)]
fn clip<T: Float>(z: T, hi: T) -> T {
    let z = if z > T::zero() { z } else { T::zero() };
    if z < hi {
        z
    } else {
        hi
    }
}

impl BnActOp {
    fn run(
        &self,
        x: (&CpuStorage, &Layout),
        gb: (&CpuStorage, &Layout),
        r: Option<(&CpuStorage, &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = ncs(x.1);
        macro_rules! go {
            ($t:ty, $v:ident) => {{
                let rs = match r {
                    Some((s, l)) => Some(contiguous_slice::<$t>(OP, s, l)?),
                    None => None,
                };
                let (y, st) =
                    forward::<$t>(contiguous_slice(OP, x.0, x.1)?, contiguous_slice(OP, gb.0, gb.1)?, rs, self, dims);
                (CpuStorage::$v(y), st)
            }};
        }
        let (y, st) = match x.0 {
            CpuStorage::F32(_) => go!(f32, F32),
            CpuStorage::F64(_) => go!(f64, F64),
            _ => return unsupported_dtype(OP, x.0),
        };
        if let Ok(mut g) = self.saved.lock() {
            *g = Some(st);
        }
        Ok((y, x.1.shape().clone()))
    }

    /// The backward op for gradient `dy` of output `y`, or an error if the forward did not run.
    fn bwd_op(&self, gb: &Tensor, residual: bool) -> Result<BnActBwdOp> {
        let st = self
            .saved
            .lock()
            .map_err(|_| candle_core::Error::Msg(format!("{OP}: poisoned stats")))?
            .clone()
            .ok_or_else(|| candle_core::Error::Msg(format!("{OP}: backward before forward")))?;
        let c = st.mean.len();
        let gamma: Vec<f64> = gb.narrow(0, 0, c)?.to_dtype(candle_core::DType::F64)?.to_vec1()?;
        Ok(BnActBwdOp { st, gamma, act: self.act, train: self.given.is_none(), residual })
    }
}

impl CustomOp2 for BnActOp {
    fn name(&self) -> &'static str {
        "kernels-batch-norm-act"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        self.run((s1, l1), (s2, l2), None)
    }

    fn bwd(&self, x: &Tensor, gb: &Tensor, y: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dgb, _) = self.bwd_op(gb, false)?.apply(x, y, dy)?;
        Ok((Some(dx), Some(dgb)))
    }
}

impl CustomOp3 for BnActOp {
    fn name(&self) -> &'static str {
        "kernels-batch-norm-act-residual"
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
        self.run((s1, l1), (s2, l2), Some((s3, l3)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gb: &Tensor,
        _r: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dgb, dr) = self.bwd_op(gb, true)?.apply(x, y, dy)?;
        Ok((Some(dx), Some(dgb), dr))
    }
}

/// Backward over `(x, y, dy)`; output is the flat concatenation `[dx, (dr), dγ, dβ]`.
struct BnActBwdOp {
    st: Stats,
    gamma: Vec<f64>,
    act: Act,
    train: bool,
    residual: bool,
}

impl BnActBwdOp {
    /// `(dx, d[γ, β], dr)`.
    fn apply(self, x: &Tensor, y: &Tensor, dy: &Tensor) -> Result<(Tensor, Tensor, Option<Tensor>)> {
        let (numel, c, residual) = (x.elem_count(), x.dims()[1], self.residual);
        let flat = x.contiguous()?.apply_op3_no_bwd(&y.contiguous()?, &dy.contiguous()?, &self)?;
        let dx = flat.narrow(0, 0, numel)?.reshape(x.shape())?;
        let (dr, off) =
            if residual { (Some(flat.narrow(0, numel, numel)?.reshape(x.shape())?), 2 * numel) } else { (None, numel) };
        Ok((dx, flat.narrow(0, off, 2 * c)?, dr))
    }
}

fn backward<T: Float>(x: &[T], y: &[T], dy: &[T], op: &BnActBwdOp, (n, c, s): (usize, usize, usize)) -> Vec<T> {
    let st = &op.st;
    let hi = op.act.upper::<T>();
    let (dgamma, dbeta): (Vec<f64>, Vec<f64>) = (0..c)
        .into_par_iter()
        .map(|ch| {
            let (sgx, sg) = grad_sums(x, dy, hi.map(|hi| (y, hi)), ch, st.mean[ch], (n, c, s));
            (sgx * st.invstd[ch], sg)
        })
        .unzip();
    let numel = x.len();
    let len = numel * (1 + op.residual as usize) + 2 * c;
    // SAFETY: `fill_grads` writes every element: each plane of `dx` (and `dr`) through `dx_plane`, then `dγ, dβ`.
    unsafe { new_filled(len, len, |out| fill_grads(x, y, dy, op, (n, c, s), (&dgamma, &dbeta), out)) }
}

/// The backward's output `[dx, (dr), dγ, dβ]` from the gradient sums, every element written.
fn fill_grads<T: Float>(
    x: &[T],
    y: &[T],
    dy: &[T],
    op: &BnActBwdOp,
    (n, c, s): (usize, usize, usize),
    (dgamma, dbeta): (&[f64], &[f64]),
    out: &mut [MaybeUninit<T>],
) {
    let (st, hi, numel) = (&op.st, op.act.upper::<T>(), x.len());
    let (dx, rest) = out.split_at_mut(numel);
    let (dr, dgb) = if op.residual { rest.split_at_mut(numel) } else { rest.split_at_mut(0) };
    let m = (n * s) as f64;
    let s1 = s.max(1);
    let coef = |ch: usize| {
        let (mu, is) = (st.mean[ch], st.invstd[ch]);
        let k = op.gamma[ch] * is;
        if !op.train {
            return (T::from_f64_(k), T::zero(), T::zero());
        }
        // dx = k·(g − dβ/M − (x − μ)·is·dγ/M) = k·g + a·x + b
        let a = -k * is * dgamma[ch] / m;
        let b = -k * dbeta[ch] / m - a * mu;
        (T::from_f64_(k), T::from_f64_(a), T::from_f64_(b))
    };
    let planes = dx.par_chunks_mut(s1).zip(x.par_chunks(s1).zip(y.par_chunks(s1)).zip(dy.par_chunks(s1)));
    let run =
        |plane: usize, d: &mut [MaybeUninit<T>], ri: Option<&mut [MaybeUninit<T>]>, xi: &[T], yi: &[T], gi: &[T]| {
            let kab = coef(plane % c);
            match hi {
                Some(hi) => dx_plane::<T, true>(d, ri, xi, yi, gi, hi, kab),
                None => dx_plane::<T, false>(d, ri, xi, yi, gi, T::zero(), kab),
            }
        };
    if op.residual {
        planes
            .zip(dr.par_chunks_mut(s1))
            .enumerate()
            .for_each(|(plane, ((d, ((xi, yi), gi)), ri))| run(plane, d, Some(ri), xi, yi, gi));
    } else {
        planes.enumerate().for_each(|(plane, (d, ((xi, yi), gi)))| run(plane, d, None, xi, yi, gi));
    }
    for ch in 0..c {
        dgb[ch].write(T::from_f64_(dgamma[ch]));
        dgb[c + ch].write(T::from_f64_(dbeta[ch]));
    }
}

impl CustomOp3 for BnActBwdOp {
    fn name(&self) -> &'static str {
        "kernels-batch-norm-act-bwd"
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
        if l1.dims() != l2.dims() || l1.dims() != l3.dims() {
            candle_core::bail!("{OP} backward: x {:?}, y {:?}, dy {:?}", l1.dims(), l2.dims(), l3.dims());
        }
        let dims = ncs(l1);
        macro_rules! go {
            ($t:ty) => {
                backward::<$t>(
                    contiguous_slice(OP, s1, l1)?,
                    contiguous_slice(OP, s2, l2)?,
                    contiguous_slice(OP, s3, l3)?,
                    self,
                    dims,
                )
            };
        }
        let out = match s1 {
            CpuStorage::F32(_) => CpuStorage::F32(go!(f32)),
            CpuStorage::F64(_) => CpuStorage::F64(go!(f64)),
            _ => return unsupported_dtype(OP, s1),
        };
        let numel = l1.shape().elem_count();
        Ok((out, Shape::from(numel * (1 + self.residual as usize) + 2 * dims.1)))
    }
}
