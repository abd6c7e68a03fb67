//! The CUDA kernels of the custom ops against their CPU kernels (feature `cuda`): forward values and
//! gradients in f64 (≤ 1e-10 relative), f32 (≤ 1e-5) and bf16 (≤ 2e-2, against the CPU in f32).
//!
//! Every test prints a `SKIP` line and passes when no CUDA device can be opened, so `cargo test --features
//! cuda` needs no GPU; on a GPU machine they are the acceptance check of the kernels.
#![cfg(feature = "cuda")]

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use core_seg::kernels;

use core_seg::testing::cuda_device_or_skip as gpu;

/// Deterministic pseudo-random values in [−2, 2).
fn rand(n: usize, seed: u64) -> Vec<f64> {
    core_seg::testing::uniform_values(n, seed, -2.0, 2.0)
}

fn tensor(dims: &[usize], seed: u64, dt: DType, dev: &Device) -> Result<Tensor> {
    let n = dims.iter().product();
    Ok(Tensor::from_vec(rand(n, seed), dims, &Device::Cpu)?.to_dtype(dt)?.to_device(dev)?)
}

/// max |a − b| / max(max |b|, 1), compared in f64 on the CPU.
fn rel_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    assert_eq!(a.dims(), b.dims());
    let a = a.to_device(&Device::Cpu)?.to_dtype(DType::F64)?;
    let b = b.to_device(&Device::Cpu)?.to_dtype(DType::F64)?;
    let d = (&a - &b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>()?;
    let m = b.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>()?;
    Ok(d / m.max(1.0))
}

fn tol(dt: DType) -> f64 {
    match dt {
        DType::F64 => 1e-10,
        DType::F32 => 1e-5,
        _ => 2e-2,
    }
}

/// `(f(x), ∂Σ f(x)·r / ∂x)` on `dev` in `dt`; `x` and `r` come from the CPU f64 tensors.
fn value_and_grad(
    f: &dyn Fn(&Tensor) -> candle_core::Result<Tensor>,
    x: &Tensor,
    r: &Tensor,
    dt: DType,
    dev: &Device,
) -> Result<(Tensor, Tensor)> {
    let v = Var::from_tensor(&x.to_dtype(dt)?.to_device(dev)?)?;
    let y = f(v.as_tensor())?;
    let loss = (&y * r.to_dtype(dt)?.to_device(dev)?)?.sum_all()?;
    let g = loss.backward()?;
    let dx = g.get(v.as_tensor()).cloned().ok_or_else(|| anyhow::anyhow!("no gradient"))?;
    Ok((y, dx))
}

/// Compares `f` on the GPU in f64, f32 and bf16 against the CPU (f64, f32, f32).
fn check_op(name: &str, dev: &Device, x: &Tensor, f: &dyn Fn(&Tensor) -> candle_core::Result<Tensor>) -> Result<()> {
    let y_dims = f(x)?.dims().to_vec();
    let r = tensor(&y_dims, 99, DType::F64, &Device::Cpu)?;
    for dt in [DType::F64, DType::F32, DType::BF16] {
        // bf16: the f32 reference sees the same bf16-rounded input and cotangent as the GPU, so rounding cannot
        // turn a strict maximum into a tie (max pooling would then route the gradient to another pixel).
        let (cpu_dt, xr, rr) = if dt == DType::BF16 {
            let round = |t: &Tensor| t.to_dtype(DType::BF16)?.to_dtype(DType::F64);
            (DType::F32, round(x)?, round(&r)?)
        } else {
            (dt, x.clone(), r.clone())
        };
        let (yc, gc) = value_and_grad(f, &xr, &rr, cpu_dt, &Device::Cpu)?;
        let (yg, gg) = value_and_grad(f, &xr, &rr, dt, dev)?;
        assert!(yg.device().is_cuda(), "{name}: result left the GPU");
        let (dy, dg) = (rel_diff(&yg, &yc)?, rel_diff(&gg, &gc)?);
        eprintln!("{name} {dt:?}: forward {dy:.2e}, gradient {dg:.2e}");
        assert!(dy <= tol(dt), "{name} {dt:?}: forward differs by {dy:e}");
        assert!(dg <= tol(dt), "{name} {dt:?}: gradient differs by {dg:e}");
    }
    Ok(())
}

#[test]
fn resize_bilinear_matches_cpu() -> Result<()> {
    let Some(dev) = gpu("resize_bilinear_matches_cpu") else { return Ok(()) };
    // Up, down, odd sizes, identity along one axis, 1-pixel inputs and outputs; both align modes.
    let cases: [((usize, usize), (usize, usize)); 7] = [
        ((7, 5), (21, 13)),
        ((21, 21), (81, 81)),
        ((81, 81), (21, 21)),
        ((9, 8), (5, 8)),
        ((1, 6), (4, 3)),
        ((6, 4), (1, 1)),
        ((33, 17), (321, 160)),
    ];
    for (i, ((h, w), (oh, ow))) in cases.into_iter().enumerate() {
        for ac in [false, true] {
            let x = tensor(&[2, 3, h, w], i as u64, DType::F64, &Device::Cpu)?;
            let f = |t: &Tensor| kernels::resize_bilinear(t, (oh, ow), ac);
            check_op(&format!("resize {h}x{w}->{oh}x{ow} ac={ac}"), &dev, &x, &f)?;
        }
    }
    Ok(())
}

#[test]
fn max_pool_matches_cpu() -> Result<()> {
    let Some(dev) = gpu("max_pool_matches_cpu") else { return Ok(()) };
    for (i, (h, w)) in [(7, 9), (8, 8), (1, 1), (2, 5), (161, 161)].into_iter().enumerate() {
        let x = tensor(&[2, 3, h, w], 10 + i as u64, DType::F64, &Device::Cpu)?;
        check_op(&format!("max_pool {h}x{w}"), &dev, &x, &|t| kernels::max_pool_3x3_s2_p1(t))?;
    }
    // Ties: the gradient goes to the first maximum in row-major order on both devices.
    let x = Tensor::ones((1, 2, 6, 7), DType::F64, &Device::Cpu)?;
    check_op("max_pool ties", &dev, &x, &|t| kernels::max_pool_3x3_s2_p1(t))?;
    Ok(())
}

#[test]
fn softmax_cross_entropy_matches_cpu() -> Result<()> {
    let Some(dev) = gpu("softmax_cross_entropy_matches_cpu") else { return Ok(()) };
    let (n, k, h, w) = (2, 21, 9, 7);
    let labels: Vec<u32> =
        rand(n * h * w, 5).iter().map(|v| if *v > 1.5 { 255 } else { ((v + 2.0) * 5.0) as u32 % k as u32 }).collect();
    let t_cpu = Tensor::from_vec(labels, (n, h, w), &Device::Cpu)?;
    let t_gpu = t_cpu.to_device(&dev)?;
    let x = tensor(&[n, k, h, w], 6, DType::F64, &Device::Cpu)?;
    let f = |z: &Tensor| {
        let t = if z.device().is_cuda() { &t_gpu } else { &t_cpu };
        kernels::softmax_cross_entropy(z, t)
    };
    check_op("softmax_ce", &dev, &x, &f)?;
    // A label outside 0..K (not 255) is an error on the GPU too.
    let bad = Tensor::from_vec(vec![3u32, 21, 0, 255], (1, 2, 2), &dev)?;
    let z = tensor(&[1, k, 2, 2], 7, DType::F32, &dev)?;
    let err = kernels::softmax_cross_entropy(&z, &bad).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("label 21"), "expected a label error, got `{err}`");
    Ok(())
}

#[test]
fn batch_norm_train_matches_cpu() -> Result<()> {
    let Some(dev) = gpu("batch_norm_train_matches_cpu") else { return Ok(()) };
    for (i, dims) in [[4usize, 5, 6, 7], [2, 3, 1, 1], [3, 64, 33, 17]].into_iter().enumerate() {
        let c = dims[1];
        let x = tensor(&dims, 20 + i as u64, DType::F64, &Device::Cpu)?.affine(3.0, 1.5)?;
        let gamma = tensor(&[c], 30 + i as u64, DType::F64, &Device::Cpu)?;
        let beta = tensor(&[c], 40 + i as u64, DType::F64, &Device::Cpu)?;
        let r = tensor(&dims, 50 + i as u64, DType::F64, &Device::Cpu)?;
        for dt in [DType::F64, DType::F32] {
            let run = |d: &Device| -> Result<Vec<Tensor>> {
                let vs: Vec<Var> = [&x, &gamma, &beta]
                    .iter()
                    .map(|t| Var::from_tensor(&t.to_dtype(dt)?.to_device(d)?))
                    .collect::<candle_core::Result<_>>()?;
                let (y, mean, var) =
                    kernels::batch_norm_train(vs[0].as_tensor(), vs[1].as_tensor(), vs[2].as_tensor(), 1e-5)?;
                let g = (&y * r.to_dtype(dt)?.to_device(d)?)?.sum_all()?.backward()?;
                let mut out = vec![y, mean, var];
                for v in &vs {
                    out.push(g.get(v.as_tensor()).cloned().ok_or_else(|| anyhow::anyhow!("no gradient"))?);
                }
                Ok(out)
            };
            let (cpu, cuda) = (run(&Device::Cpu)?, run(&dev)?);
            for (what, (a, b)) in ["y", "mean", "var", "dx", "dgamma", "dbeta"].iter().zip(cuda.iter().zip(&cpu)) {
                let d = rel_diff(a, b)?;
                eprintln!("batch_norm {dims:?} {dt:?} {what}: {d:.2e}");
                assert!(d <= tol(dt) * 10.0, "batch_norm {dims:?} {dt:?} {what}: {d:e}");
            }
        }
    }
    Ok(())
}

/// The ops' public entry points route CUDA tensors to the kernels (and stay on the device).
#[test]
fn ops_dispatch_to_cuda_kernels() -> Result<()> {
    let Some(dev) = gpu("ops_dispatch_to_cuda_kernels") else { return Ok(()) };
    let x = tensor(&[1, 3, 9, 9], 1, DType::F32, &dev)?;
    assert!(kernels::active_for(&x));
    let y = core_seg::ops::resize_bilinear(&x, (17, 17), true)?;
    let ycpu = core_seg::ops::resize_bilinear(&x.to_device(&Device::Cpu)?, (17, 17), true)?;
    assert!(rel_diff(&y, &ycpu)? < 1e-5);
    let p = core_seg::ops::max_pool_3x3_s2_p1(&x)?;
    assert_eq!(p.dims(), [1, 3, 5, 5]);
    assert!(p.device().is_cuda());
    Ok(())
}

/// The convolution used on CUDA (Candle forward, backward without conv_transpose2d; 1×1 as a batched matrix
/// product) against the CPU im2col kernel: stride 2 with H, W of different parity, dilation, the 7×7 stem.
#[test]
fn conv2d_device_matches_cpu_kernel() -> Result<()> {
    let Some(dev) = gpu("conv2d_device_matches_cpu_kernel") else { return Ok(()) };
    let p = |stride, padding, dilation| kernels::ConvParams { stride, padding, dilation, groups: 1 };
    let cases = [
        (8, 7, 3, p(2, 1, 1)),
        (9, 9, 3, p(1, 2, 2)),
        (13, 10, 7, p(2, 3, 1)),
        (12, 12, 3, p(1, 12, 12)),
        (9, 6, 1, p(2, 0, 1)),
        (7, 9, 1, p(1, 0, 1)),
    ];
    for (i, (h, w, k, prm)) in cases.into_iter().enumerate() {
        let wt = tensor(&[5, 3, k, k], 70 + i as u64, DType::F64, &Device::Cpu)?;
        let x = tensor(&[2, 3, h, w], 80 + i as u64, DType::F64, &Device::Cpu)?;
        for dt in [DType::F64, DType::F32] {
            let w_cpu = wt.to_dtype(dt)?;
            let w_gpu = w_cpu.to_device(&dev)?;
            let f = |t: &Tensor| -> candle_core::Result<Tensor> {
                if t.device().is_cuda() {
                    kernels::conv2d_device(t, &w_gpu, prm)
                } else {
                    kernels::conv2d(t, &w_cpu, prm)
                }
            };
            let r = tensor(f(&x.to_dtype(dt)?)?.dims(), 90, DType::F64, &Device::Cpu)?;
            let (yc, gc) = value_and_grad(&f, &x, &r, dt, &Device::Cpu)?;
            let (yg, gg) = value_and_grad(&f, &x, &r, dt, &dev)?;
            let (dy, dg) = (rel_diff(&yg, &yc)?, rel_diff(&gg, &gc)?);
            eprintln!("conv2d_device {h}x{w} k{k} {prm:?} {dt:?}: forward {dy:.2e}, input gradient {dg:.2e}");
            assert!(dy <= tol(dt) && dg <= tol(dt), "conv2d_device case {i} {dt:?}: {dy:e} / {dg:e}");
        }
    }
    Ok(())
}

/// The direct depthwise kernels (forward, input and weight gradients) against the CPU depthwise kernel: odd
/// sizes, stride 2 with H and W of different parity, dilation 2 and 4, channel counts 3, 5, 17; f64, f32 and
/// bf16 (against f32).
#[test]
fn depthwise_conv2d_matches_cpu_kernel() -> Result<()> {
    let Some(dev) = gpu("depthwise_conv2d_matches_cpu_kernel") else { return Ok(()) };
    let p = |c, stride, padding, dilation| kernels::ConvParams { stride, padding, dilation, groups: c };
    let cases =
        [(9, 7, 5, p(5, 2, 1, 1)), (8, 8, 17, p(17, 1, 2, 2)), (10, 6, 3, p(3, 1, 4, 4)), (7, 10, 5, p(5, 2, 1, 1))];
    for (i, (h, w, c, prm)) in cases.into_iter().enumerate() {
        let wt = tensor(&[c, 1, 3, 3], 170 + i as u64, DType::F64, &Device::Cpu)?;
        let x = tensor(&[3, c, h, w], 180 + i as u64, DType::F64, &Device::Cpu)?;
        let run = |dt: DType, d: &Device| -> Result<[Tensor; 3]> {
            let xv = Var::from_tensor(&x.to_dtype(dt)?.to_device(d)?)?;
            let wv = Var::from_tensor(&wt.to_dtype(dt)?.to_device(d)?)?;
            let y = kernels::depthwise_conv2d(xv.as_tensor(), wv.as_tensor(), prm)?;
            let r = tensor(y.dims(), 190, DType::F64, &Device::Cpu)?.to_dtype(dt)?.to_device(d)?;
            let g = (&y * &r)?.sum_all()?.backward()?;
            let grad = |v: &Var| g.get(v.as_tensor()).cloned().ok_or_else(|| anyhow::anyhow!("no gradient"));
            Ok([y, grad(&xv)?, grad(&wv)?])
        };
        for dt in [DType::F64, DType::F32, DType::BF16] {
            let cpu = run(if dt == DType::BF16 { DType::F32 } else { dt }, &Device::Cpu)?;
            let cuda = run(dt, &dev)?;
            for (what, (a, b)) in ["forward", "input gradient", "weight gradient"].iter().zip(cuda.iter().zip(&cpu)) {
                assert!(a.device().is_cuda(), "depthwise {what}: result left the GPU");
                let d = rel_diff(a, b)?;
                eprintln!("depthwise {h}x{w} c{c} {prm:?} {dt:?} {what}: {d:.2e}");
                // bf16 sums over the batch in the weight gradient: 4x the element tolerance.
                assert!(d <= tol(dt) * 4.0, "depthwise case {i} {dt:?} {what}: {d:e}");
            }
        }
    }
    Ok(())
}
