//! Acceptance properties of the TV loss and its config.

use candle_core::{DType, Device, Tensor, Var};
use core_seg::Result;
use tv_loss::{
    tv_loss, tv_loss_fused, tv_of_probs, ApplyTo, CurvilinearConfig, TvConfig, TvKernel, TvNormalize, TvVariant,
};

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// The composite reference (the fused kernel is compared against it in `fused_kernel_matches_composite`).
fn cfg(variant: TvVariant, eps: f64, normalize: TvNormalize) -> TvConfig {
    TvConfig { variant, eps: Some(eps), normalize, kernel: TvKernel::Composite, ..Default::default() }
}

/// Deterministic pseudo-random values in [−2, 2) (no RNG dependency in the tests).
fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 4.0 - 2.0
        })
        .collect()
}

fn random_logits(shape: (usize, usize, usize, usize), seed: u64) -> Result<Tensor> {
    let n = shape.0 * shape.1 * shape.2 * shape.3;
    Ok(Tensor::from_vec(values(n, seed), shape, &Device::Cpu)?)
}

const ALL: [TvVariant; 3] = [TvVariant::A, TvVariant::B, TvVariant::C];

/// logits constant over space → TV = 0 and ∂TV/∂z = 0, for A, B, C and several ε.
#[test]
fn constant_probability_map_has_zero_tv_and_zero_gradient() -> Result<()> {
    let per_class = Tensor::from_vec(vec![0.3f64, -1.2, 2.0], (1, 3, 1, 1), &Device::Cpu)?;
    let z = Var::from_tensor(&per_class.broadcast_as((2, 3, 6, 7))?.contiguous()?)?;
    for v in ALL {
        for eps in [0.0, 1e-6, 1e-3] {
            let l = tv_loss(z.as_tensor(), None, &cfg(v, eps, TvNormalize::Mean))?;
            assert_eq!(scalar(&l)?, 0.0, "{v:?} eps {eps}");
            let g = l.backward()?.get(&z).expect("grad").abs()?.max_all()?.to_scalar::<f64>()?;
            assert_eq!(g, 0.0, "{v:?} eps {eps}: gradient {g}");
        }
    }
    Ok(())
}

/// One-hot image `[1,K,H,W]` from a label map.
fn one_hot(labels: &[usize], k: usize, h: usize, w: usize) -> Result<Tensor> {
    let mut v = vec![0f64; k * h * w];
    for (p, &l) in labels.iter().enumerate() {
        v[l * h * w + p] = 1.0;
    }
    Ok(Tensor::from_vec(v, (1, k, h, w), &Device::Cpu)?)
}

/// a vertical step edge between classes a = 0 and b = 2 (N = 1, K = 3, H = 4, W = 5): raw A = 2H = 8,
/// mean A = 8/60, raw B (ε → 0) = 8, raw C (ε → 0) = √2·H; a one-pixel-wide stripe has twice the raw A.
#[test]
fn step_edge_and_one_pixel_stripe_match_hand_computed_values() -> Result<()> {
    let (k, h, w) = (3, 4, 5);
    let step: Vec<usize> = (0..h * w).map(|p| if p % w < 2 { 0 } else { 2 }).collect();
    let p = one_hot(&step, k, h, w)?;
    let raw_a = scalar(&tv_of_probs(&p, None, &cfg(TvVariant::A, 0.0, TvNormalize::Sum))?)?;
    assert!((raw_a - 8.0).abs() < 1e-12, "{raw_a}");
    let mean_a = scalar(&tv_of_probs(&p, None, &cfg(TvVariant::A, 0.0, TvNormalize::Mean))?)?;
    assert!((mean_a - 0.133333).abs() < 1e-6 && (mean_a - 8.0 / 60.0).abs() < 1e-15, "{mean_a}");
    for eps in [0.0, 1e-12] {
        let raw_b = scalar(&tv_of_probs(&p, None, &cfg(TvVariant::B, eps, TvNormalize::Sum))?)?;
        assert!((raw_b - 8.0).abs() < 1e-4, "B eps {eps}: {raw_b}");
        let raw_c = scalar(&tv_of_probs(&p, None, &cfg(TvVariant::C, eps, TvNormalize::Sum))?)?;
        assert!((raw_c - 5.656854).abs() < 1e-4, "C eps {eps}: {raw_c}");
        // Mean-normalised C divides by ΣV = H·W only.
        let mean_c = scalar(&tv_of_probs(&p, None, &cfg(TvVariant::C, eps, TvNormalize::Mean))?)?;
        assert!((mean_c - raw_c / 20.0).abs() < 1e-12);
    }
    // Exact ε = 0 values.
    let raw_c0 = scalar(&tv_of_probs(&p, None, &cfg(TvVariant::C, 0.0, TvNormalize::Sum))?)?;
    assert!((raw_c0 - 4.0 * 2f64.sqrt()).abs() < 1e-12, "{raw_c0}");
    // One-pixel-wide stripe of class 1 in column 2: two edges per row, two classes each → 4H = 16.
    let stripe: Vec<usize> = (0..h * w).map(|p| if p % w == 2 { 1 } else { 0 }).collect();
    let ps = one_hot(&stripe, k, h, w)?;
    let raw_s = scalar(&tv_of_probs(&ps, None, &cfg(TvVariant::A, 0.0, TvNormalize::Sum))?)?;
    assert!((raw_s - 16.0).abs() < 1e-12, "{raw_s}");
    Ok(())
}

/// permuting the classes leaves every variant unchanged.
#[test]
fn invariant_to_class_permutation() -> Result<()> {
    let z = random_logits((2, 4, 6, 5), 11)?;
    let perm = Tensor::from_vec(vec![2u32, 0, 3, 1], 4, &Device::Cpu)?;
    let zp = z.index_select(&perm, 1)?;
    for v in ALL {
        for eps in [0.0, 1e-6] {
            let c = cfg(v, eps, TvNormalize::Mean);
            let (a, b) = (scalar(&tv_loss(&z, None, &c)?)?, scalar(&tv_loss(&zp, None, &c)?)?);
            assert!(a > 0.0 && (a - b).abs() < 1e-12 * a.max(1.0), "{v:?}: {a} vs {b}");
        }
    }
    Ok(())
}

/// nearest upsampling of a piecewise-constant P by s multiplies raw A by s and mean A by 1/s.
#[test]
fn nearest_upsampling_scales_raw_and_mean_tv() -> Result<()> {
    let p = candle_nn::ops::softmax(&random_logits((1, 3, 4, 3), 5)?, 1)?;
    let raw =
        |x: &Tensor, n: TvNormalize| -> Result<f64> { scalar(&tv_of_probs(x, None, &cfg(TvVariant::A, 0.0, n))?) };
    let (r1, m1) = (raw(&p, TvNormalize::Sum)?, raw(&p, TvNormalize::Mean)?);
    for s in [2usize, 3] {
        let up = p.upsample_nearest2d(4 * s, 3 * s)?;
        let (rs, ms) = (raw(&up, TvNormalize::Sum)?, raw(&up, TvNormalize::Mean)?);
        assert!((rs - s as f64 * r1).abs() < 1e-12, "s={s}: raw {rs} vs {}", s as f64 * r1);
        assert!((ms - m1 / s as f64).abs() < 1e-12, "s={s}: mean {ms} vs {}", m1 / s as f64);
    }
    Ok(())
}

/// logits of padded pixels change neither the loss nor any gradient at valid pixels; padded pixels get
/// zero gradient. Mean normalisation counts valid pixels only.
#[test]
fn padding_changes_nothing() -> Result<()> {
    let (n, k, h, w) = (2, 3, 5, 6);
    let mut valid = vec![1u8; n * h * w];
    for i in 0..h {
        for j in 0..w {
            if j >= 4 || i == 4 {
                valid[i * w + j] = 0; // image 0: padded on the right two columns and the bottom row
            }
        }
    }
    let valid = Tensor::from_vec(valid, (n, h, w), &Device::Cpu)?;
    let pad = valid.to_dtype(DType::F64)?.unsqueeze(1)?.broadcast_as((n, k, h, w))?;
    let z1 = random_logits((n, k, h, w), 1)?;
    let z2 = ((&z1 * &pad)? + (random_logits((n, k, h, w), 2)? * (1.0 - &pad)?)?)?;
    for v in ALL {
        for eps in [0.0, 1e-6] {
            let c = cfg(v, eps, TvNormalize::Mean);
            let (a, b) = (Var::from_tensor(&z1)?, Var::from_tensor(&z2)?);
            let (la, lb) = (tv_loss(a.as_tensor(), Some(&valid), &c)?, tv_loss(b.as_tensor(), Some(&valid), &c)?);
            assert_eq!(scalar(&la)?, scalar(&lb)?, "{v:?} eps {eps}: loss depends on padding");
            let ga = la.backward()?.get(&a).expect("grad").clone();
            let gb = lb.backward()?.get(&b).expect("grad").clone();
            let diff = ((&ga - &gb)? * &pad)?.abs()?.max_all()?.to_scalar::<f64>()?;
            assert_eq!(diff, 0.0, "{v:?} eps {eps}: valid gradients depend on padding");
            let at_pad = (&ga * (1.0 - &pad)?)?.abs()?.max_all()?.to_scalar::<f64>()?;
            assert_eq!(at_pad, 0.0, "{v:?}: padded pixels receive gradient");
        }
    }
    // The mean divides by K·ΣV: the same image without padding but cropped equals the padded one.
    let crop = z1.narrow(0, 0, 1)?.narrow(2, 0, 4)?.narrow(3, 0, 4)?;
    let c = cfg(TvVariant::A, 0.0, TvNormalize::Mean);
    let padded = scalar(&tv_loss(&z1.narrow(0, 0, 1)?, Some(&valid.narrow(0, 0, 1)?), &c)?)?;
    assert!((padded - scalar(&tv_loss(&crop, None, &c)?)?).abs() < 1e-15);
    Ok(())
}

/// a horizontal line of p = 1 spanning the full width has (near) zero along-structure penalty, while
/// variant A is positive; a vertical line likewise.
#[test]
fn curvilinear_penalty_vanishes_across_a_line() -> Result<()> {
    let (h, w) = (9, 12);
    for vertical in [false, true] {
        let labels: Vec<usize> =
            (0..h * w).map(|p| usize::from(if vertical { p % w == 5 } else { p / w == 4 })).collect();
        let p = one_hot(&labels, 2, h, w)?;
        let curv = TvConfig {
            curvilinear: CurvilinearConfig { enabled: true, fg_class: 1, rho: 2.0 },
            ..cfg(TvVariant::A, 0.0, TvNormalize::Mean)
        };
        let c = scalar(&tv_of_probs(&p, None, &curv)?)?;
        let a = scalar(&tv_of_probs(&p, None, &cfg(TvVariant::A, 0.0, TvNormalize::Mean))?)?;
        assert!(c.abs() < 1e-6 && a > 0.1, "vertical={vertical}: curvilinear {c}, A {a}");
    }
    // A blob is not a line: the penalty is positive there (it is not trivially zero).
    let blob: Vec<usize> =
        (0..h * w).map(|p| usize::from((p / w).abs_diff(4).pow(2) + (p % w).abs_diff(5).pow(2) <= 4)).collect();
    let curv =
        TvConfig { curvilinear: CurvilinearConfig { enabled: true, ..Default::default() }, ..Default::default() };
    assert!(scalar(&tv_of_probs(&one_hot(&blob, 2, h, w)?, None, &curv)?)? > 1e-3);
    Ok(())
}

/// Config keys, defaults, `deny_unknown_fields`, the `on` alias, warm-up and validation.
#[test]
fn config_defaults_aliases_and_warmup() -> Result<()> {
    let d = TvConfig::default();
    assert_eq!(
        (d.variant, d.normalize, d.apply_to, d.weight, d.warmup_frac),
        (TvVariant::A, TvNormalize::Mean, ApplyTo::Auto, 0.1, 0.0)
    );
    assert_eq!((d.eps(), TvConfig { variant: TvVariant::C, ..d }.eps()), (0.0, 1e-6));
    let parsed: TvConfig = toml::from_str("variant = \"C\"\non = \"unlabeled\"\nweight = 0.3\nwarmup_frac = 0.1\n[curvilinear]\nenabled = false\nrho = 1.5")
        .map_err(|e| core_seg::Error::Config(e.to_string()))?;
    assert_eq!((parsed.variant, parsed.apply_to, parsed.curvilinear.rho), (TvVariant::C, ApplyTo::UnlabeledWeak, 1.5));
    assert!(toml::from_str::<TvConfig>("wieght = 0.3").is_err(), "unknown keys must be rejected");
    assert_eq!(parsed.weight_at(0, 100), 0.0);
    assert!((parsed.weight_at(5, 100) - 0.15).abs() < 1e-12);
    assert_eq!(parsed.weight_at(50, 100), 0.3);
    assert_eq!(d.weight_at(0, 100), 0.1);
    assert!(TvConfig { weight: -1.0, ..d }.validate().is_err());
    assert!(TvConfig { eps: Some(-1.0), ..d }.validate().is_err());
    let bad_curv =
        TvConfig { variant: TvVariant::C, curvilinear: CurvilinearConfig { enabled: true, ..Default::default() }, ..d };
    assert!(bad_curv.validate().is_err());
    // Wrong valid-map shape is an error, not a panic.
    let z = random_logits((1, 2, 3, 3), 3)?;
    assert!(tv_loss(&z, Some(&Tensor::ones((1, 3, 4), DType::U8, &Device::Cpu)?), &d).is_err());
    Ok(())
}

/// The fused kernel's value and gradient equal the composite's to 1e-12 in f64 (dense and
/// padded, ε = 0 and 1e-6, mean and sum), and it also passes the constant-map and step-edge checks.
#[test]
fn fused_kernel_matches_composite() -> Result<()> {
    let (n, k, h, w) = (2, 4, 7, 6);
    let mut valid = vec![1u8; n * h * w];
    valid[n * h * w - 3..].fill(0);
    valid[5] = 0;
    let valid = Tensor::from_vec(valid, (n, h, w), &Device::Cpu)?;
    let mut worst = (0f64, 0f64);
    for seed in [1, 2] {
        let z = Var::from_tensor(&random_logits((n, k, h, w), seed)?)?;
        for eps in [0.0, 1e-6] {
            for normalize in [TvNormalize::Mean, TvNormalize::Sum] {
                for v in [None, Some(&valid)] {
                    let c = cfg(TvVariant::A, eps, normalize);
                    let lc = tv_loss(z.as_tensor(), v, &c)?;
                    let lf = tv_loss_fused(z.as_tensor(), v, &c)?;
                    let gc = lc.backward()?.get(&z).expect("g").clone();
                    let gf = lf.backward()?.get(&z).expect("g").clone();
                    let dv = (scalar(&lc)? - scalar(&lf)?).abs() / scalar(&lc)?;
                    let dg = (gc - gf)?.abs()?.max_all()?.to_scalar::<f64>()?;
                    worst = (worst.0.max(dv), worst.1.max(dg));
                }
            }
        }
    }
    println!("fused vs composite (f64): max rel value diff {:.3e}, max grad diff {:.3e}", worst.0, worst.1);
    assert!(worst.0 < 1e-12 && worst.1 < 1e-12, "{worst:?}");
    // f32 input works and agrees to f32 precision.
    let z32 = random_logits((n, k, h, w), 3)?.to_dtype(DType::F32)?;
    let c = cfg(TvVariant::A, 0.0, TvNormalize::Mean);
    let (a, b) = (scalar(&tv_loss(&z32, Some(&valid), &c)?)?, scalar(&tv_loss_fused(&z32, Some(&valid), &c)?)?);
    assert!((a - b).abs() < 1e-5 * a, "{a} vs {b}");
    // Hand values and constant map through the fused path.
    let step: Vec<usize> = (0..20).map(|p| if p % 5 < 2 { 0 } else { 2 }).collect();
    let logits = (one_hot(&step, 3, 4, 5)? * 40.0)?;
    let raw = scalar(&tv_loss_fused(&logits, None, &cfg(TvVariant::A, 0.0, TvNormalize::Sum))?)?;
    assert!((raw - 8.0).abs() < 1e-12, "{raw}");
    let zc = Var::from_tensor(
        &Tensor::from_vec(vec![0.5f64, -1.0, 2.0], (1, 3, 1, 1), &Device::Cpu)?
            .broadcast_as((2, 3, 4, 5))?
            .contiguous()?,
    )?;
    let l = tv_loss_fused(zc.as_tensor(), None, &cfg(TvVariant::A, 0.0, TvNormalize::Mean))?;
    assert_eq!(scalar(&l)?, 0.0);
    assert_eq!(l.backward()?.get(&zc).expect("g").abs()?.max_all()?.to_scalar::<f64>()?, 0.0);
    // Not applicable → error, not a silent fallback.
    assert!(tv_loss_fused(&z32, None, &cfg(TvVariant::B, 1e-6, TvNormalize::Mean)).is_err());
    Ok(())
}
