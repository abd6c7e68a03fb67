//! Launch code of `cuda/pool.cu` (3×3/s2/p1 max pooling with argmax kept on the device).

use std::sync::Arc;

use candle_core::cuda_backend::cudarc::driver::{CudaSlice, PushKernelArg};
use candle_core::{CudaStorage, Layout, Result, Shape};

use super::{alloc, cu_err, dispatch, func, grid, kname, view, CuFloat, POOL};

const OP: &str = "kernels::max_pool_3x3_s2_p1 (cuda)";

fn out_hw(h: usize, w: usize) -> (usize, usize) {
    ((h - 1) / 2 + 1, (w - 1) / 2 + 1)
}

fn fwd<T: CuFloat>(s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, CudaSlice<u32>)> {
    let (n, c, h, w) = l.shape().dims4()?;
    let (oh, ow) = out_hw(h, w);
    let dev = &s.device;
    let x = view::<T>(OP, s, l)?;
    let total = n * c * oh * ow;
    let mut y = alloc::<T>(dev, total)?;
    let mut idx = alloc::<u32>(dev, total)?;
    let f = func(dev, POOL, &kname::<T>("maxpool_fwd"))?;
    let stream = dev.cuda_stream();
    let (planes, h32, w32) = ((n * c) as u64, h as u32, w as u32);
    let mut b = stream.launch_builder(&f);
    b.arg(&x).arg(&mut y).arg(&mut idx).arg(&planes).arg(&h32).arg(&w32);
    unsafe { b.launch(grid(total)) }.map_err(cu_err)?;
    Ok((CudaStorage::wrap_cuda_slice(y, dev.clone()), idx))
}

/// Forward on CUDA: the pooled map and the argmax (plane index of the first maximum) per output.
pub(crate) fn forward(s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape, Arc<CudaSlice<u32>>)> {
    let (n, c, h, w) = l.shape().dims4()?;
    if h * w > u32::MAX as usize {
        candle_core::bail!("{OP}: plane {h}x{w} too large for u32 indices");
    }
    let (y, idx) = dispatch!(OP, s, T => fwd::<T>(s, l))?;
    let (oh, ow) = out_hw(h, w);
    Ok((y, Shape::from((n, c, oh, ow)), Arc::new(idx)))
}

fn bwd<T: CuFloat>(
    s: &CudaStorage,
    l: &Layout,
    argmax: &CudaSlice<u32>,
    (h, w): (usize, usize),
) -> Result<CudaStorage> {
    let (n, c, _, _) = l.shape().dims4()?;
    let dev = &s.device;
    let dy = view::<T>(OP, s, l)?;
    let total = n * c * h * w;
    let mut dx = alloc::<T>(dev, total)?;
    let f = func(dev, POOL, &kname::<T>("maxpool_bwd"))?;
    let stream = dev.cuda_stream();
    let (planes, h32, w32) = ((n * c) as u64, h as u32, w as u32);
    let mut b = stream.launch_builder(&f);
    b.arg(&dy).arg(argmax).arg(&mut dx).arg(&planes).arg(&h32).arg(&w32);
    unsafe { b.launch(grid(total)) }.map_err(cu_err)?;
    Ok(CudaStorage::wrap_cuda_slice(dx, dev.clone()))
}

/// Backward on CUDA: `dy [N, C, oh, ow]` gathered to the saved argmax positions of `[N, C, h, w]`.
pub(crate) fn backward(
    s: &CudaStorage,
    l: &Layout,
    argmax: &CudaSlice<u32>,
    (h, w): (usize, usize),
) -> Result<(CudaStorage, Shape)> {
    let (n, c, oh, ow) = l.shape().dims4()?;
    if (oh, ow) != out_hw(h, w) || argmax.len() != l.shape().elem_count() {
        candle_core::bail!("{OP} backward: dy {:?} does not match the forward", l.dims());
    }
    let dx = dispatch!(OP, s, T => bwd::<T>(s, l, argmax, (h, w)))?;
    Ok((dx, Shape::from((n, c, h, w))))
}
