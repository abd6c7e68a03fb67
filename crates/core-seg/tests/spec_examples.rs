//! Hand-computed numbers (CE with ignore, OHEM, poly lr; conv shapes and gradients through our kernels) and
//! the batch-norm guard.

mod common;

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use core_seg::model::{DeepLabConfig, DeepLabV3Plus};
use core_seg::nn::{BatchNorm2d, BnConfig, Conv2d, ConvConfig, Mode, ParamStore};
use core_seg::ops::{self, OhemConfig};
use core_seg::rng::SegRng;
use core_seg::Error;

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// K = 2 logits `[1, 2, 1, P]` whose target-0 probabilities are `q` (z0 = logit(q), z1 = 0).
fn logits_for(q: &[f64]) -> Result<Tensor> {
    let z0: Vec<f64> = q.iter().map(|q| (q / (1.0 - q)).ln()).collect();
    let z = [z0, vec![0.0; q.len()]].concat();
    Ok(Tensor::from_vec(z, (1, 2, 1, q.len()), &Device::Cpu)?)
}

/// CE with ignore on two pixels; 0.693147 is the 6-digit value of ln 2, kept literally.
#[test]
#[allow(clippy::approx_constant)]
fn cross_entropy_hand_example() -> Result<()> {
    let logits = Tensor::from_vec(vec![0.0, 3f64.ln(), 0.0, 0.0], (1, 2, 1, 2), &Device::Cpu)?;
    let t = Tensor::from_vec(vec![0u32, 0], (1, 1, 2), &Device::Cpu)?;
    let l = scalar(&ops::cross_entropy_ignore(&logits, &t)?)?;
    assert!((l - 0.490415).abs() < 5e-7, "{l}");
    let t = Tensor::from_vec(vec![0u32, 255], (1, 1, 2), &Device::Cpu)?;
    let l = scalar(&ops::cross_entropy_ignore(&logits, &t)?)?;
    assert!((l - 0.693147).abs() < 5e-7, "{l}");
    // A label outside 0..K that is not 255 is rejected.
    let bad = Tensor::from_vec(vec![0u32, 7], (1, 1, 2), &Device::Cpu)?;
    assert!(ops::cross_entropy_ignore(&logits, &bad).is_err());
    Ok(())
}

#[test]
fn ohem_hand_examples() -> Result<()> {
    let t = Tensor::zeros((1, 1, 4), DType::U32, &Device::Cpu)?;
    let cfg = OhemConfig { thresh: 0.7, min_kept: 2 };
    let l = scalar(&ops::ohem_cross_entropy(&logits_for(&[0.9, 0.6, 0.8, 0.3])?, &t, cfg)?)?;
    assert!((l - 0.857399).abs() < 5e-7, "{l}");
    let x = logits_for(&[0.9, 0.95, 0.8, 0.85])?;
    let l = scalar(&ops::ohem_cross_entropy(&x, &t, cfg)?)?;
    assert!((l - 0.192831).abs() < 5e-7, "{l}");
    let plain = scalar(&ops::cross_entropy_ignore(&x, &t)?)?;
    let cfg5 = OhemConfig { thresh: 0.7, min_kept: 5 };
    let l = scalar(&ops::ohem_cross_entropy(&x, &t, cfg5)?)?;
    assert_eq!(l, plain, "min_kept 5 > 4 valid pixels → plain CE");
    let expect = -[0.9f64, 0.95, 0.8, 0.85].iter().map(|q| q.ln()).sum::<f64>() / 4.0;
    assert!((plain - expect).abs() < 1e-12);
    Ok(())
}

#[test]
fn dropout2d_planes_and_kept_fraction() -> Result<()> {
    let x = (common::randn(11, &[64, 64, 2, 3])? + 5.0)?; // no zero inputs
    let mut rng = SegRng::new(12);
    let y = ops::dropout2d(&x, 0.5, &mut rng)?;
    let ratio = (y / &x)?.reshape((64 * 64, 6))?.to_vec2::<f64>()?;
    let mut kept = 0usize;
    for plane in &ratio {
        let all_zero = plane.iter().all(|v| *v == 0.0);
        let all_two = plane.iter().all(|v| (*v - 2.0).abs() < 1e-15);
        assert!(all_zero || all_two, "plane neither 0 nor 2×: {plane:?}");
        kept += all_two as usize;
    }
    let frac = kept as f64 / ratio.len() as f64;
    println!("Dropout2d kept fraction {frac:.4} over {} planes", ratio.len());
    assert!((frac - 0.5).abs() < 0.04, "{frac}");
    Ok(())
}

#[test]
fn pixel_shuffle_round_trip_and_layout() -> Result<()> {
    let x = common::randn(21, &[2, 18, 3, 4])?;
    let y = ops::pixel_shuffle(&x, 3)?;
    assert_eq!(y.dims(), [2, 2, 9, 12]);
    assert_eq!(common::max_abs_diff(&ops::pixel_unshuffle(&y, 3)?, &x)?, 0.0);
    // out[n, c, h·r + i, w·r + j] = x[n, c·r² + i·r + j, h, w] at n=1, c=1, h=2, w=3, i=1, j=2.
    let a = y.get(1)?.get(1)?.get(2 * 3 + 1)?.get(3 * 3 + 2)?.to_scalar::<f64>()?;
    let b = x.get(1)?.get(9 + 3 + 2)?.get(2)?.get(3)?.to_scalar::<f64>()?;
    assert_eq!(a, b);
    assert!(ops::pixel_shuffle(&x, 4).is_err());
    Ok(())
}

#[test]
fn max_pool_gradient_counts_unique_argmax() -> Result<()> {
    let x = common::randn(31, &[1, 2, 7, 9])?;
    let v = Var::from_tensor(&x)?;
    let grads = ops::max_pool_3x3_s2_p1(v.as_tensor())?.sum_all()?.backward()?;
    let g = grads.get(v.as_tensor()).expect("grad").flatten_all()?.to_vec1::<f64>()?;
    let xs = x.flatten_all()?.to_vec1::<f64>()?;
    let (h, w) = (7i64, 9i64);
    let mut count = vec![0.0; xs.len()];
    for c in 0..2 {
        for oi in 0..4 {
            for oj in 0..5 {
                let mut best = (f64::NEG_INFINITY, 0usize);
                for a in -1..2 {
                    for b in -1..2 {
                        let (i, j) = (2 * oi + a, 2 * oj + b);
                        if (0..h).contains(&i) && (0..w).contains(&j) {
                            let k = (c * h * w + i * w + j) as usize;
                            if xs[k] > best.0 {
                                best = (xs[k], k);
                            }
                        }
                    }
                }
                count[best.1] += 1.0;
            }
        }
    }
    assert_eq!(g, count, "gradient = number of windows whose unique max is the element (not 1/k²)");
    Ok(())
}

/// A stride-2 conv on an 8×7 input trains through the project's conv kernel (the default
/// on CPU) with a gradient matching finite differences. Only the Candle reference path
/// (`SEMISEG_REFERENCE_OPS=1`) may fail, with Candle's shape-mismatch error.
#[test]
fn stride2_conv_on_8x7_input() -> Result<()> {
    let store = ParamStore::new(3);
    let cfg = ConvConfig { stride: 2, padding: 1, dilation: 1, groups: 1 };
    let conv = Conv2d::new(2, 3, 3, cfg, false, None, store.var_builder(DType::F64, &Device::Cpu))?;
    let x = common::randn(41, &[2, 2, 8, 7])?;
    let y = conv.forward(&x)?;
    assert_eq!(y.dims(), [2, 3, 4, 4]);
    let r = common::randn(42, y.dims())?;
    let f = |x: &Tensor| -> anyhow::Result<Tensor> { Ok(conv.forward(x)?) };
    let v = Var::from_tensor(&x)?;
    match (conv.forward(v.as_tensor())? * &r)?.sum_all()?.backward() {
        Ok(_) => {
            let e = common::fd_check(&f, &x, &r, 24)?;
            println!("stride-2 conv 8×7: backward works, FD rel err {e:.2e}");
            assert!(e < 1e-6, "{e}");
        }
        Err(err) => {
            let msg = err.to_string();
            assert!(core_seg::kernels::reference_requested(), "the kernel path must train on 8×7: {msg}");
            assert!(msg.contains("shape mismatch"), "unclear error: {msg}");
        }
    }
    Ok(())
}

/// The same case one level up: training the tiny DeepLabV3+ on a 32×40 crop puts a 4×5 map into layer 3's
/// stride-2 convs. On the kernel path every trainable parameter gets a gradient.
#[test]
fn deeplab_training_on_non_square_crop() -> Result<()> {
    let store = ParamStore::new(8);
    let model = DeepLabV3Plus::new(&tiny_cfg(), store.var_builder(DType::F32, &Device::Cpu))?;
    let x = common::randn(61, &[2, 3, 32, 40])?.to_dtype(DType::F32)?;
    let logits = model.forward_t(&x, Mode::Train)?;
    assert_eq!(logits.dims(), [2, 5, 32, 40], "forward works at any size");
    let target = Tensor::zeros((2, 32, 40), DType::U32, &Device::Cpu)?;
    match ops::cross_entropy_ignore(&logits, &target)?.backward() {
        Ok(g) => {
            for (name, v) in store.named_vars().into_iter().filter(|(n, _)| !n.contains("running_")) {
                assert!(g.get(v.as_tensor()).is_some(), "no gradient for {name}");
            }
        }
        Err(err) => {
            let msg = err.to_string();
            assert!(core_seg::kernels::reference_requested(), "the kernel path must train on 32×40: {msg}");
            assert!(msg.contains("shape mismatch"), "unclear error: {msg}");
        }
    }
    Ok(())
}

fn tiny_cfg() -> DeepLabConfig {
    DeepLabConfig {
        backbone: core_seg::model::Backbone::Resnet18,
        base_width: 8,
        aspp_channels: Some(16),
        reduce_channels: 12,
        fuse_channels: 32,
        nclass: 5,
        ..DeepLabConfig::default()
    }
}

#[test]
fn batch_norm_guard_single_value_per_channel() -> Result<()> {
    let store = ParamStore::new(5);
    let bn = BatchNorm2d::new(3, BnConfig::default(), store.var_builder(DType::F64, &Device::Cpu).pp("bn"))?;
    let one = common::randn(51, &[1, 3, 1, 1])?;
    match bn.forward_t(&one, Mode::Train) {
        Err(Error::BatchNormSingleValue { name, values, .. }) => {
            assert_eq!((name.as_str(), values), ("bn", 1))
        }
        other => panic!("expected BatchNormSingleValue, got {other:?}"),
    }
    let rv = bn.running_var.as_tensor().to_vec1::<f64>()?;
    assert!(rv.iter().all(|v| *v == 1.0), "a rejected batch must not touch the running stats: {rv:?}");
    bn.forward_t(&common::randn(52, &[2, 3, 1, 1])?, Mode::Train)?;
    let rv = bn.running_var.as_tensor().to_vec1::<f64>()?;
    assert!(rv.iter().all(|v| v.is_finite()), "{rv:?}");
    assert!(bn.forward_t(&one, Mode::Eval).is_ok(), "eval mode needs no batch statistics");
    // In the model: the ASPP image-pool BN sees one value per channel at batch 1.
    let cfg = tiny_cfg();
    let store = ParamStore::new(6);
    let model = DeepLabV3Plus::new(&cfg, store.var_builder(DType::F32, &Device::Cpu))?;
    let x = common::randn(53, &[1, 3, 32, 32])?.to_dtype(DType::F32)?;
    match model.forward_t(&x, Mode::Train) {
        Err(Error::BatchNormSingleValue { name, .. }) => assert_eq!(name, "head.b4.gap.2"),
        other => panic!("expected BatchNormSingleValue, got {:?}", other.map(|t| t.dims().to_vec())),
    }
    Ok(())
}
