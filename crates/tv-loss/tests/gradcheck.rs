//! the gradient of `λ·TV∘softmax` against f64 central finite differences (h = 1e-6) on random
//! `[2,3,5,5]` logits, for A, B, C (ε = 1e-6), A with ε = 0, with and without a padded region.

use candle_core::{DType, Device, Tensor, Var};
use core_seg::Result;

mod common;
use common::values;
use tv_loss::curvilinear::{along_structure, central_gradient, structure_directions};
use tv_loss::{tv_loss, TvConfig, TvKernel, TvNormalize, TvVariant};

/// `(max |g_an − g_fd| / max |g_an|, max_i |g_an − g_fd| / max(|g_an,i|, |g_fd,i|, 1e-2·max|g_an|))`: the
/// floor keeps components ~1e-4 of the largest, where the FD round-off (~1e-16·|f|/h) dominates, out of the ratio.
fn fd_errors(cfg: &TvConfig, lambda: f64, valid: Option<&Tensor>, seed: u64) -> Result<(f64, f64)> {
    let shape = (2, 3, 5, 5);
    let z0 = values(150, seed);
    let z = Var::from_tensor(&Tensor::from_vec(z0.clone(), shape, &Device::Cpu)?)?;
    let loss = (tv_loss(z.as_tensor(), valid, cfg)? * lambda)?;
    let g: Vec<f64> = loss.backward()?.get(&z).expect("grad").flatten_all()?.to_vec1()?;
    let f = |zz: &[f64]| -> Result<f64> {
        let t = Tensor::from_vec(zz.to_vec(), shape, &Device::Cpu)?;
        Ok((tv_loss(&t, valid, cfg)? * lambda)?.to_scalar::<f64>()?)
    };
    let h = 1e-6;
    let gmax = g.iter().fold(0f64, |m, x| m.max(x.abs()));
    assert!(gmax > 1e-4, "degenerate test: gradient {gmax}");
    let (mut abs_err, mut rel_err) = (0f64, 0f64);
    for i in 0..z0.len() {
        let (mut zp, mut zm) = (z0.clone(), z0.clone());
        zp[i] += h;
        zm[i] -= h;
        let fd = (f(&zp)? - f(&zm)?) / (2.0 * h);
        let e = (fd - g[i]).abs();
        abs_err = abs_err.max(e);
        rel_err = rel_err.max(e / fd.abs().max(g[i].abs()).max(1e-2 * gmax));
    }
    Ok((abs_err / gmax, rel_err))
}

#[test]
fn gradients_match_finite_differences_in_f64() -> Result<()> {
    let mut padded = vec![1u8; 50];
    padded[4] = 0;
    padded[9] = 0;
    padded[45..50].fill(0);
    let padded = Tensor::from_vec(padded, (2, 5, 5), &Device::Cpu)?;
    let cases = [
        (TvVariant::A, 1e-6, TvNormalize::Mean),
        (TvVariant::A, 0.0, TvNormalize::Mean),
        (TvVariant::A, 1e-6, TvNormalize::Sum),
        (TvVariant::B, 1e-6, TvNormalize::Mean),
        (TvVariant::C, 1e-6, TvNormalize::Mean),
        (TvVariant::B, 1e-3, TvNormalize::Sum),
        (TvVariant::C, 0.0, TvNormalize::Sum),
    ];
    for (variant, eps, normalize) in cases {
        for (valid, tag) in [(None, "dense"), (Some(&padded), "padded")] {
            let kernels: &[TvKernel] =
                if variant == TvVariant::A { &[TvKernel::Composite, TvKernel::Fused] } else { &[TvKernel::Composite] };
            for &kernel in kernels {
                let cfg = TvConfig { variant, eps: Some(eps), normalize, kernel, ..Default::default() };
                let (norm_err, rel_err) = fd_errors(&cfg, 0.7, valid, 3)?;
                println!(
                "{variant:?} {kernel:?} eps={eps:e} {normalize:?} {tag}: max rel err {rel_err:.3e} (normwise {norm_err:.3e})"
            );
                assert!(
                    rel_err < 1e-6 && norm_err < 1e-7,
                    "{variant:?} {kernel:?} eps {eps} {tag}: max relative error {rel_err:e}, normwise {norm_err:e}"
                );
            }
        }
    }
    Ok(())
}

/// The curvilinear term differentiates through ∇p with the direction field `v1` held fixed (stop-gradient by
/// design): its autograd gradient equals finite differences of `along_structure` with `v1` frozen.
#[test]
fn curvilinear_gradient_matches_finite_differences_with_frozen_directions() -> Result<()> {
    let shape = (2, 1, 5, 6);
    let dev = Device::Cpu;
    let p0: Vec<f64> = values(60, 9).iter().map(|x| 1.0 / (1.0 + (-x).exp())).collect();
    let mut valid = vec![1u8; 60];
    valid[59] = 0;
    let v = Tensor::from_vec(valid, (2, 1, 5, 6), &dev)?.to_dtype(DType::F64)?;
    let p = Tensor::from_vec(p0.clone(), shape, &dev)?;
    let (gx, gy, w) = central_gradient(&p, &v)?;
    let (cx, cy) = structure_directions(&(gx * &w)?, &(gy * &w)?, 1.0)?;
    let var = Var::from_tensor(&p)?;
    let l = (along_structure(var.as_tensor(), &v, (&cx, &cy), 1e-6)? * 0.7)?;
    let g: Vec<f64> = l.backward()?.get(&var).expect("g").flatten_all()?.to_vec1()?;
    let f = |pp: &[f64]| -> Result<f64> {
        let t = Tensor::from_vec(pp.to_vec(), shape, &dev)?;
        Ok((along_structure(&t, &v, (&cx, &cy), 1e-6)? * 0.7)?.to_scalar()?)
    };
    let gmax = g.iter().fold(0f64, |m, x| m.max(x.abs()));
    let mut rel = 0f64;
    for i in 0..p0.len() {
        let (mut a, mut b) = (p0.clone(), p0.clone());
        a[i] += 1e-6;
        b[i] -= 1e-6;
        let fd = (f(&a)? - f(&b)?) / 2e-6;
        rel = rel.max((fd - g[i]).abs() / fd.abs().max(g[i].abs()).max(1e-2 * gmax));
    }
    println!("curvilinear (frozen v1): max rel err {rel:.3e}");
    assert!(gmax > 1e-3 && rel < 1e-6, "curvilinear FD error {rel} (|g| {gmax})");
    Ok(())
}
