//! Convolution off the CPU (CUDA): Candle's forward (im2col + cuBLAS, or cuDNN with the `cudnn` feature) with
//! a backward built from Candle convolutions only — no `conv_transpose2d`, which on CUDA is a direct loop
//! without GEMM (and, on every backend, wrong for stride 2 when H and W differ in parity).
//!
//! For `y = conv(x, W)` with stride `s`, padding `p`, dilation `d`, kernel `kh×kw`, output `oh×ow`:
//! - input gradient: zero-insert `dy` (stride `s`: `dy↑[i·s] = dy[i]`, length `(oh − 1)s + 1`), pad it by
//!   `(kh − 1)d − p` before and `H + p − (oh − 1)s − 1` after (same along W), and correlate with the
//!   flipped, channel-transposed kernel: `dx = conv(dy↑pad, flip(W)ᵀ, stride 1, dilation d)`;
//! - weight gradient: Candle's own formula, `dW = conv(xᵀ, dyᵀ, padding p, stride d, dilation s)ᵀ` cut to
//!   `kh×kw` (an im2col GEMM of the same size as cuDNN's).
//!
//! The forward result is attached to this backward by a custom op that only copies it. Depthwise
//! convolutions go to [`super::depthwise_conv2d`], 1×1 stride-1 ones are a batched matrix product; other grouped
//! convolutions and `p > (k − 1)d` fall back to Candle's convolution.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

use super::ConvParams;

/// Differentiable convolution of `x [N, Cin, H, W]` with `w [Cout, Cin, kh, kw]` (no bias) on any device.
pub fn conv2d_device(x: &Tensor, w: &Tensor, cfg: ConvParams) -> Result<Tensor> {
    let (_, _, kh, kw) = w.dims4()?;
    if super::is_depthwise(x, w, cfg)? {
        return super::depthwise_conv2d(x, w, cfg);
    }
    if (kh, kw, cfg.stride, cfg.padding, cfg.groups) == (1, 1, 1, 0, 1) {
        return pointwise(x, w);
    }
    let reach = |k: usize| (k - 1) * cfg.dilation;
    if cfg.groups != 1 || cfg.padding > reach(kh) || cfg.padding > reach(kw) {
        return x.conv2d(w, cfg.padding, cfg.stride, cfg.dilation, cfg.groups);
    }
    let y = x.detach().conv2d(&w.detach(), cfg.padding, cfg.stride, cfg.dilation, 1)?;
    x.apply_op3(w, &y, AttachConv { cfg })
}

/// A 1×1 convolution as one batched matrix product, `y[n] = W · x[n]` with `x[n]` as `[Cin, H·W]` (no im2col;
/// the backward is the product's own: `dx[n] = Wᵀ · dy[n]`, `dW = Σ_n dy[n] · x[n]ᵀ`).
fn pointwise(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (n, cin, h, wd) = x.dims4()?;
    let cout = w.dim(0)?;
    let y = w.reshape((cout, cin))?.broadcast_matmul(&x.reshape((n, cin, h * wd))?)?;
    y.reshape((n, cout, h, wd))
}

/// Zero insertion along `dim`: `[.., n, ..]` → `[.., (n − 1)s + 1, ..]` with `out[i·s] = t[i]`.
fn dilate(t: &Tensor, dim: usize, s: usize) -> Result<Tensor> {
    if s == 1 {
        return Ok(t.clone());
    }
    let n = t.dim(dim)?;
    let mut zeros_shape = t.dims().to_vec();
    zeros_shape.insert(dim + 1, s - 1);
    let z = Tensor::zeros(zeros_shape, t.dtype(), t.device())?;
    let mut merged = t.dims().to_vec();
    merged[dim] = n * s;
    Tensor::cat(&[&t.unsqueeze(dim + 1)?, &z], dim + 1)?.reshape(merged)?.narrow(dim, 0, (n - 1) * s + 1)
}

/// `flip(W)ᵀ`: `[Cout, Cin, kh, kw]` → `[Cin, Cout, kh, kw]` with both spatial axes reversed.
fn flipped_transposed(w: &Tensor) -> Result<Tensor> {
    let (_, _, kh, kw) = w.dims4()?;
    let rev = |k: usize| Tensor::from_vec((0..k as u32).rev().collect::<Vec<_>>(), k, w.device());
    w.index_select(&rev(kh)?, 2)?.index_select(&rev(kw)?, 3)?.transpose(0, 1)?.contiguous()
}

/// Input gradient of the convolution (see the module docs).
pub fn conv2d_device_grad_input(dy: &Tensor, w: &Tensor, (h, wd): (usize, usize), cfg: ConvParams) -> Result<Tensor> {
    let (_, _, oh, ow) = dy.dims4()?;
    let (_, _, kh, kw) = w.dims4()?;
    let (s, p, d) = (cfg.stride, cfg.padding, cfg.dilation);
    let g = dilate(&dilate(dy, 2, s)?, 3, s)?;
    let pad = |k: usize, size: usize, out: usize| -> Result<(usize, usize)> {
        let before = (k - 1) * d - p;
        match (size + p).checked_sub((out - 1) * s + 1) {
            Some(after) => Ok((before, after)),
            None => candle_core::bail!("conv2d_device backward: output {out} too long for input {size}"),
        }
    };
    let (t, b) = pad(kh, h, oh)?;
    let (l, r) = pad(kw, wd, ow)?;
    let g = g.pad_with_zeros(2, t, b)?.pad_with_zeros(3, l, r)?;
    g.conv2d(&flipped_transposed(w)?, 0, 1, d, 1)
}

/// Weight gradient of the convolution, `[Cout, Cin, kh, kw]`.
pub fn conv2d_device_grad_weight(x: &Tensor, dy: &Tensor, (kh, kw): (usize, usize), cfg: ConvParams) -> Result<Tensor> {
    let g =
        x.transpose(0, 1)?.conv2d(&dy.transpose(0, 1)?, cfg.padding, cfg.dilation, cfg.stride, 1)?.transpose(0, 1)?;
    let (_, _, gh, gw) = g.dims4()?;
    if (gh, gw) == (kh, kw) {
        Ok(g)
    } else {
        g.narrow(2, 0, kh)?.narrow(3, 0, kw)
    }
}

/// `(x, W, y) ↦ y` with the convolution's backward to `x` and `W`.
struct AttachConv {
    cfg: ConvParams,
}

fn check_fresh(l: &Layout) -> Result<()> {
    if !l.is_contiguous() || l.start_offset() != 0 {
        candle_core::bail!("conv2d_device: forward result must be a fresh contiguous tensor");
    }
    Ok(())
}

impl CustomOp3 for AttachConv {
    fn name(&self) -> &'static str {
        "conv2d-device"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        y: &CpuStorage,
        ly: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        check_fresh(ly)?;
        Ok((y.try_clone(ly)?, ly.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
        _: &candle_core::CudaStorage,
        _: &Layout,
        y: &candle_core::CudaStorage,
        ly: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        check_fresh(ly)?;
        Ok((y.try_clone(ly)?, ly.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (x, w, dy) = (x.detach(), w.detach(), dy.detach());
        let (_, _, h, wd) = x.dims4()?;
        let (_, _, kh, kw) = w.dims4()?;
        let dx = conv2d_device_grad_input(&dy, &w, (h, wd), self.cfg)?;
        let dw = conv2d_device_grad_weight(&x, &dy, (kh, kw), self.cfg)?;
        Ok((Some(dx), Some(dw), None))
    }
}
