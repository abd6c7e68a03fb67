//! Launch code of `cuda/batch_norm.cu`: training-mode batch norm with the SyncBN all-reduce hook.

use std::sync::Arc;

use candle_core::cuda_backend::cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::CudaDevice;
use candle_core::{CudaStorage, Layout, Result, Shape};

use super::{alloc, cu_err, func, grid, kname, view, CuFloat, BATCH_NORM};

const OP: &str = "kernels::batch_norm_train (cuda)";
const THREADS: u32 = 256;

/// What the forward keeps for the backward: `coef = [mean, var, invstd, scale, shift (C each), count]`
/// (count = values per channel over all ranks when SyncBN is on).
#[derive(Debug, Clone)]
pub(crate) struct DeviceStats {
    pub coef: Arc<CudaSlice<f64>>,
    pub c: usize,
}

/// `(N, C, S)` of a layout.
fn ncs(l: &Layout) -> (usize, usize, usize) {
    let d = l.dims();
    (d[0], d[1], d[2..].iter().product())
}

/// Chunks per channel of the partial-sum kernels: enough blocks to fill the GPU, ≥ 4096 values per block.
fn chunks(m: usize) -> usize {
    m.div_ceil(THREADS as usize * 16).clamp(1, 64)
}

/// Per-channel sums `[a (C), b (C), count]`: (Σx, Σx²) when `dy` is `None`, else (Σg, Σg·(x − μ)).
fn channel_sums<T: CuFloat>(
    dev: &CudaDevice,
    x: &CudaStorage,
    lx: &Layout,
    dy: Option<(&CudaStorage, &Layout, &CudaSlice<f64>)>,
) -> Result<CudaSlice<f64>> {
    let (n, c, s) = ncs(lx);
    let g = chunks(n * s);
    let xv = view::<T>(OP, x, lx)?;
    let mut part = alloc::<f64>(dev, 2 * c * g)?;
    let stream = dev.cuda_stream();
    let cfg = LaunchConfig { grid_dim: (g as u32, c as u32, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 };
    let (n32, c32, s32, g32) = (n as u32, c as u32, s as u32, g as u32);
    match dy {
        None => {
            let f = func(dev, BATCH_NORM, &kname::<T>("bn_partial"))?;
            let mut b = stream.launch_builder(&f);
            b.arg(&xv).arg(&mut part).arg(&n32).arg(&c32).arg(&s32).arg(&g32);
            unsafe { b.launch(cfg) }.map_err(cu_err)?;
        }
        Some((d, ld, coef)) => {
            let dv = view::<T>(OP, d, ld)?;
            let f = func(dev, BATCH_NORM, &kname::<T>("bn_bwd_partial"))?;
            let mut b = stream.launch_builder(&f);
            b.arg(&xv).arg(&dv).arg(coef).arg(&mut part).arg(&n32).arg(&c32).arg(&s32).arg(&g32);
            unsafe { b.launch(cfg) }.map_err(cu_err)?;
        }
    }
    let mut sums = alloc::<f64>(dev, 2 * c + 1)?;
    let f = func(dev, BATCH_NORM, "bn_reduce")?;
    let count = (n * s) as f64;
    let mut b = stream.launch_builder(&f);
    b.arg(&part).arg(&mut sums).arg(&c32).arg(&g32).arg(&count);
    unsafe { b.launch(grid(c)) }.map_err(cu_err)?;
    Ok(sums)
}

fn fwd<T: CuFloat>(
    x: &CudaStorage,
    lx: &Layout,
    gamma: &CudaStorage,
    lg: &Layout,
    beta: &CudaStorage,
    lb: &Layout,
    eps: f64,
) -> Result<(CudaStorage, DeviceStats)> {
    let dev = &x.device;
    let (_, c, s) = ncs(lx);
    let mut sums = channel_sums::<T>(dev, x, lx, None)?;
    // SyncBN: Σx, Σx² and the count summed over the ranks (no-op without a communicator).
    crate::dist::sync_bn_all_reduce(dev, &mut sums)?;
    let (gv, bv) = (view::<T>(OP, gamma, lg)?, view::<T>(OP, beta, lb)?);
    let mut coef = alloc::<f64>(dev, 5 * c + 1)?;
    let stream = dev.cuda_stream();
    let c32 = c as u32;
    let f = func(dev, BATCH_NORM, &kname::<T>("bn_coef"))?;
    let mut b = stream.launch_builder(&f);
    b.arg(&sums).arg(&gv).arg(&bv).arg(&eps).arg(&c32).arg(&mut coef);
    unsafe { b.launch(grid(c)) }.map_err(cu_err)?;
    let total = lx.shape().elem_count();
    let xv = view::<T>(OP, x, lx)?;
    let mut y = alloc::<T>(dev, total)?;
    let (t64, s32) = (total as u64, s as u32);
    let f = func(dev, BATCH_NORM, &kname::<T>("bn_apply"))?;
    let mut b = stream.launch_builder(&f);
    b.arg(&xv).arg(&coef).arg(&mut y).arg(&t64).arg(&c32).arg(&s32);
    unsafe { b.launch(grid(total)) }.map_err(cu_err)?;
    Ok((CudaStorage::wrap_cuda_slice(y, dev.clone()), DeviceStats { coef: Arc::new(coef), c }))
}

/// Forward on CUDA: `y` and the statistics for the backward.
pub(crate) fn forward(
    x: &CudaStorage,
    lx: &Layout,
    gamma: &CudaStorage,
    lg: &Layout,
    beta: &CudaStorage,
    lb: &Layout,
    eps: f64,
) -> Result<(CudaStorage, Shape, DeviceStats)> {
    check_u32(lx)?;
    let (y, st) = match candle_core::backend::BackendStorage::dtype(x) {
        candle_core::DType::F32 => fwd::<f32>(x, lx, gamma, lg, beta, lb, eps)?,
        candle_core::DType::F64 => fwd::<f64>(x, lx, gamma, lg, beta, lb, eps)?,
        _ => return super::unsupported(OP, x),
    };
    Ok((y, lx.shape().clone(), st))
}

fn check_u32(l: &Layout) -> Result<()> {
    let (n, c, s) = ncs(l);
    if n * s > u32::MAX as usize || c > 65535 {
        candle_core::bail!("{OP}: input {:?} too large for the kernel's index types", l.dims());
    }
    Ok(())
}

fn stats_out_t<T: CuFloat>(dev: &CudaDevice, st: &DeviceStats) -> Result<CudaStorage> {
    let mut out = alloc::<T>(dev, 2 * st.c)?;
    let f = func(dev, BATCH_NORM, &kname::<T>("bn_stats_out"))?;
    let stream = dev.cuda_stream();
    let c32 = st.c as u32;
    let mut b = stream.launch_builder(&f);
    b.arg(st.coef.as_ref()).arg(&mut out).arg(&c32);
    unsafe { b.launch(grid(2 * st.c)) }.map_err(cu_err)?;
    Ok(CudaStorage::wrap_cuda_slice(out, dev.clone()))
}

/// `[batch mean (C), biased batch var (C)]` in the dtype of `like` (the γ storage).
pub(crate) fn stats_out(like: &CudaStorage, st: &DeviceStats) -> Result<(CudaStorage, Shape)> {
    let dev = &like.device;
    let out = match candle_core::backend::BackendStorage::dtype(like) {
        candle_core::DType::F32 => stats_out_t::<f32>(dev, st)?,
        candle_core::DType::F64 => stats_out_t::<f64>(dev, st)?,
        _ => return super::unsupported(OP, like),
    };
    Ok((out, Shape::from(2 * st.c)))
}

fn bwd<T: CuFloat>(
    x: &CudaStorage,
    lx: &Layout,
    gamma: &CudaStorage,
    lg: &Layout,
    dy: &CudaStorage,
    ldy: &Layout,
    st: &DeviceStats,
) -> Result<CudaStorage> {
    let dev = &x.device;
    let (_, c, s) = ncs(lx);
    let red_local = channel_sums::<T>(dev, x, lx, Some((dy, ldy, st.coef.as_ref())))?;
    let stream = dev.cuda_stream();
    let red_all = if crate::dist::sync_bn_active() {
        let mut all = stream.clone_dtod(&red_local).map_err(cu_err)?;
        crate::dist::sync_bn_all_reduce(dev, &mut all)?;
        Some(all)
    } else {
        None
    };
    let total = lx.shape().elem_count();
    let mut out = alloc::<T>(dev, total + 2 * c)?;
    let mut kab = alloc::<f64>(dev, 3 * c)?;
    let gv = view::<T>(OP, gamma, lg)?;
    let c32 = c as u32;
    {
        let mut tail = out.slice_mut(total..total + 2 * c);
        let f = func(dev, BATCH_NORM, &kname::<T>("bn_bwd_coef"))?;
        let mut b = stream.launch_builder(&f);
        b.arg(&gv).arg(st.coef.as_ref()).arg(&red_local).arg(red_all.as_ref().unwrap_or(&red_local));
        b.arg(&c32).arg(&mut tail).arg(&mut kab);
        unsafe { b.launch(grid(c)) }.map_err(cu_err)?;
    }
    {
        let (xv, dv) = (view::<T>(OP, x, lx)?, view::<T>(OP, dy, ldy)?);
        let mut head = out.slice_mut(0..total);
        let (t64, s32) = (total as u64, s as u32);
        let f = func(dev, BATCH_NORM, &kname::<T>("bn_bwd_dx"))?;
        let mut b = stream.launch_builder(&f);
        b.arg(&xv).arg(&dv).arg(&kab).arg(&mut head).arg(&t64).arg(&c32).arg(&s32);
        unsafe { b.launch(grid(total)) }.map_err(cu_err)?;
    }
    Ok(CudaStorage::wrap_cuda_slice(out, dev.clone()))
}

/// Backward on CUDA over `(x, γ, dy)`: the flat `[dx, dγ, dβ]` (as the CPU backward op).
pub(crate) fn backward(
    x: &CudaStorage,
    lx: &Layout,
    gamma: &CudaStorage,
    lg: &Layout,
    dy: &CudaStorage,
    ldy: &Layout,
    st: &DeviceStats,
) -> Result<(CudaStorage, Shape)> {
    check_u32(lx)?;
    let out = match candle_core::backend::BackendStorage::dtype(x) {
        candle_core::DType::F32 => bwd::<f32>(x, lx, gamma, lg, dy, ldy, st)?,
        candle_core::DType::F64 => bwd::<f64>(x, lx, gamma, lg, dy, ldy, st)?,
        _ => return super::unsupported(OP, x),
    };
    Ok((out, Shape::from(lx.shape().elem_count() + 2 * st.c)))
}
