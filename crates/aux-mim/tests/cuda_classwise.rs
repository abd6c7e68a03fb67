//! The fused class-wise masked gather on CUDA equals the Candle path on the CPU (feature `cuda`). Skips (with
//! a line) without a CUDA device.
#![cfg(feature = "cuda")]

use aux_mim::classwise::{build_inputs, Sample};
use candle_core::{DType, Device, Tensor};

#[test]
fn build_inputs_cuda_matches_cpu() -> core_seg::Result<()> {
    let Some(dev) = core_seg::testing::cuda_device_or_skip("build_inputs_cuda_matches_cpu") else { return Ok(()) };
    let (b, c, h, w) = (3, 3, 6, 5);
    let vals: Vec<f32> = (0..b * c * h * w).map(|i| (i as f32 * 0.37).sin()).collect();
    let images = Tensor::from_vec(vals, (b, c, h, w), &Device::Cpu)?;
    let mask = |seed: usize| -> Vec<u8> { (0..h * w).map(|p| u8::from((p * 7 + seed) % 3 == 0)).collect() };
    let samples = vec![
        Sample { row: 2, class: Some(1), vis: mask(0), msk: mask(1) },
        Sample { row: 0, class: Some(4), vis: mask(2), msk: mask(0) },
        Sample { row: 2, class: None, vis: mask(1), msk: mask(2) },
    ];
    for dt in [DType::F32, DType::F64, DType::BF16] {
        let cpu = build_inputs(&images.to_dtype(dt)?, &samples)?;
        let gpu = build_inputs(&images.to_dtype(dt)?.to_device(&dev)?, &samples)?;
        for (a, g) in [(&cpu.0, &gpu.0), (&cpu.1, &gpu.1), (&cpu.2, &gpu.2), (&cpu.3, &gpu.3)] {
            assert!(g.device().is_cuda());
            let a: Vec<f64> = a.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
            let g: Vec<f64> = g.to_device(&Device::Cpu)?.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
            assert_eq!(a, g, "{dt:?}");
        }
    }
    Ok(())
}
