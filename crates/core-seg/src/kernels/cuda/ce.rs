//! Launch code of `cuda/softmax_ce.cu` (per-pixel softmax cross-entropy with ignore label 255).

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::PushKernelArg;
use candle_core::{CudaStorage, Layout, Result, Shape};

use super::{alloc, cu_err, dispatch, func, grid, kname, view, CuFloat, SOFTMAX_CE};

const OP: &str = "kernels::softmax_cross_entropy (cuda)";
const IGNORE: u32 = crate::ops::IGNORE_INDEX;

fn fwd<T: CuFloat>(z: &CudaStorage, lz: &Layout, t: &CudaStorage, lt: &Layout) -> Result<CudaStorage> {
    let (n, k, h, w) = lz.shape().dims4()?;
    let dev = &z.device;
    let zv = view::<T>(OP, z, lz)?;
    let tv = view::<u32>(OP, t, lt)?;
    let total = n * h * w;
    let mut loss = alloc::<T>(dev, total)?;
    let mut bad = dev.alloc_zeros::<u32>(2)?;
    let f = func(dev, SOFTMAX_CE, &kname::<T>("ce_fwd"))?;
    let stream = dev.cuda_stream();
    let (n64, k32, s64) = (n as u64, k as u32, (h * w) as u64);
    let mut b = stream.launch_builder(&f);
    b.arg(&zv).arg(&tv).arg(&mut loss).arg(&mut bad).arg(&n64).arg(&k32).arg(&s64);
    unsafe { b.launch(grid(total)) }.map_err(cu_err)?;
    // One 8-byte read-back per loss call (the trainer reads the loss right after the forward anyway).
    let flag = dev.clone_dtoh(&bad)?;
    if flag[0] != 0 {
        candle_core::bail!("{OP}: target label {} outside 0..{k} (and not {IGNORE})", flag[1]);
    }
    Ok(CudaStorage::wrap_cuda_slice(loss, dev.clone()))
}

/// Forward on CUDA: loss map `[N, H, W]` of `logits [N, K, H, W]` against u32 `target [N, H, W]`.
pub(crate) fn forward(z: &CudaStorage, lz: &Layout, t: &CudaStorage, lt: &Layout) -> Result<(CudaStorage, Shape)> {
    let (n, _, h, w) = lz.shape().dims4()?;
    let loss = dispatch!(OP, z, T => fwd::<T>(z, lz, t, lt))?;
    Ok((loss, Shape::from((n, h, w))))
}

fn bwd<T: CuFloat>(
    z: &CudaStorage,
    lz: &Layout,
    t: &CudaStorage,
    lt: &Layout,
    dl: &CudaStorage,
    ldl: &Layout,
) -> Result<CudaStorage> {
    let (n, k, h, w) = lz.shape().dims4()?;
    let dev = &z.device;
    let (zv, tv, gv) = (view::<T>(OP, z, lz)?, view::<u32>(OP, t, lt)?, view::<T>(OP, dl, ldl)?);
    let mut dz = alloc::<T>(dev, n * k * h * w)?;
    let f = func(dev, SOFTMAX_CE, &kname::<T>("ce_bwd"))?;
    let stream = dev.cuda_stream();
    let (n64, k32, s64) = (n as u64, k as u32, (h * w) as u64);
    let mut b = stream.launch_builder(&f);
    b.arg(&zv).arg(&tv).arg(&gv).arg(&mut dz).arg(&n64).arg(&k32).arg(&s64);
    unsafe { b.launch(grid(n * h * w)) }.map_err(cu_err)?;
    Ok(CudaStorage::wrap_cuda_slice(dz, dev.clone()))
}

/// Backward on CUDA: `(logits, target, dℓ)` → dlogits.
pub(crate) fn backward(
    z: &CudaStorage,
    lz: &Layout,
    t: &CudaStorage,
    lt: &Layout,
    dl: &CudaStorage,
    ldl: &Layout,
) -> Result<(CudaStorage, Shape)> {
    let (n, _, h, w) = lz.shape().dims4()?;
    if ldl.dims() != [n, h, w] || dl.dtype() != z.dtype() {
        candle_core::bail!("{OP} backward: loss gradient {:?} vs logits {:?}", ldl.dims(), lz.dims());
    }
    let dz = dispatch!(OP, z, T => bwd::<T>(z, lz, t, lt, dl, ldl))?;
    Ok((dz, lz.shape().clone()))
}
