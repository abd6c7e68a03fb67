//! Patch masks.

use aux_mim::mask::{exact_count, patch_mask, pool_weights, sample_at_stride};
use aux_mim::{MaskConfig, MaskSampling};
use core_seg::rng::SegRng;
use core_seg::Result;

fn cfg(patch: usize, ratio: f64, sampling: MaskSampling) -> MaskConfig {
    MaskConfig { patch, ratio, sampling, per_class: false }
}

/// Shape [B,S,S], values {0,1}, constant on each P×P cell (incl. the cropped last row/column of cells), exactly
/// round(r·n²) cells per image.
#[test]
fn exact_mask_is_cell_constant_with_exact_count() -> Result<()> {
    let mut rng = SegRng::new(1);
    for (s, p, r) in [(64usize, 16usize, 0.5f64), (70, 32, 0.3), (321, 32, 0.7), (33, 8, 0.0), (33, 8, 1.0)] {
        let b = 3;
        let m = patch_mask(&mut rng, b, (s, s), &cfg(p, r, MaskSampling::Exact))?;
        assert_eq!(m.len(), b * s * s);
        assert!(m.iter().all(|&v| v <= 1));
        let n = s.div_ceil(p);
        for i in 0..b {
            let img = &m[i * s * s..(i + 1) * s * s];
            let mut masked_cells = 0;
            for cy in 0..n {
                for cx in 0..n {
                    let v = img[(cy * p) * s + cx * p];
                    for y in cy * p..((cy + 1) * p).min(s) {
                        for x in cx * p..((cx + 1) * p).min(s) {
                            assert_eq!(img[y * s + x], v, "cell ({cy},{cx}) not constant at S={s}, P={p}");
                        }
                    }
                    masked_cells += v as usize;
                }
            }
            assert_eq!(masked_cells, exact_count(n * n, r), "S={s} P={p} r={r}");
            assert_eq!(masked_cells, (r * (n * n) as f64).round() as usize);
        }
    }
    Ok(())
}

/// Bernoulli: the mean masked-cell ratio over 1,000 masks lies within 3 standard errors of r.
#[test]
fn bernoulli_mask_ratio_matches_r() -> Result<()> {
    let mut rng = SegRng::new(2);
    let (s, p) = (64, 16); // 16 cells per mask
    for r in [0.3, 0.5, 0.7] {
        let m = patch_mask(&mut rng, 1000, (s, s), &cfg(p, r, MaskSampling::Bernoulli))?;
        // Cell values via their top-left pixels.
        let mut ones = 0usize;
        let mut cells = 0usize;
        for i in 0..1000 {
            for cy in 0..4 {
                for cx in 0..4 {
                    ones += m[i * s * s + cy * p * s + cx * p] as usize;
                    cells += 1;
                }
            }
        }
        let mean = ones as f64 / cells as f64;
        let se = (r * (1.0 - r) / cells as f64).sqrt();
        assert!((mean - r).abs() < 3.0 * se, "r={r}: mean {mean}, se {se}");
        // The pixel ratio is the cell ratio here (S multiple of P).
        let px = m.iter().map(|&v| v as f64).sum::<f64>() / m.len() as f64;
        assert!((px - mean).abs() < 1e-12);
    }
    Ok(())
}

/// Same seed → same mask; different seed → different mask.
#[test]
fn same_seed_same_mask() -> Result<()> {
    let c = cfg(8, 0.5, MaskSampling::Exact);
    let a = patch_mask(&mut SegRng::new(5), 2, (32, 32), &c)?;
    let b = patch_mask(&mut SegRng::new(5), 2, (32, 32), &c)?;
    let d = patch_mask(&mut SegRng::new(6), 2, (32, 32), &c)?;
    assert_eq!(a, b);
    assert_ne!(a, d);
    Ok(())
}

/// Transfer to feature resolution: top-left sampling and 4×4 average pooling with zero padding.
#[test]
fn stride_sampling_and_pooling_by_hand() -> Result<()> {
    // 6×6 image, left 3 columns masked (P = 3).
    let mut m = vec![0u8; 36];
    for y in 0..6 {
        for x in 0..3 {
            m[y * 6 + x] = 1;
        }
    }
    // Stride 4 → 2×2 cells sampled at (0,0), (0,4), (4,0), (4,4).
    assert_eq!(sample_at_stride(&m, 1, (6, 6), (2, 2), 4), vec![1, 0, 1, 0]);
    // Pooled weights over the zero-padded 8×8 grid: cell (0,0) holds 4·3 = 12 masked px → 12/16; cell (0,1)
    // holds 0; cell (1,0) holds 2·3 = 6 → 6/16; cell (1,1) 0.
    let mf: Vec<f32> = m.iter().map(|&v| v as f32).collect();
    let w = pool_weights(&mf, 1, (6, 6), (2, 2), 4, false)?;
    assert_eq!(w, vec![0.75, 0.0, 0.375, 0.0]);
    assert_eq!(pool_weights(&mf, 1, (6, 6), (2, 2), 4, true)?, vec![1.0, 0.0, 0.0, 0.0]);
    assert!(pool_weights(&mf, 1, (6, 6), (1, 1), 4, false).is_err());
    Ok(())
}
