//! Hand-written CPU kernels exposed as Candle custom ops (issue 10).
//!
//! Every op here is a drop-in, differentiable replacement of a reference path in [`crate::ops`] / Candle:
//!
//! - [`conv2d`]: im2col + `gemm::gemm` forward; backward = GEMM + col2im (input gradient) and im2col + GEMM
//!   (weight gradient), each its own custom op, so no Candle convolution runs in backward (Candle's
//!   stride-2 backward is wrong when H and W differ in parity, and its input gradient is a slow direct loop).
//!   3×3 stride-1 layers with ≥ 64 channels on maps of 32² and more run as Winograd F(4,3) (forward and both gradients;
//!   [`ConvAlgo`] picks the algorithm explicitly). Dilated kernels on small maps, where most taps read
//!   padding, run by output regions over the live taps only. Depthwise convolutions (`groups = Cin = Cout`, kernels up
//!   to 3×3, any stride, padding and dilation: MobileNetV2's) run on a direct kernel that reads each tap
//!   from a polyphase copy of the input plane, vectorised across the whole plane, parallel over (image,
//!   channel) planes, for forward and both gradients.
//! - [`batch_norm_train`]: fused training-mode batch norm (f64 statistics, one normalise pass) with a fused
//!   backward.
//! - [`batch_norm_act`]: batch norm (batch or running statistics) fused with the residual add and the
//!   activation that follow it ([`Act`]: none, ReLU or ReLU6), one pass forward and two backward, the
//!   activation's mask read from the output. Layers call it through
//!   [`crate::nn::BatchNorm2d::forward_act`].
//! - [`max_pool_3x3_s2_p1`]: the ResNet stem pool with saved argmax (gradient 1 at the first maximum).
//! - [`resize_bilinear`]: direct 4-tap bilinear resize with PyTorch's source-index rule.
//! - [`softmax_cross_entropy`]: fused log-softmax + gather per-pixel loss with ignore label 255.
//! - [`sgd_step`]: in-place SGD update (momentum buffer and parameter, one pass each).
//!
//! All ops run on CPU storage (f32 and f64). With the `cuda` feature, resize, max-pool and softmax-CE also run
//! on CUDA storage (f32, f64, bf16) and batch norm (f32, f64, with SyncBN) through PTX kernels ([`cuda`]);
//! so does the depthwise convolution ([`depthwise_conv2d`]); other convolutions stay Candle's there. On other devices/dtypes they return an error naming the op, so the
//! caller takes the reference path.

/// `vis fn name[generics](args) => body::<generic names>` defines `vis fn name`, which runs `body` (an
/// `#[inline(always)]` function with the same arguments) compiled a second time with AVX2 and FMA enabled when
/// the CPU supports them, else as compiled. Work passed in as a closure is compiled apart from the fast copy
/// (a closure does not inherit `target_feature`): bodies loop in their own code. [`Float::mul_add_`] is one
/// instruction in the fast copy.
macro_rules! simd_dispatch {
    ($(#[$doc:meta])* $vis:vis fn $name:ident[$($gen:tt)*]($($arg:ident: $ty:ty),* $(,)?) => $body:ident::<$($ga:tt),*>) => {
        $(#[$doc])*
        $vis fn $name<$($gen)*>($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn fast<$($gen)*>($($arg: $ty),*) {
                    $body::<$($ga),*>($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU supports AVX2 and FMA (checked at run time just above).
                    return unsafe { fast::<$($ga),*>($($arg),*) };
                }
            }
            $body::<$($ga),*>($($arg),*)
        }
    };
}

mod batch_norm;
mod bn_act;
mod bn_core;
mod conv;
mod conv_batched;
mod conv_cpu;
mod conv_device;
mod conv_regions;
#[cfg(feature = "cuda")]
pub mod cuda;
mod depthwise;
mod depthwise_device;
mod gemm_glue;
mod im2col;
mod pool;
mod resize;
mod sgd;
mod softmax_ce;
mod winograd;
mod winograd_tiles;

pub use batch_norm::batch_norm_train;
pub use bn_act::{batch_norm_act, Act, BnStats};
pub use conv::{conv2d, conv2d_grad_input, conv2d_grad_weight, conv2d_with, ConvParams};
#[doc(hidden)]
pub use conv_batched::force_batched;
#[doc(hidden)]
pub use conv_cpu::set_band_cols;
pub use conv_cpu::ConvAlgo;
pub use conv_device::{conv2d_device, conv2d_device_grad_input, conv2d_device_grad_weight};
pub use depthwise_device::{depthwise_conv2d, is_depthwise};
pub use pool::max_pool_3x3_s2_p1;
pub use resize::resize_bilinear;
pub use sgd::{sgd_step, sgd_supported};
pub use softmax_ce::softmax_cross_entropy;
pub use winograd::Tile as WinogradTile;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Layout, Result};
use std::cell::RefCell;
use std::mem::MaybeUninit;

/// Element types the kernels are generic over (f32 for training, f64 for the parity tests).
pub(crate) trait Float: candle_core::WithDType + Copy + Send + Sync + 'static {
    /// Runs `f` with a thread-local scratch buffer of at least `len` elements (contents unspecified).
    /// Falls back to a fresh allocation if this thread's buffer is already in use (re-entrancy through
    /// rayon work stealing).
    fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R;
    fn exp_(self) -> Self;
    fn ln_(self) -> Self;
    /// `self as f64`. Candle's `WithDType::to_f64` is not `#[inline]`, so in a hot loop it is a call per element.
    fn to_f64_(self) -> f64;
    /// `v as Self` (see [`Float::to_f64_`]).
    fn from_f64_(v: f64) -> Self;
    /// `self · a + b` rounded once (one instruction where FMA is enabled, a library call elsewhere).
    fn mul_add_(self, a: Self, b: Self) -> Self;
}

thread_local! {
    static SCRATCH_F32: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static SCRATCH_F64: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
}

macro_rules! impl_float {
    ($t:ty, $tls:ident) => {
        impl Float for $t {
            #[inline(always)]
            fn exp_(self) -> Self {
                self.exp()
            }
            #[inline(always)]
            fn ln_(self) -> Self {
                self.ln()
            }
            #[inline(always)]
            fn to_f64_(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn from_f64_(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn mul_add_(self, a: Self, b: Self) -> Self {
                self.mul_add(a, b)
            }
            fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R {
                $tls.with(|cell| match cell.try_borrow_mut() {
                    Ok(mut buf) => {
                        if buf.len() < len {
                            buf.resize(len, 0.0);
                        }
                        f(&mut buf[..len])
                    }
                    Err(_) => f(&mut vec![0.0; len]),
                })
            }
        }
    };
}
impl_float!(f32, SCRATCH_F32);
impl_float!(f64, SCRATCH_F64);

/// A vector of `len` elements (capacity `capacity` ≥ `len`) written by `fill`, without zero-filling it first:
/// the outputs of the kernels are written once, and a zero-fill would be a second pass over memory.
///
/// # Safety
///
/// `fill` must write every element of the slice it is given. (If it panics the vector is dropped unread.)
pub(crate) unsafe fn new_filled<T>(len: usize, capacity: usize, fill: impl FnOnce(&mut [MaybeUninit<T>])) -> Vec<T> {
    let mut v = Vec::with_capacity(capacity.max(len));
    fill(&mut v.spare_capacity_mut()[..len]);
    // SAFETY: the capacity is at least `len`, and the caller guarantees that `fill` initialised `len` elements.
    unsafe { v.set_len(len) };
    v
}

/// `dst[i] = src[i]` for every `i` (equal lengths) into uninitialised memory.
#[inline(always)]
pub(crate) fn write_all<T: Copy>(dst: &mut [MaybeUninit<T>], src: &[T]) {
    assert_eq!(dst.len(), src.len(), "kernels::write_all: lengths differ");
    for (d, v) in dst.iter_mut().zip(src) {
        d.write(*v);
    }
}

/// The contiguous slice a layout views, or an error naming `op` if the layout is strided.
pub(crate) fn contiguous_slice<'a, T: Float>(op: &str, s: &'a CpuStorage, l: &Layout) -> Result<&'a [T]> {
    let data = s.as_slice::<T>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{op}: input must be contiguous, got layout {l:?}"),
    }
}

/// Error for a dtype the kernels do not implement.
pub(crate) fn unsupported_dtype<T>(op: &str, s: &CpuStorage) -> Result<T> {
    candle_core::bail!("{op}: unsupported dtype {:?} (f32 and f64 only)", s.dtype())
}

/// Whether the kernels can run on `t`: CPU storage of dtype f32 or f64, or (feature `cuda`) CUDA storage of
/// dtype f32, f64 or bf16. Callers use this to choose between the kernels and the reference path. The
/// convolution kernels are CPU-only: [`crate::nn::Conv2d`] checks the device as well.
pub fn is_supported(t: &candle_core::Tensor) -> bool {
    match t.device() {
        candle_core::Device::Cpu => matches!(t.dtype(), candle_core::DType::F32 | candle_core::DType::F64),
        #[cfg(feature = "cuda")]
        candle_core::Device::Cuda(_) => cuda::supported_dtype(t.dtype()),
        _ => false,
    }
}

static REFERENCE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// True when `SEMISEG_REFERENCE_OPS=1`: every op and layer takes the composite Candle reference path
/// (for checking the kernels), read once per process.
pub fn reference_requested() -> bool {
    *REFERENCE.get_or_init(|| std::env::var("SEMISEG_REFERENCE_OPS").is_ok_and(|v| v == "1"))
}

/// Whether the ops and layers use the kernels for `t` (supported tensor, reference path not requested).
pub fn active_for(t: &candle_core::Tensor) -> bool {
    is_supported(t) && !reference_requested()
}

/// Error for tensors on a device without kernels for `op` (CPU always; CUDA with the `cuda` feature when
/// `cuda` is set): the caller should take the reference path there.
fn require_device(op: &str, t: &candle_core::Tensor, cuda: bool) -> Result<()> {
    let ok = t.device().is_cpu() || (cfg!(feature = "cuda") && cuda && t.device().is_cuda());
    if !ok {
        candle_core::bail!(
            "{op}: no hand-written kernel for a tensor on {:?}; use the reference op",
            t.device().location()
        );
    }
    Ok(())
}

/// [`require_device`] for the CPU-only ops (the convolution).
pub(crate) fn require_cpu(op: &str, t: &candle_core::Tensor) -> Result<()> {
    require_device(op, t, false)
}

/// [`require_device`] for ops with CUDA kernels.
pub(crate) fn require_cpu_or_cuda(op: &str, t: &candle_core::Tensor) -> Result<()> {
    require_device(op, t, true)
}

/// Number of rayon threads the kernels split work over.
pub(crate) fn num_threads() -> usize {
    rayon::current_num_threads().max(1)
}

/// Spin iterations of Candle's element-wise worker pool after each job before it parks (`CANDLE_BARRIER_POOL_SPIN_LIMIT`).
///
/// Candle 0.11 runs large element-wise ops on its own barrier pool, whose idle workers spin 25 000 iterations
/// before parking. The convolutions, batch norm and GEMMs of this crate run on rayon's pool, so on a small
/// machine those spinning workers steal the cores rayon needs: on 2 cores the CPU-sized UniMatch step took
/// 2.1× longer with Candle's default than with a short spin while other processes shared the CPU (`cargo
/// xtask bench --cases unimatch-synth-64-b8`).
pub const CANDLE_POOL_SPIN_LIMIT: u32 = 100;

/// Configures the process for CPU training with these kernels. Call it at program start, before any tensor
/// op and before spawning threads.
///
/// - Sets `CANDLE_BARRIER_POOL_SPIN_LIMIT` to [`CANDLE_POOL_SPIN_LIMIT`] unless the user set it (Candle reads
///   it once, when its pool starts).
/// - Builds rayon's global pool with the calling thread as worker 0 (`use_current_thread`; thread count as
///   rayon's default / `RAYON_NUM_THREADS`; only with ≥ 2 threads, see the code). A parallel kernel called
///   from the main thread then runs its first half there and lets the other workers steal the rest, instead of
///   injecting the job, parking the main thread and waking it again: on 2 cores the UniMatch step made ~10×
///   fewer context switches (65 k → 6 k per `bench-case unimatch-synth-64-b8 --steps 5`) and ran 7–15% faster.
/// - glibc: serves blocks up to 32 MiB from the heap and keeps freed memory (`M_MMAP_THRESHOLD` 32 MiB,
///   `M_TRIM_THRESHOLD` 1 GiB, `M_TOP_PAD` 64 MiB). Training allocates and frees the same activation-sized
///   buffers every step; with glibc's defaults each came back from the kernel as fresh zeroed pages (4× the
///   page faults; 2–9% of the CPU time of the UniMatch step). Peak RSS did not change. Blocks above 32 MiB
///   (glibc's ceiling for that threshold) come from the heap too (`M_MMAP_MAX` 0), and every thread allocates
///   from the one main arena (`M_ARENA_MAX` 1; a one-thread run computes on rayon's worker, whose own arena
///   would map and unmap its largest blocks every step): the one-thread MobileNetV2 UniMatch step
///   (`RAYON_NUM_THREADS=1 xtask bench --cases unimatch-mnv2-160-b8`) went from ~93 k page faults to ~30 and
///   from 4260 to 4090 ms (two paired runs each), peak RSS 2447 → 2409 MiB; on two threads 2286 → 2193 ms.
pub fn configure_cpu_pools() {
    const VAR: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";
    if std::env::var_os(VAR).is_none() {
        std::env::set_var(VAR, CANDLE_POOL_SPIN_LIMIT.to_string());
    }
    // Rayon's default size: RAYON_NUM_THREADS, else the available parallelism. With a single thread the main
    // thread would be the only worker, and a job injected by another thread (the data prefetcher) while
    // main blocks outside rayon would never run: keep rayon's own pool there. Building fails (harmlessly) if
    // the global pool already exists.
    let n = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if n >= 2 {
        let _ = rayon::ThreadPoolBuilder::new().num_threads(n).use_current_thread().build_global();
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning parameters; it is called before other threads allocate.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
