//! `[train] precision = "bf16"`: convolutions under autocast, everything else in f32. The autocast plumbing is
//! checked on the CPU with f16 (Candle's CPU backend has f16 but no bf16 matmul); bf16 training itself needs
//! CUDA (feature `cuda`, skipped without a GPU).

use candle_core::{DType, Device, Tensor};
use core_seg::frameworks::{Criterion, Supervised};
use core_seg::nn::{autocast_dtype, AutocastGuard, Conv2d, ConvConfig, ParamStore};
use core_seg::testing::tiny_model;
#[cfg(feature = "cuda")]
use core_seg::testing::ToySource;
use core_seg::train::{Precision, TrainConfig, Trainer};
use core_seg::{Error, Result};

#[test]
fn autocast_conv_runs_in_the_autocast_dtype_and_returns_the_input_dtype() -> Result<()> {
    let store = ParamStore::new(1);
    let vb = store.var_builder(DType::F32, &Device::Cpu).pp("c");
    let conv = Conv2d::new(3, 4, 3, ConvConfig { padding: 1, ..Default::default() }, true, None, vb)?;
    let x = Tensor::randn(0f32, 1.0, (2, 3, 8, 8), &Device::Cpu)?;
    let y32 = conv.forward(&x)?;
    let y16 = {
        let _g = AutocastGuard::new(Some(DType::F16));
        assert_eq!(autocast_dtype(), Some(DType::F16));
        conv.forward(&x)?
    };
    assert_eq!(autocast_dtype(), None, "the guard restores the previous setting");
    assert_eq!(y16.dtype(), DType::F32);
    let d = (&y16 - &y32)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
    let m = y32.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
    assert!(d > 0.0 && d < 1e-2 * m.max(1.0), "f16 conv differs by {d} (max {m})");
    // Gradients reach the f32 weights through the casts.
    let v = store.named_vars().into_iter().find(|(n, _)| n == "c.weight").expect("weight").1;
    let g = {
        let _g = AutocastGuard::new(Some(DType::F16));
        conv.forward(&x)?.sum_all()?.backward()?
    };
    assert_eq!(g.get(v.as_tensor()).expect("weight gradient").dtype(), DType::F32);
    Ok(())
}

fn bf16_config() -> TrainConfig {
    TrainConfig { iters: 2, lr: 0.01, seed: 3, precision: Precision::Bf16, ..Default::default() }
}

#[test]
fn bf16_on_the_cpu_is_a_config_error() {
    let fw = Box::new(Supervised { criterion: Criterion::Ce });
    match Trainer::new(&tiny_model(3), bf16_config(), fw, DType::F32, &Device::Cpu) {
        Err(Error::Config(msg)) => assert!(msg.contains("CUDA"), "{msg}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("bf16 on the CPU was accepted"),
    }
}

#[test]
fn precision_and_sync_bn_keys() {
    let cfg: TrainConfig = serde_json::from_str(r#"{"precision": "bf16", "sync_bn": false}"#).expect("config");
    assert_eq!(cfg.precision, Precision::Bf16);
    assert!(!cfg.sync_bn);
    assert_eq!(TrainConfig::default().precision, Precision::F32);
    assert!(TrainConfig::default().sync_bn);
}

/// On a GPU: bf16 steps are finite and close to f32 (the batches are identical, so is the seed).
#[cfg(feature = "cuda")]
#[test]
fn bf16_training_steps_on_cuda_are_close_to_f32() -> Result<()> {
    let Some(dev) = core_seg::testing::cuda_device_or_skip("bf16_training_steps_on_cuda_are_close_to_f32") else {
        return Ok(());
    };
    let run = |precision: Precision| -> Result<Vec<f64>> {
        let cfg = TrainConfig { precision, ..bf16_config() };
        let fw = Box::new(Supervised { criterion: Criterion::Ce });
        let mut t = Trainer::new(&tiny_model(3), cfg, fw, DType::F32, &dev)?;
        let mut src = OnDevice(ToySource { n_train: 8, batch: 2, size: 32, dtype: DType::F32 }, dev.clone());
        (0..2).map(|_| Ok(t.step(&mut src)?.loss)).collect()
    };
    let (a, b) = (run(Precision::F32)?, run(Precision::Bf16)?);
    for (x, y) in a.iter().zip(&b) {
        assert!(y.is_finite() && (x - y).abs() < 0.05 * x.abs().max(1.0), "f32 {a:?} vs bf16 {b:?}");
    }
    Ok(())
}

/// A toy source whose labelled batches live on `.1`.
#[cfg(feature = "cuda")]
struct OnDevice(ToySource, Device);

#[cfg(feature = "cuda")]
impl core_seg::batch::BatchSource for OnDevice {
    fn batch(&mut self, iter: usize) -> Result<core_seg::batch::TrainBatch> {
        let mut b = self.0.batch(iter)?;
        let l = &mut b.labeled;
        (l.image, l.mask, l.valid) =
            (l.image.to_device(&self.1)?, l.mask.to_device(&self.1)?, l.valid.to_device(&self.1)?);
        Ok(b)
    }
}
