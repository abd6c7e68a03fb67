//! The fused variant-A kernel on CUDA against the CPU kernel (feature `cuda`): value and gradient in f64
//! (≤ 1e-10 relative), f32 (≤ 1e-5), bf16 (≤ 2e-2 against the CPU in f32), ε = 0 and ε > 0, mean and sum
//! normalisation, with and without a valid map. Skips (with a line) without a CUDA device.
#![cfg(feature = "cuda")]

use candle_core::{DType, Device, Tensor, Var};
use core_seg::Result;

mod common;
use common::values;
use tv_loss::{tv_loss_fused, TvConfig, TvNormalize};

fn rel(a: &Tensor, b: &Tensor) -> Result<f64> {
    let a = a.to_device(&Device::Cpu)?.to_dtype(DType::F64)?;
    let b = b.to_device(&Device::Cpu)?.to_dtype(DType::F64)?;
    let d = (&a - &b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>()?;
    Ok(d / b.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>()?.max(1e-12))
}

#[test]
fn fused_tv_cuda_matches_cpu() -> Result<()> {
    let Some(dev) = core_seg::testing::cuda_device_or_skip("fused_tv_cuda_matches_cpu") else { return Ok(()) };
    let (n, k, h, w) = (2, 5, 13, 11);
    let z = Tensor::from_vec(values(n * k * h * w, 3), (n, k, h, w), &Device::Cpu)?;
    let mask: Vec<f64> = values(n * h * w, 4).iter().map(|v| f64::from(u8::from(*v > -1.0))).collect();
    let valid = Tensor::from_vec(mask, (n, h, w), &Device::Cpu)?;
    for eps in [Some(0.0), Some(1e-6)] {
        for normalize in [TvNormalize::Mean, TvNormalize::Sum] {
            for use_valid in [false, true] {
                let cfg = TvConfig { eps, normalize, ..Default::default() };
                for dt in [DType::F64, DType::F32, DType::BF16] {
                    let run = |d: &Device, dt: DType| -> Result<(Tensor, Tensor)> {
                        let zv = Var::from_tensor(&z.to_dtype(dt)?.to_device(d)?)?;
                        let v = valid.to_dtype(dt)?.to_device(d)?;
                        let tv = tv_loss_fused(zv.as_tensor(), use_valid.then_some(&v), &cfg)?;
                        let g = (&tv * 3.0)?.backward()?;
                        let dz = g.get(zv.as_tensor()).cloned().expect("gradient");
                        Ok((tv, dz))
                    };
                    let cpu_dt = if dt == DType::BF16 { DType::F32 } else { dt };
                    let (tc, gc) = run(&Device::Cpu, cpu_dt)?;
                    let (tg, gg) = run(&dev, dt)?;
                    let tol = match dt {
                        DType::F64 => 1e-10,
                        DType::F32 => 1e-5,
                        _ => 2e-2,
                    };
                    let (dv, dg) = (rel(&tg, &tc)?, rel(&gg, &gc)?);
                    eprintln!("eps {eps:?} {normalize:?} valid {use_valid} {dt:?}: value {dv:.1e}, gradient {dg:.1e}");
                    assert!(dv <= tol && dg <= tol, "eps {eps:?} {normalize:?} {dt:?}: {dv:e} / {dg:e}");
                }
            }
        }
    }
    Ok(())
}
