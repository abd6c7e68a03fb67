//! Launch code of `cuda/resize.cu` (bilinear resize forward and its adjoint).

use candle_core::cuda_backend::cudarc::driver::{CudaSlice, PushKernelArg};
use candle_core::cuda_backend::CudaDevice;
use candle_core::{CudaStorage, Layout, Result, Shape};

use super::{alloc, cu_err, dispatch, func, grid, kname, view, CuFloat, RESIZE};

const OP: &str = "kernels::resize_bilinear (cuda)";

/// Per-axis tap table `([i0, i1, lo, hi], lam)` built on the device.
fn axis(dev: &CudaDevice, inp: usize, out: usize, align_corners: bool) -> Result<(CudaSlice<i32>, CudaSlice<f64>)> {
    let mut idx = alloc::<i32>(dev, 2 * out + 2 * inp)?;
    let mut lam = alloc::<f64>(dev, out)?;
    let f = func(dev, RESIZE, "resize_axis")?;
    let stream = dev.cuda_stream();
    let (i, o, ac) = (inp as u32, out as u32, u32::from(align_corners));
    let mut b = stream.launch_builder(&f);
    b.arg(&i).arg(&o).arg(&ac).arg(&mut idx).arg(&mut lam);
    unsafe { b.launch(grid(inp.max(out))) }.map_err(cu_err)?;
    Ok((idx, lam))
}

/// `forward`: `x [N, C, h, w]` → `[N, C, oh, ow]`; otherwise the adjoint `dy [N, C, oh, ow]` → `[N, C, h, w]`.
/// `src` is the input of the launch, `(h, w)` always the image size and `(oh, ow)` the resized size.
fn run<T: CuFloat>(
    s: &CudaStorage,
    l: &Layout,
    n_planes: usize,
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
    align_corners: bool,
    forward: bool,
) -> Result<CudaStorage> {
    let dev = &s.device;
    let src = view::<T>(OP, s, l)?;
    let (ty, ly) = axis(dev, h, oh, align_corners)?;
    let (tx, lx) = axis(dev, w, ow, align_corners)?;
    let n_out = n_planes * if forward { oh * ow } else { h * w };
    let mut dst = alloc::<T>(dev, n_out)?;
    let name = if forward { "resize_fwd" } else { "resize_bwd" };
    let f = func(dev, RESIZE, &kname::<T>(name))?;
    let stream = dev.cuda_stream();
    let planes = n_planes as u64;
    let dims = [h as u32, w as u32, oh as u32, ow as u32];
    let mut b = stream.launch_builder(&f);
    b.arg(&src).arg(&mut dst).arg(&planes);
    for d in &dims {
        b.arg(d);
    }
    b.arg(&ty).arg(&ly).arg(&tx).arg(&lx);
    unsafe { b.launch(grid(n_out)) }.map_err(cu_err)?;
    Ok(CudaStorage::wrap_cuda_slice(dst, dev.clone()))
}

/// Forward of `ResizeOp` on CUDA.
pub(crate) fn forward(
    s: &CudaStorage,
    l: &Layout,
    (oh, ow): (usize, usize),
    align_corners: bool,
) -> Result<(CudaStorage, Shape)> {
    let (n, c, h, w) = l.shape().dims4()?;
    let y = dispatch!(OP, s, T => run::<T>(s, l, n * c, (h, w), (oh, ow), align_corners, true))?;
    Ok((y, Shape::from((n, c, oh, ow))))
}

/// Forward of `ResizeBwdOp` (the adjoint) on CUDA: `dy [N, C, oh, ow]` → `dx [N, C, h, w]`.
pub(crate) fn backward(
    s: &CudaStorage,
    l: &Layout,
    (h, w): (usize, usize),
    align_corners: bool,
) -> Result<(CudaStorage, Shape)> {
    let (n, c, oh, ow) = l.shape().dims4()?;
    let dx = dispatch!(OP, s, T => run::<T>(s, l, n * c, (h, w), (oh, ow), align_corners, false))?;
    Ok((dx, Shape::from((n, c, h, w))))
}
