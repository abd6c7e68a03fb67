//! `kernels::conv2d_device` (the convolution used on CUDA: Candle forward, backward without
//! `conv_transpose2d`) against the CPU im2col kernel in f64: values, input and weight gradients, including
//! stride 2 on inputs whose H and W differ in parity (where Candle's own backward fails), dilation and 7×7
//! stems. Runs on the CPU, so CI checks the formulas the GPU path uses.

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use core_seg::kernels::{conv2d, conv2d_device, ConvParams};

fn rand(dims: &[usize], seed: u64) -> Result<Tensor> {
    let n: usize = dims.iter().product();
    let v = core_seg::testing::uniform_values(n, seed, -1.0, 1.0);
    Ok(Tensor::from_vec(v, dims, &Device::Cpu)?)
}

fn diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    assert_eq!(a.dims(), b.dims());
    Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>()?)
}

type ConvFn = fn(&Tensor, &Tensor, ConvParams) -> candle_core::Result<Tensor>;

fn run(f: ConvFn, x: &Tensor, w: &Tensor, p: ConvParams, r_seed: u64) -> Result<(Tensor, Tensor, Tensor)> {
    let (xv, wv) = (Var::from_tensor(x)?, Var::from_tensor(w)?);
    let y = f(xv.as_tensor(), wv.as_tensor(), p)?;
    let r = rand(y.dims(), r_seed)?.to_dtype(y.dtype())?;
    let g = (&y * &r)?.sum_all()?.backward()?;
    Ok((y, g.get(xv.as_tensor()).unwrap().clone(), g.get(wv.as_tensor()).unwrap().clone()))
}

#[test]
fn conv2d_device_matches_cpu_kernel() -> Result<()> {
    let p = |stride, padding, dilation| ConvParams { stride, padding, dilation, groups: 1 };
    // (n, cin, h, w, cout, kh, kw, params)
    let cases = [
        (2, 3, 8, 8, 4, 3, 3, p(1, 1, 1)),
        (2, 3, 8, 7, 4, 3, 3, p(2, 1, 1)),
        (2, 3, 7, 8, 4, 3, 3, p(2, 1, 1)),
        (1, 4, 9, 6, 5, 1, 1, p(2, 0, 1)),
        (2, 3, 13, 10, 4, 7, 7, p(2, 3, 1)),
        (2, 4, 12, 12, 3, 3, 3, p(1, 12, 12)),
        (1, 3, 9, 12, 2, 3, 3, p(1, 2, 2)),
        (2, 2, 11, 8, 3, 3, 3, p(2, 2, 2)),
        (3, 5, 6, 7, 3, 1, 1, p(1, 0, 1)),
        (1, 2, 5, 9, 3, 3, 1, p(1, 0, 1)),
    ];
    for (i, &(n, cin, h, w, cout, kh, kw, prm)) in cases.iter().enumerate() {
        let x = rand(&[n, cin, h, w], 10 + i as u64)?;
        let wt = rand(&[cout, cin, kh, kw], 20 + i as u64)?;
        let (y0, dx0, dw0) = run(conv2d, &x, &wt, prm, 30 + i as u64)?;
        let (y1, dx1, dw1) = run(conv2d_device, &x, &wt, prm, 30 + i as u64)?;
        let (a, b, c) = (diff(&y1, &y0)?, diff(&dx1, &dx0)?, diff(&dw1, &dw0)?);
        assert!(a < 1e-12 && b < 1e-12 && c < 1e-12, "case {i} {prm:?} {h}x{w} k{kh}x{kw}: {a:e} {b:e} {c:e}");
    }
    Ok(())
}

/// f32 too, and the nn layer takes this path only on CUDA (CPU keeps the im2col kernel).
#[test]
fn conv2d_device_f32() -> Result<()> {
    let prm = ConvParams { stride: 2, padding: 1, dilation: 1, groups: 1 };
    let x = rand(&[2, 3, 9, 8], 1)?.to_dtype(DType::F32)?;
    let w = rand(&[4, 3, 3, 3], 2)?.to_dtype(DType::F32)?;
    let (y0, dx0, dw0) = run(conv2d, &x, &w, prm, 3)?;
    let (y1, dx1, dw1) = run(conv2d_device, &x, &w, prm, 3)?;
    for (a, b) in [(&y1, &y0), (&dx1, &dx0), (&dw1, &dw0)] {
        let d = diff(&a.to_dtype(DType::F64)?, &b.to_dtype(DType::F64)?)?;
        assert!(d < 1e-4, "{d:e}");
    }
    Ok(())
}
