//! Focal loss, softplus and the labelled CE against hand values and f64 finite differences.

use candle_core::{DType, Device, Tensor, Var};
use core_seg::rng::SegRng;
use core_seg::Result;
use guidedmix::loss::{labeled_ce, sigmoid_focal_loss, softplus};
use guidedmix::CeReduction;

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

fn randn(seed: u64, shape: &[usize], scale: f64) -> Result<Tensor> {
    let mut rng = SegRng::new(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.normal() * scale).collect();
    Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
}

fn targets(seed: u64, n: usize, h: usize, w: usize, c: u64) -> Result<Tensor> {
    let mut rng = SegRng::new(seed);
    let v: Vec<u32> = (0..n * h * w).map(|_| rng.below(c) as u32).collect();
    Ok(Tensor::from_vec(v, (n, h, w), &Device::Cpu)?)
}

/// All logits 0: every entry is `0.5·√0.5·ln 2`, so `10·L = 2.450645` for any target.
#[test]
fn focal_of_zero_logits_is_the_hand_value() -> Result<()> {
    let x = Tensor::zeros((2, 3, 2, 2), DType::F64, &Device::Cpu)?;
    let l = 10.0 * scalar(&sigmoid_focal_loss(&x, &targets(1, 2, 2, 2, 3)?, 0.5, 0.5)?)?;
    assert!((l - 10.0 * 0.5 * 0.5f64.sqrt() * 2f64.ln()).abs() < 1e-12, "{l}");
    assert!((l - 2.450645).abs() < 1e-6, "{l}");
    Ok(())
}

/// C = 2, target logit ln 3 (p = ¾), other logit 0: `10·(0.0719205 + 0.2450645)/2 = 1.584925`.
#[test]
fn focal_of_a_two_class_pixel_is_the_hand_value() -> Result<()> {
    let x = Tensor::from_vec(vec![3f64.ln(), 0.0], (1, 2, 1, 1), &Device::Cpu)?;
    let t = Tensor::from_vec(vec![0u32], (1, 1, 1), &Device::Cpu)?;
    let l = 10.0 * scalar(&sigmoid_focal_loss(&x, &t, 0.5, 0.5)?)?;
    let pos = 0.5 * 0.25f64.sqrt() * (4.0f64 / 3.0).ln();
    assert!((pos - 0.0719205).abs() < 1e-7);
    assert!((l - 1.584925).abs() < 1e-6, "{l}");
    Ok(())
}

/// The FLT_MIN-clamped form the CUDA kernel evaluates, in f64.
fn clamped_focal(x: &[f64], t: &[u32], (n, c, hw): (usize, usize, usize), gamma: f64, alpha: f64) -> f64 {
    let fmin = f32::MIN_POSITIVE as f64;
    let mut s = 0.0;
    for i in 0..n {
        for k in 0..c {
            for p in 0..hw {
                let v = x[(i * c + k) * hw + p];
                let prob = 1.0 / (1.0 + (-v).exp());
                s += if t[i * hw + p] as usize == k {
                    -alpha * (1.0 - prob).powf(gamma) * prob.max(fmin).ln()
                } else {
                    -(1.0 - alpha) * prob.powf(gamma) * (1.0 - prob).max(fmin).ln()
                };
            }
        }
    }
    s / (n * c * hw) as f64
}

#[test]
fn focal_equals_the_clamped_form_and_stays_finite_at_saturation() -> Result<()> {
    let t = targets(3, 2, 4, 4, 3)?;
    let tv: Vec<u32> = t.flatten_all()?.to_vec1()?;
    for scale in [1.0, 5.0, 15.0] {
        let x = randn(2, &[2, 3, 4, 4], scale)?.clamp(-15.0, 15.0)?;
        let ours = scalar(&sigmoid_focal_loss(&x, &t, 0.5, 0.25)?)?;
        let theirs = clamped_focal(&x.flatten_all()?.to_vec1()?, &tv, (2, 3, 16), 0.5, 0.25);
        // The reference loses ~1e-10 relative in `1 − σ(x)` at |x| = 15 (cancellation); ours does not.
        assert!((ours - theirs).abs() < 1e-9 * theirs.abs().max(1.0), "scale {scale}: {ours} vs {theirs}");
    }
    for dtype in [DType::F32, DType::F64] {
        let v: Vec<f64> = (0..96).map(|i| if i % 3 == 0 { -30.0 } else { 30.0 }).collect();
        let x = Var::from_tensor(&Tensor::from_vec(v, (2, 3, 4, 4), &Device::Cpu)?.to_dtype(dtype)?)?;
        let l = sigmoid_focal_loss(x.as_tensor(), &t, 0.5, 0.5)?;
        let g = l.backward()?.get(x.as_tensor()).cloned().expect("gradient");
        let gmax = g.abs()?.flatten_all()?.max(0)?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        assert!(scalar(&l)?.is_finite() && gmax.is_finite(), "{dtype:?}: loss or gradient not finite");
    }
    Ok(())
}

/// Analytic gradient of `Σ f·R` vs f64 central differences at every element.
fn gradcheck(f: &dyn Fn(&Tensor) -> Result<Tensor>, x: &Tensor, tol: f64) -> Result<()> {
    let r = randn(99, &[1], 1.0)?.to_vec1::<f64>()?[0] + 1.5;
    let v = Var::from_tensor(x)?;
    let sum = |x: &Tensor| -> Result<Tensor> { Ok(f(x)?.sum_all()?) };
    let analytic: Vec<f64> =
        (sum(v.as_tensor())? * r)?.backward()?.get(v.as_tensor()).expect("grad").flatten_all()?.to_vec1()?;
    let base: Vec<f64> = x.flatten_all()?.to_vec1()?;
    let eps = 1e-6;
    for (i, a) in analytic.iter().enumerate() {
        let eval = |d: f64| -> Result<f64> {
            let mut p = base.clone();
            p[i] += d;
            Ok(scalar(&sum(&Tensor::from_vec(p, x.shape(), x.device())?)?)? * r)
        };
        let num = (eval(eps)? - eval(-eps)?) / (2.0 * eps);
        assert!((a - num).abs() <= tol * (1.0 + num.abs()), "element {i}: analytic {a} vs numeric {num}");
    }
    Ok(())
}

#[test]
fn focal_gradient_matches_finite_differences() -> Result<()> {
    let t = targets(5, 2, 4, 4, 3)?;
    let x = randn(6, &[2, 3, 4, 4], 2.0)?;
    gradcheck(&|x| sigmoid_focal_loss(x, &t, 0.5, 0.5), &x, 1e-7)?;
    gradcheck(&|x| sigmoid_focal_loss(x, &t, 2.0, 0.25), &x, 1e-7)
}

/// softplus = ln(1 + eˣ) for moderate x, x for large x, and its gradient is σ(x) — ½ exactly at 0.
#[test]
fn softplus_values_and_gradient_including_zero() -> Result<()> {
    let xs: Vec<f64> = vec![-40.0, -3.0, -1e-3, 0.0, 1e-3, 2.0, 40.0];
    let x = Var::from_tensor(&Tensor::new(xs.clone(), &Device::Cpu)?)?;
    let y = softplus(x.as_tensor())?;
    let g: Vec<f64> = y.sum_all()?.backward()?.get(x.as_tensor()).expect("grad").to_vec1()?;
    for ((v, yv), gv) in xs.iter().zip(y.to_vec1::<f64>()?).zip(g) {
        let want = if *v > 30.0 { *v } else { v.exp().ln_1p() };
        assert!((yv - want).abs() < 1e-12 * want.max(1.0), "softplus({v}) = {yv}");
        assert!((gv - 1.0 / (1.0 + (-v).exp())).abs() < 1e-12, "softplus'({v}) = {gv}");
    }
    gradcheck(&softplus, &randn(7, &[16], 3.0)?, 1e-8)
}

/// 2 pixels, one ignored, K = 2, zero logits: `ln 2 / 2` over all pixels, `ln 2` over valid ones.
#[test]
#[allow(clippy::approx_constant)]
fn labeled_ce_reductions_are_the_hand_values() -> Result<()> {
    let x = Tensor::zeros((1, 2, 1, 2), DType::F64, &Device::Cpu)?;
    let y = Tensor::from_vec(vec![1u32, 255], (1, 1, 2), &Device::Cpu)?;
    let all = scalar(&labeled_ce(&x, &y, CeReduction::AllPixels)?)?;
    let valid = scalar(&labeled_ce(&x, &y, CeReduction::ValidPixels)?)?;
    assert!((all - 0.346574).abs() < 1e-6 && (valid - 0.693147).abs() < 1e-6, "{all} {valid}");
    Ok(())
}
