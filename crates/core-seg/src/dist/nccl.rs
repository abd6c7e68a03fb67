//! The NCCL side of [`super`]: one communicator per process, kept in a thread-local (cudarc's `Comm` is
//! neither `Send` nor `Sync`; the training loop runs on one thread), on Candle's stream of the device so
//! collectives order with Candle's kernels.

use std::cell::RefCell;
use std::rc::Rc;

use candle_core::backprop::GradStore;
use candle_core::cuda_backend::cudarc::driver::CudaSlice;
use candle_core::cuda_backend::cudarc::nccl::{Comm, Id, NcclType, ReduceOp};
use candle_core::cuda_backend::CudaDevice;
use candle_core::{CpuStorage, CudaStorage, CustomOp1, DType, Device, Layout, Shape, Tensor, Var};

use super::DistEnv;
use crate::kernels::cuda::{alloc, view};
use crate::{Error, Result};

thread_local! {
    static COMM: RefCell<Option<Rc<Comm>>> = const { RefCell::new(None) };
}

const ID_BYTES: usize = 128;

pub(super) fn has_comm() -> bool {
    COMM.with(|c| c.borrow().is_some())
}

fn nccl_err(what: &str, e: impl std::fmt::Debug) -> candle_core::Error {
    candle_core::Error::Msg(format!("nccl {what}: {e:?}"))
}

fn with_comm<R>(f: impl FnOnce(&Comm) -> candle_core::Result<R>) -> candle_core::Result<R> {
    let comm = COMM.with(|c| c.borrow().clone()).ok_or_else(|| nccl_err("collective", "no communicator"))?;
    f(&comm)
}

/// A fresh NCCL unique id (rank 0 creates it; the rendezvous hands it to the others).
pub(super) fn new_id() -> Result<Vec<u8>> {
    let id = Id::new().map_err(|e| Error::Config(format!("nccl: cannot create a unique id: {e:?}")))?;
    Ok(id.internal().iter().map(|&c| c as u8).collect())
}

pub(super) fn init(device: &Device, env: DistEnv, bytes: &[u8]) -> Result<()> {
    let Device::Cuda(dev) = device else {
        return Err(Error::Config("data parallel training needs a CUDA device".into()));
    };
    if bytes.len() != ID_BYTES {
        return Err(Error::Config(format!("NCCL id has {} bytes, expected {ID_BYTES}", bytes.len())));
    }
    let mut raw = [0 as std::ffi::c_char; ID_BYTES];
    for (r, b) in raw.iter_mut().zip(bytes) {
        *r = *b as std::ffi::c_char;
    }
    let comm = Comm::from_rank(dev.cuda_stream(), env.rank, env.world_size, Id::uninit(raw))
        .map_err(|e| Error::Config(format!("nccl: rank {} of {}: {e:?}", env.rank, env.world_size)))?;
    COMM.with(|c| *c.borrow_mut() = Some(Rc::new(comm)));
    Ok(())
}

/// The collective a [`NcclOp`] runs.
#[derive(Clone, Copy)]
enum Kind {
    Sum,
    BroadcastFromRoot,
}

/// A collective as a Candle op on a contiguous CUDA tensor (f32 or f64); no gradient.
struct NcclOp(Kind);

fn run<T: NcclType + crate::kernels::cuda::CuFloat>(
    kind: Kind,
    s: &CudaStorage,
    l: &Layout,
) -> candle_core::Result<CudaStorage> {
    let dev: &CudaDevice = &s.device;
    let src = view::<T>("nccl", s, l)?;
    let mut dst: CudaSlice<T> = alloc(dev, src.len())?;
    with_comm(|comm| {
        let r = match kind {
            Kind::Sum => comm.all_reduce(&src, &mut dst, &ReduceOp::Sum),
            Kind::BroadcastFromRoot => comm.broadcast(Some(&src), &mut dst, 0),
        };
        r.map(|_| ()).map_err(|e| nccl_err("all_reduce/broadcast", e))
    })?;
    Ok(CudaStorage::wrap_cuda_slice(dst, dev.clone()))
}

impl CustomOp1 for NcclOp {
    fn name(&self) -> &'static str {
        "nccl-collective"
    }

    fn cpu_fwd(&self, _s: &CpuStorage, _l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        Err(nccl_err("collective", "CPU tensor (data parallel training runs on CUDA)"))
    }

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        let out = match candle_core::backend::BackendStorage::dtype(s) {
            DType::F32 => run::<f32>(self.0, s, l)?,
            DType::F64 => run::<f64>(self.0, s, l)?,
            dt => return Err(nccl_err("collective", format!("dtype {dt:?}"))),
        };
        Ok((out, l.shape().clone()))
    }
}

/// Flattens `parts` (same dtype and device) into one tensor.
fn flat(parts: &[Tensor]) -> Result<Tensor> {
    let flat: Vec<Tensor> = parts.iter().map(|t| t.flatten_all()).collect::<candle_core::Result<_>>()?;
    Ok(Tensor::cat(&flat, 0)?.contiguous()?)
}

pub(super) fn all_reduce_grads(vars: &[Var], grads: &mut GradStore) -> Result<()> {
    let world = super::world_size() as f64;
    let first = vars[0].as_tensor();
    let mut parts = Vec::with_capacity(vars.len() + 1);
    let mut present = Vec::with_capacity(vars.len());
    for v in vars {
        match grads.get(v.as_tensor()) {
            Some(g) => {
                parts.push(g.to_dtype(first.dtype())?);
                present.push(1.0);
            }
            None => {
                parts.push(v.as_tensor().zeros_like()?.to_dtype(first.dtype())?);
                present.push(0.0);
            }
        }
    }
    parts.push(Tensor::from_vec(present, vars.len(), first.device())?.to_dtype(first.dtype())?);
    let summed = flat(&parts)?.apply_op1_no_bwd(&NcclOp(Kind::Sum))?;
    let n_grad: usize = vars.iter().map(|v| v.elem_count()).sum();
    let counts: Vec<f64> = summed.narrow(0, n_grad, vars.len())?.to_dtype(DType::F64)?.to_vec1()?;
    let mean = (summed.narrow(0, 0, n_grad)? / world)?;
    let mut off = 0;
    for (v, count) in vars.iter().zip(counts) {
        let n = v.elem_count();
        if count > 0.0 {
            let g = mean.narrow(0, off, n)?.reshape(v.shape())?.to_dtype(v.dtype())?;
            grads.insert(v.as_tensor(), g);
        } else {
            grads.remove(v.as_tensor());
        }
        off += n;
    }
    Ok(())
}

pub(super) fn broadcast_vars(vars: &[Var]) -> Result<()> {
    let mut by_dtype: Vec<(DType, Vec<&Var>)> = Vec::new();
    for v in vars {
        match by_dtype.iter_mut().find(|(d, _)| *d == v.dtype()) {
            Some((_, list)) => list.push(v),
            None => by_dtype.push((v.dtype(), vec![v])),
        }
    }
    for (_, list) in by_dtype {
        let parts: Vec<Tensor> = list.iter().map(|v| v.as_tensor().clone()).collect();
        let all = flat(&parts)?.apply_op1_no_bwd(&NcclOp(Kind::BroadcastFromRoot))?;
        let mut off = 0;
        for v in list {
            let n = v.elem_count();
            v.set(&all.narrow(0, off, n)?.reshape(v.shape())?)?;
            off += n;
        }
    }
    Ok(())
}

pub(super) fn all_reduce_in_place_f64(_dev: &CudaDevice, buf: &mut CudaSlice<f64>) -> candle_core::Result<()> {
    with_comm(|comm| {
        comm.all_reduce_in_place(buf, &ReduceOp::Sum).map(|_| ()).map_err(|e| nccl_err("SyncBN all_reduce", e))
    })
}
