//! Depthwise convolution (`groups = Cin = Cout`) on any device. Candle runs a grouped convolution as one
//! convolution per group (hundreds of launches per MobileNetV2 layer on CUDA), so CUDA tensors go to direct
//! kernels instead (`cuda/depthwise.cu`): the forward `y[n,c] = Σ_{a,b} w[c,a,b] · x[n,c, oy·s − p + a·d,
//! ox·s − p + b·d]`, its adjoint gathered per input pixel, and `dw[c,a,b] = Σ_{n,oy,ox} dy · x` reduced per
//! (channel, tap). CPU tensors take [`super::conv2d`], whose depthwise path is the polyphase CPU kernel.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

use super::im2col::Geom;
use super::ConvParams;

const OP: &str = "kernels::depthwise_conv2d";

/// Whether `x [N, Cin, ..]` convolved with `w [Cout, Cin/groups, kh, kw]` under `cfg` is depthwise.
pub fn is_depthwise(x: &Tensor, w: &Tensor, cfg: ConvParams) -> Result<bool> {
    let (_, cin, _, _) = x.dims4()?;
    let (cout, cin_g, _, _) = w.dims4()?;
    Ok(cfg.groups > 1 && cfg.groups == cin && cout == cin && cin_g == 1)
}

/// Differentiable depthwise convolution of `x [N, C, H, W]` with `w [C, 1, kh, kw]` (`cfg.groups == C`).
pub fn depthwise_conv2d(x: &Tensor, w: &Tensor, cfg: ConvParams) -> Result<Tensor> {
    if !is_depthwise(x, w, cfg)? {
        candle_core::bail!("{OP}: x {:?}, w {:?} with groups {} is not depthwise", x.dims(), w.dims(), cfg.groups);
    }
    if x.device().is_cpu() {
        return if super::is_supported(x) {
            super::conv2d(x, w, cfg)
        } else {
            x.conv2d(w, cfg.padding, cfg.stride, cfg.dilation, cfg.groups)
        };
    }
    Geom::new(OP, x.dims4()?, w.dims4()?, cfg)?;
    x.contiguous()?.apply_op2(&w.contiguous()?, DepthwiseOp { cfg })
}

struct DepthwiseOp {
    cfg: ConvParams,
}

/// One gradient pass on device storages (not differentiable).
struct GradOp {
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    g: Geom,
    input_grad: bool,
}

fn device_only<T>() -> Result<T> {
    candle_core::bail!("{OP}: the op runs on CUDA tensors (CPU tensors take kernels::conv2d)")
}

impl CustomOp2 for DepthwiseOp {
    fn name(&self) -> &'static str {
        "depthwise-conv2d"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        device_only()
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &candle_core::CudaStorage,
        lx: &Layout,
        w: &candle_core::CudaStorage,
        lw: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        use super::cuda::depthwise::{run, Pass};
        let g = Geom::new(OP, lx.shape().dims4()?, lw.shape().dims4()?, self.cfg)?;
        Ok((run(&g, Pass::Forward, (x, lx), (w, lw))?, Shape::from((g.n, g.cout, g.oh, g.ow))))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = Geom::new(OP, x.dims4()?, w.dims4()?, self.cfg)?;
        let dy = dy.contiguous()?;
        let dx = if x.track_op() { Some(dy.apply_op2_no_bwd(w, &GradOp { g, input_grad: true })?) } else { None };
        let dw = if w.track_op() { Some(x.apply_op2_no_bwd(&dy, &GradOp { g, input_grad: false })?) } else { None };
        Ok((dx, dw))
    }
}

impl CustomOp2 for GradOp {
    fn name(&self) -> &'static str {
        if self.input_grad {
            "depthwise-conv2d-grad-input"
        } else {
            "depthwise-conv2d-grad-weight"
        }
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        device_only()
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        a: &candle_core::CudaStorage,
        la: &Layout,
        b: &candle_core::CudaStorage,
        lb: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        use super::cuda::depthwise::{run, Pass};
        let g = &self.g;
        let dy_dims = [g.n, g.cout, g.oh, g.ow];
        let (pass, dy, shape) = if self.input_grad {
            (Pass::GradInput, la, Shape::from((g.n, g.cin, g.h, g.w)))
        } else {
            (Pass::GradWeight, lb, Shape::from((g.cout, 1, g.kh, g.kw)))
        };
        if dy.dims() != dy_dims {
            candle_core::bail!("{OP}: output gradient {:?} does not match the output {dy_dims:?}", dy.dims());
        }
        Ok((run(g, pass, (a, la), (b, lb))?, shape))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn cpu_tensors_take_the_cpu_kernel_and_non_depthwise_is_refused() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f64, 1.0, (2, 5, 9, 7), &dev)?;
        let w = Tensor::randn(0f64, 1.0, (5, 1, 3, 3), &dev)?;
        let cfg = ConvParams { stride: 2, padding: 2, dilation: 2, groups: 5 };
        let ours = depthwise_conv2d(&x, &w, cfg)?;
        let candle = x.conv2d(&w, 2, 2, 2, 5)?;
        let diff = (ours - candle)?.abs()?.max_all()?.to_scalar::<f64>()?;
        assert!(diff < 1e-12, "depthwise on the CPU differs from Candle's grouped conv by {diff}");
        let dense = Tensor::zeros((5, 5, 3, 3), DType::F64, &dev)?;
        assert!(depthwise_conv2d(&x, &dense, ConvParams { groups: 1, ..cfg }).is_err());
        Ok(())
    }
}
