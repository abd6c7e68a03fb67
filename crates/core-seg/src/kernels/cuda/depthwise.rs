//! Launch code of `cuda/depthwise.cu`: the depthwise convolution and its input and weight gradients.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::{CudaStorage, Layout, Result};

use super::{alloc, cu_err, dispatch, func, grid, kname, view, CuFloat, DEPTHWISE};
use crate::kernels::im2col::Geom;

const OP: &str = "kernels::depthwise_conv2d (cuda)";
/// Threads per block of the weight-gradient reduction (`DW_BLOCK` in the kernel).
const DW_BLOCK: u32 = 256;

/// Which of the three kernels to launch, with its (first, second) inputs.
#[derive(Clone, Copy)]
pub(crate) enum Pass {
    /// `(x, w)` → `y [N, C, oh, ow]`.
    Forward,
    /// `(dy, w)` → `dx [N, C, H, W]`.
    GradInput,
    /// `(x, dy)` → `dw [C, 1, kh, kw]`.
    GradWeight,
}

fn launch<T: CuFloat>(
    g: &Geom,
    pass: Pass,
    (a, la): (&CudaStorage, &Layout),
    (b, lb): (&CudaStorage, &Layout),
) -> Result<CudaStorage> {
    let dev = &a.device;
    let (va, vb) = (view::<T>(OP, a, la)?, view::<T>(OP, b, lb)?);
    let planes = g.n * g.cin;
    let (name, n_out, cfg) = match pass {
        Pass::Forward => ("dw_fwd", planes * g.oh * g.ow, grid(planes * g.oh * g.ow)),
        Pass::GradInput => ("dw_grad_input", planes * g.h * g.w, grid(planes * g.h * g.w)),
        Pass::GradWeight => {
            let blocks = (g.cin * g.kh * g.kw) as u32;
            (
                "dw_grad_weight",
                g.cin * g.kh * g.kw,
                LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (DW_BLOCK, 1, 1), shared_mem_bytes: 0 },
            )
        }
    };
    let mut out = alloc::<T>(dev, n_out)?;
    let f = func(dev, DEPTHWISE, &kname::<T>(name))?;
    let stream = dev.cuda_stream();
    let planes = planes as u64;
    let dims = [g.cin, g.h, g.w, g.oh, g.ow, g.kh, g.kw, g.stride, g.pad, g.dil].map(|v| v as u32);
    let mut builder = stream.launch_builder(&f);
    builder.arg(&va).arg(&vb).arg(&mut out).arg(&planes);
    for d in &dims {
        builder.arg(d);
    }
    unsafe { builder.launch(cfg) }.map_err(cu_err)?;
    Ok(CudaStorage::wrap_cuda_slice(out, dev.clone()))
}

/// Runs one pass of the depthwise convolution of geometry `g` on CUDA storages of one dtype.
pub(crate) fn run(g: &Geom, pass: Pass, a: (&CudaStorage, &Layout), b: (&CudaStorage, &Layout)) -> Result<CudaStorage> {
    if a.0.dtype() != b.0.dtype() {
        candle_core::bail!("{OP}: inputs differ in dtype ({:?}, {:?})", a.0.dtype(), b.0.dtype());
    }
    if g.n * g.cin * g.h.max(g.oh) * g.w.max(g.ow) > u32::MAX as usize {
        candle_core::bail!("{OP}: tensor of {}x{}x{}x{} too large for the kernels' indices", g.n, g.cin, g.h, g.w);
    }
    dispatch!(OP, a.0, T => launch::<T>(g, pass, a, b))
}
