//! 2-D convolution as Candle custom ops: im2col + GEMM forward, GEMM + col2im input gradient,
//! im2col + GEMM weight gradient.
//!
//! Per image `n` and group `g` (`K = Cin_g·kh·kw`, `P = oh·ow`):
//! - forward: `y[n,g] [Cout_g, P] = W_g [Cout_g, K] · cols(x[n,g]) [K, P]`;
//! - input gradient: `dx[n,g] = col2im(W_gᵀ [K, Cout_g] · dy[n,g] [Cout_g, P])`;
//! - weight gradient: `dW_g [Cout_g, K] = Σ_n dy[n,g] [Cout_g, P] · cols(x[n,g])ᵀ [P, K]`.
//!
//! 1×1 stride-1 unpadded convs use `x` itself as `cols`. Work is split over the batch with rayon (one
//! single-threaded GEMM per image and thread-local im2col scratch) when the batch divides evenly over the
//! threads, otherwise each GEMM is parallelised internally.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::conv_batched as batched;
use super::gemm_glue::{matmul, Parallelism, View};
use super::im2col::{col2im, im2col, Geom};
use super::{contiguous_slice, num_threads, require_cpu, unsupported_dtype, Float};

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
        Self {
            stride: 1,
            padding: 0,
            dilation: 1,
            groups: 1,
        }
    }
}

impl From<crate::nn::ConvConfig> for ConvParams {
    fn from(c: crate::nn::ConvConfig) -> Self {
        Self {
            stride: c.stride,
            padding: c.padding,
            dilation: c.dilation,
            groups: c.groups,
        }
    }
}

/// Differentiable 2-D convolution of `x [N, Cin, H, W]` with `w [Cout, Cin/groups, kh, kw]` (no bias),
/// returning `[N, Cout, oh, ow]` with `oh = ⌊(H + 2p − d(kh − 1) − 1)/s⌋ + 1`. CPU only, f32/f64.
pub fn conv2d(x: &Tensor, w: &Tensor, cfg: ConvParams) -> Result<Tensor> {
    require_cpu("kernels::conv2d", x)?;
    require_cpu("kernels::conv2d", w)?;
    Geom::new("kernels::conv2d", x.dims4()?, w.dims4()?, cfg)?;
    x.contiguous()?
        .apply_op2(&w.contiguous()?, Conv2dOp { cfg })
}

/// Gradient of [`conv2d`] with respect to its input, for output gradient `dy [N, Cout, oh, ow]`, weight `w`
/// and input spatial size `(h, w)`. Not itself differentiable.
pub fn conv2d_grad_input(
    dy: &Tensor,
    w: &Tensor,
    input_hw: (usize, usize),
    cfg: ConvParams,
) -> Result<Tensor> {
    require_cpu("kernels::conv2d_grad_input", dy)?;
    dy.contiguous()?.apply_op2_no_bwd(
        &w.contiguous()?,
        &GradInputOp {
            cfg,
            h: input_hw.0,
            w: input_hw.1,
        },
    )
}

/// Gradient of [`conv2d`] with respect to its weight of spatial size `(kh, kw)`, for input `x` and
/// output gradient `dy`. Not itself differentiable.
pub fn conv2d_grad_weight(
    x: &Tensor,
    dy: &Tensor,
    kernel_hw: (usize, usize),
    cfg: ConvParams,
) -> Result<Tensor> {
    require_cpu("kernels::conv2d_grad_weight", x)?;
    x.contiguous()?.apply_op2_no_bwd(
        &dy.contiguous()?,
        &GradWeightOp {
            cfg,
            kh: kernel_hw.0,
            kw: kernel_hw.1,
        },
    )
}

/// Checks that `dy` has the output shape `g` predicts.
fn check_dy(op: &str, g: &Geom, dy: &Layout) -> Result<()> {
    let want = [g.n, g.cout, g.oh, g.ow];
    if dy.dims() != want {
        candle_core::bail!(
            "{op}: output gradient {:?} does not match the conv output {want:?}",
            dy.dims()
        );
    }
    Ok(())
}

/// Whether to split over the batch (single-threaded GEMMs) rather than inside each GEMM.
fn batch_parallel(n: usize, nt: usize) -> bool {
    nt > 1 && n > 1 && (n.is_multiple_of(nt) || n >= 2 * nt)
}

struct Conv2dOp {
    cfg: ConvParams,
}

impl CustomOp2 for Conv2dOp {
    fn name(&self) -> &'static str {
        "kernels-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geom::new(
            "kernels::conv2d",
            l1.shape().dims4()?,
            l2.shape().dims4()?,
            self.cfg,
        )?;
        let out = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => CpuStorage::F32(forward::<f32>(
                &g,
                contiguous_slice("kernels::conv2d", s1, l1)?,
                contiguous_slice("kernels::conv2d", s2, l2)?,
            )),
            (CpuStorage::F64(_), CpuStorage::F64(_)) => CpuStorage::F64(forward::<f64>(
                &g,
                contiguous_slice("kernels::conv2d", s1, l1)?,
                contiguous_slice("kernels::conv2d", s2, l2)?,
            )),
            _ => return unsupported_dtype("kernels::conv2d", s1),
        };
        Ok((out, Shape::from((g.n, g.cout, g.oh, g.ow))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (_, _, h, wd) = x.dims4()?;
        let (_, _, kh, kw) = w.dims4()?;
        let dy = dy.contiguous()?;
        let dx = conv2d_grad_input(&dy, w, (h, wd), self.cfg)?;
        let dw = conv2d_grad_weight(x, &dy, (kh, kw), self.cfg)?;
        Ok((Some(dx), Some(dw)))
    }
}

/// Forward of one image: `out_img [Cout, P]` from `x_img [Cin, H, W]`.
fn forward_image<T: Float>(g: &Geom, x: &[T], w: &[T], out: &mut [T], par: Parallelism) {
    let (cin_g, cout_g, kg, p, hw) = (g.cin_g(), g.cout_g(), g.kg(), g.p(), g.h * g.w);
    for grp in 0..g.groups {
        let xg = &x[grp * cin_g * hw..(grp + 1) * cin_g * hw];
        let wg = View::rm(&w[grp * cout_g * kg..(grp + 1) * cout_g * kg], kg);
        let og = &mut out[grp * cout_g * p..(grp + 1) * cout_g * p];
        if g.is_pointwise() {
            matmul(cout_g, p, kg, og, p, false, wg, View::rm(xg, p), par);
        } else {
            T::with_scratch(kg * p, |cols| {
                im2col(g, xg, cols);
                matmul(cout_g, p, kg, og, p, false, wg, View::rm(cols, p), par);
            });
        }
    }
}

fn forward<T: Float>(g: &Geom, x: &[T], w: &[T]) -> Vec<T> {
    let mut out = vec![T::zero(); g.n * g.out_len()];
    let nt = num_threads();
    if batched::use_batched(g) {
        batched::forward(g, x, w, &mut out, nt);
    } else if batch_parallel(g.n, nt) {
        out.par_chunks_mut(g.out_len())
            .zip(x.par_chunks(g.in_len()))
            .for_each(|(o, xi)| forward_image(g, xi, w, o, Parallelism::None));
    } else {
        let par = if nt > 1 {
            Parallelism::Rayon(nt)
        } else {
            Parallelism::None
        };
        for (o, xi) in out.chunks_mut(g.out_len()).zip(x.chunks(g.in_len())) {
            forward_image(g, xi, w, o, par);
        }
    }
    out
}

/// `dx` of one image (`dx_img` zero on entry) from `dy_img [Cout, P]`.
fn grad_input_image<T: Float>(g: &Geom, dy: &[T], w: &[T], dx: &mut [T], par: Parallelism) {
    let (cin_g, cout_g, kg, p, hw) = (g.cin_g(), g.cout_g(), g.kg(), g.p(), g.h * g.w);
    for grp in 0..g.groups {
        let dyg = View::rm(&dy[grp * cout_g * p..(grp + 1) * cout_g * p], p);
        let wgt = View::rm_t(&w[grp * cout_g * kg..(grp + 1) * cout_g * kg], kg);
        let dxg = &mut dx[grp * cin_g * hw..(grp + 1) * cin_g * hw];
        if g.is_pointwise() {
            matmul(kg, p, cout_g, dxg, p, false, wgt, dyg, par);
        } else {
            T::with_scratch(kg * p, |dcols| {
                matmul(kg, p, cout_g, dcols, p, false, wgt, dyg, par);
                col2im(g, dcols, dxg);
            });
        }
    }
}

fn grad_input<T: Float>(g: &Geom, dy: &[T], w: &[T]) -> Vec<T> {
    let mut dx = vec![T::zero(); g.n * g.in_len()];
    let nt = num_threads();
    if batched::use_batched(g) {
        batched::grad_input(g, dy, w, &mut dx, nt);
    } else if batch_parallel(g.n, nt) {
        dx.par_chunks_mut(g.in_len())
            .zip(dy.par_chunks(g.out_len()))
            .for_each(|(d, dyi)| grad_input_image(g, dyi, w, d, Parallelism::None));
    } else {
        let par = if nt > 1 {
            Parallelism::Rayon(nt)
        } else {
            Parallelism::None
        };
        for (d, dyi) in dx.chunks_mut(g.in_len()).zip(dy.chunks(g.out_len())) {
            grad_input_image(g, dyi, w, d, par);
        }
    }
    dx
}

/// Accumulates `dW += dy_img · cols(x_img)ᵀ` for one image.
fn grad_weight_image<T: Float>(g: &Geom, x: &[T], dy: &[T], dw: &mut [T], par: Parallelism) {
    let (cin_g, cout_g, kg, p, hw) = (g.cin_g(), g.cout_g(), g.kg(), g.p(), g.h * g.w);
    for grp in 0..g.groups {
        let xg = &x[grp * cin_g * hw..(grp + 1) * cin_g * hw];
        let dyg = View::rm(&dy[grp * cout_g * p..(grp + 1) * cout_g * p], p);
        let dwg = &mut dw[grp * cout_g * kg..(grp + 1) * cout_g * kg];
        if g.is_pointwise() {
            matmul(cout_g, kg, p, dwg, kg, true, dyg, View::rm_t(xg, p), par);
        } else {
            T::with_scratch(kg * p, |cols| {
                im2col(g, xg, cols);
                matmul(cout_g, kg, p, dwg, kg, true, dyg, View::rm_t(cols, p), par);
            });
        }
    }
}

fn grad_weight<T: Float>(g: &Geom, x: &[T], dy: &[T]) -> Vec<T> {
    let wlen = g.cout * g.kg();
    let nt = num_threads();
    if batched::use_batched(g) {
        let mut dw = vec![T::zero(); wlen];
        batched::grad_weight(g, x, dy, &mut dw, nt);
        dw
    } else if batch_parallel(g.n, nt) {
        // One partial dW per chunk of images, summed at the end.
        let chunk = g.n.div_ceil(nt);
        let partials: Vec<Vec<T>> = (0..g.n.div_ceil(chunk))
            .into_par_iter()
            .map(|c| {
                let mut dw = vec![T::zero(); wlen];
                for i in c * chunk..((c + 1) * chunk).min(g.n) {
                    let xi = &x[i * g.in_len()..(i + 1) * g.in_len()];
                    let dyi = &dy[i * g.out_len()..(i + 1) * g.out_len()];
                    grad_weight_image(g, xi, dyi, &mut dw, Parallelism::None);
                }
                dw
            })
            .collect();
        let mut it = partials.into_iter();
        let mut dw = it.next().unwrap_or_else(|| vec![T::zero(); wlen]);
        for p in it {
            dw.iter_mut().zip(&p).for_each(|(a, b)| *a += *b);
        }
        dw
    } else {
        let par = if nt > 1 {
            Parallelism::Rayon(nt)
        } else {
            Parallelism::None
        };
        let mut dw = vec![T::zero(); wlen];
        for (xi, dyi) in x.chunks(g.in_len()).zip(dy.chunks(g.out_len())) {
            grad_weight_image(g, xi, dyi, &mut dw, par);
        }
        dw
    }
}

/// `dx = conv2dᵀ(dy, w)`: arguments (dy, w).
struct GradInputOp {
    cfg: ConvParams,
    h: usize,
    w: usize,
}

impl CustomOp2 for GradInputOp {
    fn name(&self) -> &'static str {
        "kernels-conv2d-grad-input"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        const OP: &str = "kernels::conv2d_grad_input";
        let (n, _, _, _) = l1.shape().dims4()?;
        let wt = l2.shape().dims4()?;
        let g = Geom::new(
            OP,
            (n, wt.1 * self.cfg.groups, self.h, self.w),
            wt,
            self.cfg,
        )?;
        check_dy(OP, &g, l1)?;
        let out = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => CpuStorage::F32(grad_input::<f32>(
                &g,
                contiguous_slice(OP, s1, l1)?,
                contiguous_slice(OP, s2, l2)?,
            )),
            (CpuStorage::F64(_), CpuStorage::F64(_)) => CpuStorage::F64(grad_input::<f64>(
                &g,
                contiguous_slice(OP, s1, l1)?,
                contiguous_slice(OP, s2, l2)?,
            )),
            _ => return unsupported_dtype(OP, s1),
        };
        Ok((out, Shape::from((g.n, g.cin, g.h, g.w))))
    }
}

/// `dW = Σ_n dy · colsᵀ`: arguments (x, dy).
struct GradWeightOp {
    cfg: ConvParams,
    kh: usize,
    kw: usize,
}

impl CustomOp2 for GradWeightOp {
    fn name(&self) -> &'static str {
        "kernels-conv2d-grad-weight"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        const OP: &str = "kernels::conv2d_grad_weight";
        let xd = l1.shape().dims4()?;
        let (_, cout, _, _) = l2.shape().dims4()?;
        let groups = self.cfg.groups.max(1);
        let wt = (cout, xd.1 / groups, self.kh, self.kw);
        let g = Geom::new(OP, xd, wt, self.cfg)?;
        check_dy(OP, &g, l2)?;
        let out = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => CpuStorage::F32(grad_weight::<f32>(
                &g,
                contiguous_slice(OP, s1, l1)?,
                contiguous_slice(OP, s2, l2)?,
            )),
            (CpuStorage::F64(_), CpuStorage::F64(_)) => CpuStorage::F64(grad_weight::<f64>(
                &g,
                contiguous_slice(OP, s1, l1)?,
                contiguous_slice(OP, s2, l2)?,
            )),
            _ => return unsupported_dtype(OP, s1),
        };
        Ok((out, Shape::from(wt)))
    }
}
