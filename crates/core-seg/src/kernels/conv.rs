//! 2-D convolution as Candle custom ops: im2col + GEMM forward, GEMM + col2im input gradient,
//! im2col + GEMM weight gradient.
//!
//! Per image `n` and group `g` (`K = Cin_g·kh·kw`, `P = oh·ow`):
//! - forward: `y[n,g] [Cout_g, P] = W_g [Cout_g, K] · cols(x[n,g]) [K, P]`;
//! - input gradient: `dx[n,g] = col2im(W_gᵀ [K, Cout_g] · dy[n,g] [Cout_g, P])`, or, for the small stride-1
//!   layers where it pays, the forward convolution of `dy` with the flipped, transposed weight;
//! - weight gradient: `dW_g [Cout_g, K] = Σ_n dy[n,g] [Cout_g, P] · cols(x[n,g])ᵀ [P, K]`.
//!
//! 1×1 stride-1 unpadded convs use `x` itself as `cols`. `K` only spans the kernel taps that ever touch the
//! image (dilation 12/18 on an 8² map leaves the centre tap: a 1×1-sized GEMM), and where most taps still
//! read padding the map is cut into regions with their own live taps ([`super::conv_regions`]). Small maps
//! fold the batch into the GEMM columns ([`super::conv_batched`]); larger ones run one GEMM per image, im2col/col2im in
//! ~256-pixel bands, parallel over the batch ([`super::conv_cpu`]). All GEMMs are `gemm::gemm` calls on
//! the tensors' own buffers (transposes as strides, no copies); backward skips the gradient of an input
//! that no variable feeds.

use super::conv_cpu::{backward, forward, grad_input, grad_weight, has_fused_backward, ConvAlgo};
use super::im2col::Geom;
use super::{contiguous_slice, require_cpu, unsupported_dtype};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

/// Convolution hyper-parameters (same on both spatial axes), as in PyTorch `nn.Conv2d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvParams {
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    pub groups: usize,
}

impl Default for ConvParams {
    fn default() -> Self {
        Self { stride: 1, padding: 0, dilation: 1, groups: 1 }
    }
}

impl From<crate::nn::ConvConfig> for ConvParams {
    fn from(c: crate::nn::ConvConfig) -> Self {
        Self { stride: c.stride, padding: c.padding, dilation: c.dilation, groups: c.groups }
    }
}

/// Differentiable 2-D convolution of `x [N, Cin, H, W]` with `w [Cout, Cin/groups, kh, kw]` (no bias),
/// returning `[N, Cout, oh, ow]` with `oh = ⌊(H + 2p − d(kh − 1) − 1)/s⌋ + 1`. CPU only, f32/f64.
pub fn conv2d(x: &Tensor, w: &Tensor, cfg: ConvParams) -> Result<Tensor> {
    conv2d_with(x, w, cfg, ConvAlgo::Auto)
}

/// [`conv2d`] with an explicit algorithm (forward and backward); `Winograd` falls back to `Direct` where it
/// does not apply (see [`ConvAlgo`]).
pub fn conv2d_with(x: &Tensor, w: &Tensor, cfg: ConvParams, algo: ConvAlgo) -> Result<Tensor> {
    require_cpu("kernels::conv2d", x)?;
    require_cpu("kernels::conv2d", w)?;
    if x.dtype() != w.dtype() {
        candle_core::bail!(
            "kernels::conv2d: input {:?} {:?} and weight {:?} {:?} differ in dtype",
            x.dims(),
            x.dtype(),
            w.dims(),
            w.dtype()
        );
    }
    Geom::new("kernels::conv2d", x.dims4()?, w.dims4()?, cfg)?;
    x.contiguous()?.apply_op2(&w.contiguous()?, Conv2dOp { cfg, algo })
}

/// Gradient of [`conv2d`] with respect to its input, for output gradient `dy [N, Cout, oh, ow]`, weight `w`
/// and input spatial size `(h, w)`. Not itself differentiable.
pub fn conv2d_grad_input(
    dy: &Tensor,
    w: &Tensor,
    input_hw: (usize, usize),
    cfg: ConvParams,
    algo: ConvAlgo,
) -> Result<Tensor> {
    require_cpu("kernels::conv2d_grad_input", dy)?;
    dy.contiguous()?.apply_op2_no_bwd(&w.contiguous()?, &GradInputOp { cfg, algo, h: input_hw.0, w: input_hw.1 })
}

/// Gradient of [`conv2d`] with respect to its weight of spatial size `(kh, kw)`, for input `x` and
/// output gradient `dy`. Not itself differentiable.
pub fn conv2d_grad_weight(
    x: &Tensor,
    dy: &Tensor,
    kernel_hw: (usize, usize),
    cfg: ConvParams,
    algo: ConvAlgo,
) -> Result<Tensor> {
    require_cpu("kernels::conv2d_grad_weight", x)?;
    let op = GradWeightOp { cfg, algo, kh: kernel_hw.0, kw: kernel_hw.1 };
    x.contiguous()?.apply_op2_no_bwd(&dy.contiguous()?, &op)
}

/// Runs the f32 or the f64 instance of a kernel on a pair of contiguous storages of that dtype.
fn run_f32_f64(
    op: &str,
    (s1, l1): (&CpuStorage, &Layout),
    (s2, l2): (&CpuStorage, &Layout),
    f32_kernel: impl FnOnce(&[f32], &[f32]) -> Vec<f32>,
    f64_kernel: impl FnOnce(&[f64], &[f64]) -> Vec<f64>,
) -> Result<CpuStorage> {
    Ok(match (s1, s2) {
        (CpuStorage::F32(_), CpuStorage::F32(_)) => {
            CpuStorage::F32(f32_kernel(contiguous_slice(op, s1, l1)?, contiguous_slice(op, s2, l2)?))
        }
        (CpuStorage::F64(_), CpuStorage::F64(_)) => {
            CpuStorage::F64(f64_kernel(contiguous_slice(op, s1, l1)?, contiguous_slice(op, s2, l2)?))
        }
        _ => return unsupported_dtype(op, s1),
    })
}

/// Checks that `dy` has the output shape `g` predicts.
fn check_dy(op: &str, g: &Geom, dy: &Layout) -> Result<()> {
    let want = [g.n, g.cout, g.oh, g.ow];
    if dy.dims() != want {
        candle_core::bail!("{op}: output gradient {:?} does not match the conv output {want:?}", dy.dims());
    }
    Ok(())
}

struct Conv2dOp {
    cfg: ConvParams,
    algo: ConvAlgo,
}

impl CustomOp2 for Conv2dOp {
    fn name(&self) -> &'static str {
        "kernels-conv2d"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = Geom::new("kernels::conv2d", l1.shape().dims4()?, l2.shape().dims4()?, self.cfg)?;
        let out = run_f32_f64(
            "kernels::conv2d",
            (s1, l1),
            (s2, l2),
            |a, b| forward(&g, self.algo, a, b),
            |a, b| forward(&g, self.algo, a, b),
        )?;
        Ok((out, Shape::from((g.n, g.cout, g.oh, g.ow))))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (_, _, h, wd) = x.dims4()?;
        let (_, _, kh, kw) = w.dims4()?;
        let dy = dy.contiguous()?;
        if x.track_op() && w.track_op() {
            let g = Geom::new("kernels::conv2d", x.dims4()?, w.dims4()?, self.cfg)?;
            if has_fused_backward(&g, self.algo) {
                let flat = x.contiguous()?.apply_op3_no_bwd(&w.contiguous()?, &dy, &BackwardOp { cfg: self.cfg })?;
                let (nx, nw) = (x.elem_count(), w.elem_count());
                let dx = flat.narrow(0, 0, nx)?.reshape(x.shape())?;
                return Ok((Some(dx), Some(flat.narrow(0, nx, nw)?.reshape(w.shape())?)));
            }
        }
        // Skip gradients nobody can use: an input image or a frozen weight that no variable feeds.
        let dx = if x.track_op() { Some(conv2d_grad_input(&dy, w, (h, wd), self.cfg, self.algo)?) } else { None };
        let dw = if w.track_op() { Some(conv2d_grad_weight(x, &dy, (kh, kw), self.cfg, self.algo)?) } else { None };
        Ok((dx, dw))
    }
}

/// `dx = conv2dᵀ(dy, w)`: arguments (dy, w).
struct GradInputOp {
    cfg: ConvParams,
    algo: ConvAlgo,
    h: usize,
    w: usize,
}

impl CustomOp2 for GradInputOp {
    fn name(&self) -> &'static str {
        "kernels-conv2d-grad-input"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        const OP: &str = "kernels::conv2d_grad_input";
        let (n, _, _, _) = l1.shape().dims4()?;
        let wt = l2.shape().dims4()?;
        let g = Geom::new(OP, (n, wt.1 * self.cfg.groups, self.h, self.w), wt, self.cfg)?;
        check_dy(OP, &g, l1)?;
        let out = run_f32_f64(
            OP,
            (s1, l1),
            (s2, l2),
            |a, b| grad_input(&g, self.algo, a, b),
            |a, b| grad_input(&g, self.algo, a, b),
        )?;
        Ok((out, Shape::from((g.n, g.cin, g.h, g.w))))
    }
}

/// `dW = Σ_n dy · colsᵀ`: arguments (x, dy).
struct GradWeightOp {
    cfg: ConvParams,
    algo: ConvAlgo,
    kh: usize,
    kw: usize,
}

impl CustomOp2 for GradWeightOp {
    fn name(&self) -> &'static str {
        "kernels-conv2d-grad-weight"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        const OP: &str = "kernels::conv2d_grad_weight";
        let xd = l1.shape().dims4()?;
        let (_, cout, _, _) = l2.shape().dims4()?;
        let groups = self.cfg.groups.max(1);
        let wt = (cout, xd.1 / groups, self.kh, self.kw);
        let g = Geom::new(OP, xd, wt, self.cfg)?;
        check_dy(OP, &g, l2)?;
        let out = run_f32_f64(
            OP,
            (s1, l1),
            (s2, l2),
            |a, b| grad_weight(&g, self.algo, a, b),
            |a, b| grad_weight(&g, self.algo, a, b),
        )?;
        Ok((out, Shape::from(wt)))
    }
}

/// Both gradients in one pass (where [`has_fused_backward`]): arguments (x, w, dy), output `[dx, dW]` flat.
struct BackwardOp {
    cfg: ConvParams,
}

impl CustomOp3 for BackwardOp {
    fn name(&self) -> &'static str {
        "kernels-conv2d-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        const OP: &str = "kernels::conv2d backward";
        let g = Geom::new(OP, l1.shape().dims4()?, l2.shape().dims4()?, self.cfg)?;
        check_dy(OP, &g, l3)?;
        let len = l1.shape().elem_count() + l2.shape().elem_count();
        let out = match (s1, s2, s3) {
            (CpuStorage::F32(_), CpuStorage::F32(_), CpuStorage::F32(_)) => CpuStorage::F32(backward::<f32>(
                &g,
                contiguous_slice(OP, s1, l1)?,
                contiguous_slice(OP, s2, l2)?,
                contiguous_slice(OP, s3, l3)?,
            )),
            (CpuStorage::F64(_), CpuStorage::F64(_), CpuStorage::F64(_)) => CpuStorage::F64(backward::<f64>(
                &g,
                contiguous_slice(OP, s1, l1)?,
                contiguous_slice(OP, s2, l2)?,
                contiguous_slice(OP, s3, l3)?,
            )),
            _ => return unsupported_dtype(OP, s1),
        };
        Ok((out, Shape::from(len)))
    }
}
