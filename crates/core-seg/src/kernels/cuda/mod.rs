//! CUDA side of the custom ops (feature `cuda`): the PTX that `build.rs` compiles from `core-seg/cuda/*.cu`,
//! the launch code each op's `cuda_fwd` calls, and the launch helpers method crates use for kernels of their
//! own (tv-loss, aux-mim compile theirs in their own `build.rs`). Kernels are loaded once per device through
//! `CudaDevice::get_or_load_custom_func` and launched on Candle's stream, so they order with Candle's own
//! kernels without extra synchronisation.
//!
//! | op | kernels | dtypes |
//! |---|---|---|
//! | [`super::resize_bilinear`] fwd / bwd | `resize_axis`, `resize_fwd_*`, `resize_bwd_*` (gather, no atomics) | f32, f64, bf16 |
//! | [`super::max_pool_3x3_s2_p1`] fwd / bwd | `maxpool_fwd_*` (argmax on device), `maxpool_bwd_*` | f32, f64, bf16 |
//! | [`super::softmax_cross_entropy`] fwd / bwd | `ce_fwd_*`, `ce_bwd_*` | f32, f64, bf16 |
//! | [`super::batch_norm_train`] fwd / bwd (+ SyncBN) | `bn_*` | f32, f64 |
//! | [`super::depthwise_conv2d`] fwd / input and weight gradients | `dw_*` (direct, no im2col) | f32, f64, bf16 |
//!
//! Other convolutions stay Candle's (cuBLAS im2col, or cuDNN with the `cudnn` feature).

pub(crate) mod bn;
pub(crate) mod ce;
pub(crate) mod depthwise;
pub(crate) mod pool;
pub(crate) mod resize;

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    CudaFunction, CudaSlice, CudaView, DeviceRepr, LaunchConfig, ValidAsZeroBits,
};
use candle_core::cuda_backend::{CudaDType, CudaDevice};
use candle_core::{CudaStorage, DType, Layout, Result};

/// The bf16 type of the kernels (for crates without their own `half` dependency).
pub use half::bf16;

/// PTX text of each `.cu` file (`RESIZE`, `POOL`, `SOFTMAX_CE`, `BATCH_NORM`, `DEPTHWISE`).
pub mod ptx {
    include!(concat!(env!("OUT_DIR"), "/ptx.rs"));
}

/// Threads per block of the element-wise kernels.
pub const BLOCK: u32 = 256;

/// Element types with kernels: the suffix of the kernel names.
pub trait CuFloat: CudaDType + DeviceRepr + ValidAsZeroBits + Copy + 'static {
    const SUFFIX: &'static str;
}
impl CuFloat for f32 {
    const SUFFIX: &'static str = "f32";
}
impl CuFloat for f64 {
    const SUFFIX: &'static str = "f64";
}
impl CuFloat for half::bf16 {
    const SUFFIX: &'static str = "bf16";
}

/// Launch configuration of a grid-stride kernel over `n` items (`BLOCK` threads, at most 2^20 blocks).
pub fn grid(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(BLOCK as usize).clamp(1, 1 << 20) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 }
}

/// Kernel `name` of the PTX module `(module name, ptx)` on `dev`, loaded on first use. Launch it with
/// `dev.cuda_stream().launch_builder(&f)` (Candle's stream).
pub fn func(dev: &CudaDevice, module: (&str, &str), name: &str) -> Result<CudaFunction> {
    Ok(dev.get_or_load_custom_func(name, module.0, module.1)?.into_cuda_function())
}

/// `name_<suffix>` for element type `T`.
pub fn kname<T: CuFloat>(name: &str) -> String {
    format!("{name}_{}", T::SUFFIX)
}

pub const RESIZE: (&str, &str) = ("semiseg_resize", ptx::RESIZE);
pub const POOL: (&str, &str) = ("semiseg_pool", ptx::POOL);
pub const SOFTMAX_CE: (&str, &str) = ("semiseg_softmax_ce", ptx::SOFTMAX_CE);
pub const BATCH_NORM: (&str, &str) = ("semiseg_batch_norm", ptx::BATCH_NORM);
pub const DEPTHWISE: (&str, &str) = ("semiseg_depthwise", ptx::DEPTHWISE);

/// The contiguous view a layout selects, or an error naming `op`.
pub fn view<'a, T: CudaDType>(op: &str, s: &'a CudaStorage, l: &Layout) -> Result<CudaView<'a, T>> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(s.as_cuda_slice::<T>()?.slice(a..b)),
        None => candle_core::bail!("{op}: input must be contiguous, got layout {l:?}"),
    }
}

/// Uninitialised device buffer of `n` elements (every kernel here writes all of its outputs).
pub fn alloc<T: DeviceRepr>(dev: &CudaDevice, n: usize) -> Result<CudaSlice<T>> {
    // SAFETY: the caller's kernel writes every element before anything reads it.
    unsafe { dev.alloc::<T>(n.max(1)) }
}

/// Wraps a driver error (launches, copies) into a Candle error.
pub fn cu_err(e: candle_core::cuda_backend::cudarc::driver::DriverError) -> candle_core::Error {
    candle_core::Error::Cuda(Box::new(e))
}

/// Error for a dtype without kernels.
pub fn unsupported<T>(op: &str, s: &CudaStorage) -> Result<T> {
    candle_core::bail!("{op}: no CUDA kernel for dtype {:?}", s.dtype())
}

/// Runs `$body` with `$t` bound to the Rust type of storage `$s` (f32, f64, bf16).
macro_rules! dispatch {
    ($op:expr, $s:expr, $t:ident => $body:expr) => {
        match candle_core::backend::BackendStorage::dtype($s) {
            candle_core::DType::F32 => {
                type $t = f32;
                $body
            }
            candle_core::DType::F64 => {
                type $t = f64;
                $body
            }
            candle_core::DType::BF16 => {
                type $t = half::bf16;
                $body
            }
            _ => $crate::kernels::cuda::unsupported($op, $s),
        }
    };
}
pub(crate) use dispatch;

/// Whether `dt` has CUDA kernels.
pub fn supported_dtype(dt: DType) -> bool {
    matches!(dt, DType::F32 | DType::F64 | DType::BF16)
}
