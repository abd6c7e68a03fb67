//! Feature aggregation and hand-computed values.

mod support;

use aux_mim::aggregation::feature_aggregation;
use aux_mim::FaMode;
use candle_core::{Device, Tensor, Var};
use core_seg::rng::SegRng;
use core_seg::Result;
use support::{scalar, vec_f64};

/// Features `[1, C, 1, P]` from per-position vectors (C-major layout built here).
fn feats(vs: &[Vec<f64>]) -> Result<Tensor> {
    let (p, c) = (vs.len(), vs[0].len());
    let mut data = vec![0f64; c * p];
    for (j, v) in vs.iter().enumerate() {
        for (k, x) in v.iter().enumerate() {
            data[k * p + j] = *x;
        }
    }
    Ok(Tensor::from_vec(data, (1, c, 1, p), &Device::Cpu)?)
}

fn w(v: &[f64]) -> Result<Tensor> {
    Ok(Tensor::from_vec(v.to_vec(), (1, 1, v.len()), &Device::Cpu)?)
}

/// 0 when every masked feature is a positive multiple of μV; 2 when it is −μV (both options).
#[test]
fn zero_when_aligned_two_when_opposite() -> Result<()> {
    let (v1, v2) = (vec![1.0, 2.0, -0.5], vec![3.0, 0.0, 1.5]);
    let mu: Vec<f64> = v1.iter().zip(&v2).map(|(a, b)| (a + b) / 2.0).collect();
    let scale = |s: f64| mu.iter().map(|x| x * s).collect::<Vec<_>>();
    let (vis, msk) = (w(&[1.0, 1.0, 0.0, 0.0])?, w(&[0.0, 0.0, 1.0, 1.0])?);
    for mode in [FaMode::PixelProto, FaMode::ProtoProto] {
        let f = feats(&[v1.clone(), v2.clone(), scale(2.0), scale(0.3)])?;
        let l = scalar(&feature_aggregation(&f, &vis, &msk, mode, true, None)?)?;
        assert!(l.abs() < 1e-12, "{mode:?}: {l}");
        let f = feats(&[v1.clone(), v2.clone(), scale(-1.0), scale(-4.0)])?;
        let l = scalar(&feature_aggregation(&f, &vis, &msk, mode, true, None)?)?;
        assert!((l - 2.0).abs() < 1e-12, "{mode:?}: {l}");
    }
    Ok(())
}

/// Hand example, C = 2: visible (1,0), (1,0); masked (0,1), (1,1).
/// B: ((1 − 0) + (1 − 1/√2)) / 2 = 0.64644661;  A: μM = (0.5, 1), 1 − 0.5/√1.25 = 0.55278640.
/// Soft weights (Msk↓ = 0.5, 1): B = (0.5·1 + 1·(1 − 1/√2)) / 1.5.
#[test]
fn hand_computed_values() -> Result<()> {
    let f = feats(&[vec![1.0, 0.0], vec![1.0, 0.0], vec![0.0, 1.0], vec![1.0, 1.0]])?;
    let (vis, msk) = (w(&[1.0, 1.0, 0.0, 0.0])?, w(&[0.0, 0.0, 1.0, 1.0])?);
    let b = scalar(&feature_aggregation(&f, &vis, &msk, FaMode::PixelProto, true, None)?)?;
    assert!((b - (1.0 - 0.5 / 2f64.sqrt())).abs() < 1e-12, "{b}");
    let a = scalar(&feature_aggregation(&f, &vis, &msk, FaMode::ProtoProto, true, None)?)?;
    assert!((a - (1.0 - 0.5 / 1.25f64.sqrt())).abs() < 1e-12, "{a}");
    let soft = scalar(&feature_aggregation(&f, &vis, &w(&[0.0, 0.0, 0.5, 1.0])?, FaMode::PixelProto, true, None)?)?;
    assert!((soft - (0.5 + (1.0 - 0.5f64.sqrt())) / 1.5).abs() < 1e-12, "{soft}");
    // μV from another pass (clean_pass): visible (0,1) there aligns the first masked feature: (0 + 1 − 1/√2)/2.
    let clean = feats(&[vec![0.0, 1.0], vec![0.0, 1.0], vec![9.0, 9.0], vec![9.0, 9.0]])?;
    let c = scalar(&feature_aggregation(&f, &vis, &msk, FaMode::PixelProto, true, Some(&clean))?)?;
    assert!((c - (1.0 - 1.0 / 2f64.sqrt()) / 2.0).abs() < 1e-12, "{c}");
    // A sample without visible weight carries no term; no masked weight → 0.
    let z = scalar(&feature_aggregation(&f, &w(&[0.0; 4])?, &msk, FaMode::PixelProto, true, None)?)?;
    assert_eq!(z, 0.0);
    Ok(())
}

/// With binary, patch-aligned masks, option B's gradient w.r.t. the visible-position features is exactly 0
/// (stop-gradient on μV) while masked positions get a gradient; option A gives non-zero gradients on both sides.
/// Zero feature vectors (ReLU outputs) keep the gradient finite.
#[test]
fn gradient_reaches_visible_prototype_only_in_option_a() -> Result<()> {
    let mut rng = SegRng::new(5);
    let vs: Vec<Vec<f64>> = (0..6).map(|_| (0..4).map(|_| rng.normal()).collect()).collect();
    let mut vs0 = vs.clone();
    vs0[4] = vec![0.0; 4]; // a zero masked feature
    let (vis, msk) = (w(&[1.0, 1.0, 1.0, 0.0, 0.0, 0.0])?, w(&[0.0, 0.0, 0.0, 1.0, 1.0, 1.0])?);
    for (mode, vis_zero) in [(FaMode::PixelProto, true), (FaMode::ProtoProto, false)] {
        let f = Var::from_tensor(&feats(&vs0)?)?;
        let l = feature_aggregation(f.as_tensor(), &vis, &msk, mode, true, None)?;
        let g = vec_f64(l.backward()?.get(f.as_tensor()).expect("grad"))?;
        assert!(g.iter().all(|x| x.is_finite()));
        // g is [C=4, P=6] flattened: position j of channel k at k·6 + j.
        let at = |j: usize| (0..4).map(|k| g[k * 6 + j].abs()).sum::<f64>();
        for j in 0..3 {
            if vis_zero {
                assert_eq!(at(j), 0.0, "{mode:?}: visible position {j}");
            } else {
                assert!(at(j) > 0.0, "{mode:?}: visible position {j}");
            }
        }
        assert!(at(3) > 0.0 && at(5) > 0.0, "{mode:?}: masked positions");
    }
    Ok(())
}

/// f64 finite differences of both options (option B without stop-gradient, so that FD and autograd agree),
/// with soft weights over two samples.
#[test]
fn feature_aggregation_gradient_matches_finite_differences() -> Result<()> {
    let dev = Device::Cpu;
    let mut rng = SegRng::new(8);
    let (n, c, h, wd) = (2usize, 3usize, 2usize, 3usize);
    let base: Vec<f64> = (0..n * c * h * wd).map(|_| rng.normal()).collect();
    let vis = Tensor::from_vec(vec![1.0, 0.5, 0.0, 0.25, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.75], (n, h, wd), &dev)?;
    let msk = Tensor::from_vec(vec![0.0, 0.5, 1.0, 0.75, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.5, 0.25], (n, h, wd), &dev)?;
    for mode in [FaMode::PixelProto, FaMode::ProtoProto] {
        let f = Var::from_tensor(&Tensor::from_vec(base.clone(), (n, c, h, wd), &dev)?)?;
        let l = feature_aggregation(f.as_tensor(), &vis, &msk, mode, false, None)?;
        let g = vec_f64(l.backward()?.get(f.as_tensor()).expect("grad"))?;
        let eps = 1e-6;
        for k in 0..base.len() {
            let eval = |d: f64| -> Result<f64> {
                let mut v = base.clone();
                v[k] += d;
                let t = Tensor::from_vec(v, (n, c, h, wd), &dev)?;
                scalar(&feature_aggregation(&t, &vis, &msk, mode, false, None)?)
            };
            let fd = (eval(eps)? - eval(-eps)?) / (2.0 * eps);
            assert!((fd - g[k]).abs() < 1e-6 * (1.0 + fd.abs()), "{mode:?}[{k}]: fd {fd} vs {}", g[k]);
        }
    }
    Ok(())
}
