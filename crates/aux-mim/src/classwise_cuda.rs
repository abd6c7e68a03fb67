//! CUDA side of [`crate::classwise::build_inputs`]: `X̃[n, ch, p] = vis[n, p] ? x[rows[n], ch, p] : 0` in one
//! kernel (`cw_masked_gather` of `cuda/classwise.cu`, compiled by this crate's build.rs) instead of index_select + a broadcast copy of the
//! mask + where_cond. The sample selection itself (class counts, RNG draws) stays on the host.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::PushKernelArg;
use candle_core::{CpuStorage, CudaStorage, CustomOp3, DType, Layout, Shape, Tensor};
use core_seg::kernels::cuda::{alloc, bf16, cu_err, func, grid, kname, view, CuFloat};

/// PTX text of `cuda/classwise.cu` (`ptx::CLASSWISE`).
mod ptx {
    include!(concat!(env!("OUT_DIR"), "/ptx.rs"));
}

/// The kernels' module: (name, PTX).
const CLASSWISE: (&str, &str) = ("semiseg_classwise", ptx::CLASSWISE);

const OP: &str = "classwise masked gather (cuda)";

/// The op over `(images [B, C, H, W], rows [N] u32, vis [N, H, W] u8)` → `[N, C, H, W]`; no gradient.
struct MaskedGather;

fn run<T: CuFloat>(
    (x, lx): (&CudaStorage, &Layout),
    (r, lr): (&CudaStorage, &Layout),
    (v, lv): (&CudaStorage, &Layout),
) -> candle_core::Result<CudaStorage> {
    let dev = &x.device;
    let (_, c, h, w) = lx.shape().dims4()?;
    let n = lr.shape().elem_count();
    let (xv, rv, vv) = (view::<T>(OP, x, lx)?, view::<u32>(OP, r, lr)?, view::<u8>(OP, v, lv)?);
    let total = n * c * h * w;
    let mut out = alloc::<T>(dev, total)?;
    let f = func(dev, CLASSWISE, &kname::<T>("cw_masked_gather"))?;
    let stream = dev.cuda_stream();
    let (n32, c32, hw) = (n as u32, c as u32, (h * w) as u64);
    let mut b = stream.launch_builder(&f);
    b.arg(&xv).arg(&rv).arg(&vv).arg(&mut out).arg(&n32).arg(&c32).arg(&hw);
    unsafe { b.launch(grid(total)) }.map_err(cu_err)?;
    Ok(CudaStorage::wrap_cuda_slice(out, dev.clone()))
}

impl CustomOp3 for MaskedGather {
    fn name(&self) -> &'static str {
        "classwise-masked-gather"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!("{OP}: CPU tensors take the Candle path")
    }

    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
        s3: &CudaStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let (_, c, h, w) = l1.shape().dims4()?;
        let n = l2.shape().elem_count();
        if l3.dims() != [n, h, w] || s2.dtype() != DType::U32 || s3.dtype() != DType::U8 {
            candle_core::bail!("{OP}: rows {:?} / vis {:?} vs images {:?}", l2.dims(), l3.dims(), l1.dims());
        }
        let out = match s1.dtype() {
            DType::F32 => run::<f32>((s1, l1), (s2, l2), (s3, l3))?,
            DType::F64 => run::<f64>((s1, l1), (s2, l2), (s3, l3))?,
            DType::BF16 => run::<bf16>((s1, l1), (s2, l2), (s3, l3))?,
            dt => candle_core::bail!("{OP}: dtype {dt:?}"),
        };
        Ok((out, Shape::from((n, c, h, w))))
    }
}

/// `X̃` for CUDA images (`None` elsewhere: the caller takes the Candle path).
pub fn masked_gather(images: &Tensor, rows: &Tensor, vis: &Tensor) -> core_seg::Result<Option<Tensor>> {
    if !images.device().is_cuda() {
        return Ok(None);
    }
    let x = images.detach().contiguous()?;
    Ok(Some(x.apply_op3_no_bwd(&rows.contiguous()?, &vis.contiguous()?, &MaskedGather)?))
}
