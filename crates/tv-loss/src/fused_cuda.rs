//! CUDA side of the fused variant-A kernel (`cuda/tv.cu`, compiled by this crate's build.rs): the same function as
//! the CPU kernel, all arithmetic in f64, deterministic reductions.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::CudaDevice;
use candle_core::{CudaStorage, DType, Layout, Result, Shape};
use core_seg::kernels::cuda::{alloc, bf16, cu_err, func, grid, kname, view, CuFloat};

use super::FusedTvA;

/// PTX text of `cuda/tv.cu` (`ptx::TV`).
mod ptx {
    include!(concat!(env!("OUT_DIR"), "/ptx.rs"));
}

/// The kernels' module: (name, PTX).
const TV: (&str, &str) = ("semiseg_tv", ptx::TV);

const OP: &str = "fused TV (cuda)";
/// Threads per block of the reduction kernels (`TV_THREADS` in tv.cu).
const THREADS: u32 = 256;
const MAX_PARTIAL_BLOCKS: usize = 1024;

fn dims32(op: &FusedTvA) -> (u32, u32, u32, u32) {
    let (n, k, h, w) = op.dims;
    (n as u32, k as u32, h as u32, w as u32)
}

/// `P = softmax_k(z)` in f64, `[N, K, H·W]`.
fn probs<T: CuFloat>(dev: &CudaDevice, op: &FusedTvA, z: &CudaView<'_, T>) -> Result<CudaSlice<f64>> {
    let (n, k, h, w) = op.dims;
    let mut p = alloc::<f64>(dev, n * k * h * w)?;
    let f = func(dev, TV, &kname::<T>("tv_softmax"))?;
    let stream = dev.cuda_stream();
    let (n32, k32, _, _) = dims32(op);
    let hw = (h * w) as u64;
    let mut b = stream.launch_builder(&f);
    b.arg(z).arg(&mut p).arg(&n32).arg(&k32).arg(&hw);
    unsafe { b.launch(grid(n * h * w)) }.map_err(cu_err)?;
    Ok(p)
}

/// `(TV as a one-element T buffer, Z as a one-element f64 buffer)`.
fn total<T: CuFloat>(
    dev: &CudaDevice,
    op: &FusedTvA,
    p: &CudaSlice<f64>,
    v: &CudaView<'_, T>,
) -> Result<(CudaSlice<T>, CudaSlice<f64>)> {
    let (n, _, h, w) = op.dims;
    let blocks = (n * h * w).div_ceil(THREADS as usize).clamp(1, MAX_PARTIAL_BLOCKS);
    let mut part = alloc::<f64>(dev, 2 * blocks)?;
    let stream = dev.cuda_stream();
    let (n32, k32, h32, w32) = dims32(op);
    let f = func(dev, TV, &kname::<T>("tv_partial"))?;
    let cfg = LaunchConfig { grid_dim: (blocks as u32, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 };
    let mut b = stream.launch_builder(&f);
    b.arg(p).arg(v).arg(&mut part).arg(&n32).arg(&k32).arg(&h32).arg(&w32).arg(&op.eps);
    unsafe { b.launch(cfg) }.map_err(cu_err)?;
    let mut out = alloc::<T>(dev, 1)?;
    let mut norm = alloc::<f64>(dev, 1)?;
    let (g32, mean) = (blocks as u32, u32::from(op.mean));
    let f = func(dev, TV, &kname::<T>("tv_finalize"))?;
    let one = LaunchConfig { grid_dim: (1, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 };
    let mut b = stream.launch_builder(&f);
    b.arg(&part).arg(&g32).arg(&k32).arg(&mean).arg(&mut out).arg(&mut norm);
    unsafe { b.launch(one) }.map_err(cu_err)?;
    Ok((out, norm))
}

fn fwd<T: CuFloat>(op: &FusedTvA, z: &CudaStorage, lz: &Layout, v: &CudaStorage, lv: &Layout) -> Result<CudaStorage> {
    let dev = &z.device;
    let (zv, vv) = (view::<T>(OP, z, lz)?, view::<T>(OP, v, lv)?);
    let p = probs::<T>(dev, op, &zv)?;
    let (out, _) = total::<T>(dev, op, &p, &vv)?;
    Ok(CudaStorage::wrap_cuda_slice(out, dev.clone()))
}

fn bwd<T: CuFloat>(
    op: &FusedTvA,
    (z, lz): (&CudaStorage, &Layout),
    (v, lv): (&CudaStorage, &Layout),
    (g, lg): (&CudaStorage, &Layout),
) -> Result<CudaStorage> {
    let dev = &z.device;
    let (zv, vv, gv) = (view::<T>(OP, z, lz)?, view::<T>(OP, v, lv)?, view::<T>(OP, g, lg)?);
    let p = probs::<T>(dev, op, &zv)?;
    let (_, norm) = total::<T>(dev, op, &p, &vv)?;
    let (n, k, h, w) = op.dims;
    let mut dz = alloc::<T>(dev, n * k * h * w)?;
    let (n32, k32, h32, w32) = dims32(op);
    let f = func(dev, TV, &kname::<T>("tv_bwd"))?;
    let stream = dev.cuda_stream();
    let mut b = stream.launch_builder(&f);
    b.arg(&p).arg(&vv).arg(&gv).arg(&norm).arg(&mut dz).arg(&n32).arg(&k32).arg(&h32).arg(&w32).arg(&op.eps);
    unsafe { b.launch(grid(n * h * w)) }.map_err(cu_err)?;
    Ok(CudaStorage::wrap_cuda_slice(dz, dev.clone()))
}

fn check(op: &FusedTvA, z: &CudaStorage, lz: &Layout, v: &CudaStorage) -> Result<()> {
    let (n, k, h, w) = op.dims;
    if lz.dims() != [n, k, h, w] || z.dtype() != v.dtype() {
        candle_core::bail!("{OP}: logits {:?} ({:?}) vs valid map ({:?})", lz.dims(), z.dtype(), v.dtype());
    }
    Ok(())
}

/// The loss (a scalar of the logits' dtype) on CUDA.
pub(super) fn forward(
    op: &FusedTvA,
    z: &CudaStorage,
    lz: &Layout,
    v: &CudaStorage,
    lv: &Layout,
) -> Result<(CudaStorage, Shape)> {
    check(op, z, lz, v)?;
    let out = match z.dtype() {
        DType::F32 => fwd::<f32>(op, z, lz, v, lv)?,
        DType::F64 => fwd::<f64>(op, z, lz, v, lv)?,
        DType::BF16 => fwd::<bf16>(op, z, lz, v, lv)?,
        dt => candle_core::bail!("{OP}: dtype {dt:?}"),
    };
    Ok((out, Shape::from(())))
}

/// `∂TV/∂z · grad` on CUDA over `(z, valid, grad)`.
pub(super) fn backward(
    op: &FusedTvA,
    z: (&CudaStorage, &Layout),
    v: (&CudaStorage, &Layout),
    g: (&CudaStorage, &Layout),
) -> Result<(CudaStorage, Shape)> {
    check(op, z.0, z.1, v.0)?;
    let dz = match z.0.dtype() {
        DType::F32 => bwd::<f32>(op, z, v, g)?,
        DType::F64 => bwd::<f64>(op, z, v, g)?,
        DType::BF16 => bwd::<bf16>(op, z, v, g)?,
        dt => candle_core::bail!("{OP}: dtype {dt:?}"),
    };
    Ok((dz, z.1.shape().clone()))
}
