//! Contrast-sensitive TV (`tv.contrast`): hand-computed weights and loss, reduction to plain TV on a flat image,
//! and the gradient against f64 central finite differences.

use candle_core::{Device, Tensor, Var};
use core_seg::Result;

mod common;
use common::values;
use tv_loss::{contrast_weights, tv_loss, tv_loss_weighted, tv_of_probs, tv_of_probs_weighted};
use tv_loss::{TvConfig, TvKernel, TvNormalize, TvVariant};

fn cfg(variant: TvVariant, eps: f64, normalize: TvNormalize) -> TvConfig {
    TvConfig { variant, eps: Some(eps), normalize, kernel: TvKernel::Composite, contrast: true, ..Default::default() }
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_scalar::<f64>()?)
}

/// Image row `[0, 0, 1]`: pair steps² 0 and 1, σ² = 1/2, weights `[1, e^-1]`. A two-class step between columns
/// 1 and 2 (on the image edge) costs `2·e^-1` (raw A), the same step between columns 0 and 1 costs 2.
#[test]
fn hand_computed_weights_and_loss() -> Result<()> {
    let dev = Device::Cpu;
    let x = Tensor::from_vec(vec![0f64, 0.0, 1.0], (1, 1, 1, 3), &dev)?;
    let w = contrast_weights(&x)?;
    let wx: Vec<f64> = w.x.flatten_all()?.to_vec1()?;
    assert_eq!(w.y.dims(), &[1, 1, 0, 3]);
    assert!((wx[0] - 1.0).abs() < 1e-15 && (wx[1] - (-1f64).exp()).abs() < 1e-15, "{wx:?}");
    let c = cfg(TvVariant::A, 0.0, TvNormalize::Sum);
    let on_edge = Tensor::from_vec(vec![1f64, 1.0, 0.0, 0.0, 0.0, 1.0], (1, 2, 1, 3), &dev)?;
    let off_edge = Tensor::from_vec(vec![1f64, 0.0, 0.0, 0.0, 1.0, 1.0], (1, 2, 1, 3), &dev)?;
    let a = scalar(&tv_of_probs_weighted(&on_edge, None, Some(&w), &c)?)?;
    let b = scalar(&tv_of_probs_weighted(&off_edge, None, Some(&w), &c)?)?;
    assert!((a - 2.0 * (-1f64).exp()).abs() < 1e-15, "{a}");
    assert!((b - 2.0).abs() < 1e-15, "{b}");
    Ok(())
}

/// On a constant image every weight is 1, so weighted TV equals plain TV for every variant.
#[test]
fn flat_image_gives_plain_tv() -> Result<()> {
    let dev = Device::Cpu;
    let z = Tensor::from_vec(values(2 * 4 * 6 * 5, 3), (2, 4, 6, 5), &dev)?;
    let p = candle_nn::ops::softmax(&z, 1)?;
    let w = contrast_weights(&Tensor::full(0.3f64, (2, 3, 6, 5), &dev)?)?;
    for v in [TvVariant::A, TvVariant::B, TvVariant::C] {
        let c = cfg(v, 1e-6, TvNormalize::Mean);
        let plain = scalar(&tv_of_probs(&p, None, &c)?)?;
        let weighted = scalar(&tv_of_probs_weighted(&p, None, Some(&w), &c)?)?;
        assert!((plain - weighted).abs() < 1e-14 && plain > 0.0, "{v:?}: {plain} vs {weighted}");
    }
    Ok(())
}

/// `∂(TV_w∘softmax)/∂z` against central differences (h = 1e-6) on random logits and a random image, with a
/// padded region.
#[test]
fn weighted_gradient_matches_finite_differences() -> Result<()> {
    let dev = Device::Cpu;
    let shape = (2, 3, 5, 4);
    let x = Tensor::from_vec(values(2 * 3 * 5 * 4, 11), (2, 3, 5, 4), &dev)?;
    let w = contrast_weights(&x)?;
    let mut valid = vec![1u8; 40];
    valid[3] = 0;
    valid[36..40].fill(0);
    let valid = Tensor::from_vec(valid, (2, 5, 4), &dev)?;
    for c in [cfg(TvVariant::A, 1e-6, TvNormalize::Mean), cfg(TvVariant::C, 1e-6, TvNormalize::Sum)] {
        let z0 = values(120, 5);
        let z = Var::from_tensor(&Tensor::from_vec(z0.clone(), shape, &dev)?)?;
        let loss = tv_loss_weighted(z.as_tensor(), Some(&valid), Some(&w), &c)?;
        let g: Vec<f64> = loss.backward()?.get(&z).expect("grad").flatten_all()?.to_vec1()?;
        let f = |zz: &[f64]| -> Result<f64> {
            scalar(&tv_loss_weighted(&Tensor::from_vec(zz.to_vec(), shape, &dev)?, Some(&valid), Some(&w), &c)?)
        };
        let gmax = g.iter().fold(0f64, |m, v| m.max(v.abs()));
        assert!(gmax > 1e-4, "degenerate test");
        for i in 0..z0.len() {
            let (mut zp, mut zm) = (z0.clone(), z0.clone());
            zp[i] += 1e-6;
            zm[i] -= 1e-6;
            let fd = (f(&zp)? - f(&zm)?) / 2e-6;
            assert!((fd - g[i]).abs() < 1e-6 * gmax.max(1.0), "{:?} z[{i}]: fd {fd} vs {}", c.variant, g[i]);
        }
        // Weighting changes the value (the image is not flat).
        let plain = scalar(&tv_loss(z.as_tensor(), Some(&valid), &c)?)?;
        assert!((plain - scalar(&loss)?).abs() > 1e-3);
    }
    Ok(())
}

/// The fused kernel takes no weights: asking for it with contrast is a config error.
#[test]
fn contrast_rejects_fused_kernel_and_decoder_resolution() {
    let fused = TvConfig { contrast: true, kernel: TvKernel::Fused, ..Default::default() };
    assert!(fused.validate().is_err());
    let dec = TvConfig { contrast: true, at: tv_loss::TvAt::Decoder, ..Default::default() };
    assert!(dec.validate().is_err());
    assert!(TvConfig { contrast: true, ..Default::default() }.validate().is_ok());
}
