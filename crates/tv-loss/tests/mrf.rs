//! MRF post-processing baseline.

use candle_core::{Device, Tensor};
use core_seg::Result;
use tv_loss::{mrf_labels, mrf_smooth, rgb_from_normalized, select_beta, MrfConfig, MrfSolver};

/// 5×5, K = 2: P = (0.9, 0.1) everywhere except the centre (0.4, 0.6).
fn isolated_centre() -> Result<Tensor> {
    let mut v = vec![0.9f64; 25];
    v.extend(vec![0.1f64; 25]);
    v[12] = 0.4;
    v[25 + 12] = 0.6;
    Ok(Tensor::from_vec(v, (1, 2, 5, 5), &Device::Cpu)?)
}

fn cfg(solver: MrfSolver, beta: f64) -> MrfConfig {
    MrfConfig { solver, beta, contrast: false, ..Default::default() }
}

fn labels(p: &Tensor, c: &MrfConfig, image: Option<&Tensor>) -> Result<Vec<u32>> {
    Ok(mrf_labels(p, image, c)?.flatten_all()?.to_vec1()?)
}

#[test]
fn beta_zero_returns_argmax_and_unary_only_marginals() -> Result<()> {
    let p = isolated_centre()?;
    let argmax: Vec<u32> = p.argmax(1)?.flatten_all()?.to_vec1()?;
    assert_eq!(argmax[12], 1);
    for solver in [MrfSolver::MeanField, MrfSolver::Icm] {
        assert_eq!(labels(&p, &cfg(solver, 0.0), None)?, argmax, "{solver:?}");
    }
    // Mean field with β = 0 keeps the unary distribution itself.
    let q = mrf_smooth(&p, None, &cfg(MrfSolver::MeanField, 0.0))?;
    assert!((q - &p)?.abs()?.max_all()?.to_scalar::<f64>()? < 1e-12);
    Ok(())
}

#[test]
fn beta_four_removes_the_isolated_pixel_with_both_solvers() -> Result<()> {
    let p = isolated_centre()?;
    for solver in [MrfSolver::MeanField, MrfSolver::Icm] {
        assert_eq!(labels(&p, &cfg(solver, 4.0), None)?, vec![0u32; 25], "{solver:?}");
    }
    let q = mrf_smooth(&p, None, &cfg(MrfSolver::MeanField, 4.0))?;
    let sums: Vec<f64> = q.sum(1)?.flatten_all()?.to_vec1()?;
    assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-12), "{sums:?}");
    // ICM returns a one-hot map.
    let icm = mrf_smooth(&p, None, &cfg(MrfSolver::Icm, 4.0))?;
    assert_eq!(icm.narrow(1, 0, 1)?.sum_all()?.to_scalar::<f64>()?, 25.0);
    Ok(())
}

#[test]
fn constant_map_is_unchanged() -> Result<()> {
    let p = Tensor::from_vec(vec![0.2f32, 0.5, 0.3], (1, 3, 1, 1), &Device::Cpu)?
        .broadcast_as((2, 3, 4, 6))?
        .contiguous()?;
    for solver in [MrfSolver::MeanField, MrfSolver::Icm] {
        assert_eq!(labels(&p, &cfg(solver, 2.0), None)?, vec![1u32; 48], "{solver:?}");
    }
    Ok(())
}

/// With contrast weights an image edge lowers the smoothing across it: a thin column that is also an image edge
/// survives a β at which it disappears without contrast.
#[test]
fn contrast_weights_preserve_image_edges() -> Result<()> {
    let (h, w) = (6, 6);
    let mut p = vec![0.8f64; h * w];
    p.extend(vec![0.2f64; h * w]);
    let mut img = vec![0.2f64; 3 * h * w];
    for i in 0..h {
        p[i * w + 2] = 0.3;
        p[h * w + i * w + 2] = 0.7;
        for c in 0..3 {
            img[c * h * w + i * w + 2] = 0.9;
        }
    }
    let p = Tensor::from_vec(p, (1, 2, h, w), &Device::Cpu)?;
    let img = Tensor::from_vec(img, (1, 3, h, w), &Device::Cpu)?;
    for solver in [MrfSolver::MeanField, MrfSolver::Icm] {
        let plain = labels(&p, &cfg(solver, 1.0), None)?;
        assert_eq!(plain[2], 0, "{solver:?}: without contrast the column is smoothed away");
        let c = MrfConfig { contrast: true, ..cfg(solver, 1.0) };
        let with = labels(&p, &c, Some(&img))?;
        assert!((0..h).all(|i| with[i * w + 2] == 1), "{solver:?}: the image edge should keep the column");
    }
    // contrast = true without an image is a config error, not a panic.
    assert!(mrf_smooth(&p, None, &MrfConfig { contrast: true, ..Default::default() }).is_err());
    Ok(())
}

#[test]
fn beta_is_selected_from_the_grid() -> Result<()> {
    let c = MrfConfig::default();
    let (beta, score) = select_beta(&c, |b| Ok(-(b - 1.0_f64).powi(2)))?;
    assert_eq!((beta, score), (1.0, 0.0));
    assert!(select_beta(&MrfConfig { beta_grid: vec![], ..c }, |_| Ok(0.0)).is_err());
    Ok(())
}

#[test]
fn normalised_input_is_mapped_back_to_rgb() -> Result<()> {
    let (mean, std) = ([0.485f32, 0.456, 0.406], [0.229f32, 0.224, 0.225]);
    let rgb = Tensor::from_vec(vec![0.0f32, 0.5, 1.0, 0.25, 0.75, 0.1], (1, 3, 1, 2), &Device::Cpu)?;
    let m = Tensor::from_vec(mean.to_vec(), (1, 3, 1, 1), &Device::Cpu)?;
    let s = Tensor::from_vec(std.to_vec(), (1, 3, 1, 1), &Device::Cpu)?;
    let normalised = rgb.broadcast_sub(&m)?.broadcast_div(&s)?;
    let back = rgb_from_normalized(&normalised, mean, std)?;
    assert!((back - rgb)?.abs()?.max_all()?.to_scalar::<f32>()? < 1e-6);
    Ok(())
}
