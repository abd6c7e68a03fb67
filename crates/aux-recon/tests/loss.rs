//! The loss: 0 when `x̂ = x`; with `x̂ = 0`, `x = 1` on valid pixels and arbitrary values on
//! padded ones, MSE = L1 = 1; padded pixels change nothing and get no gradient; the target gets no gradient;
//! `fgbg` and `fgonly` invariants with a hard foreground map; the foreground map itself.

mod support;

use candle_core::{DType, Device, Tensor, Var};
use core_seg::plugin::Pseudo;
use core_seg::Result;

use aux_recon::foreground;
use aux_recon::{compose, masked_rec_loss, psnr, FgSourceL, FgSourceU, ReconLoss};
use support::{scalar, tensor, vec_f64};

const SHAPE: [usize; 4] = [2, 3, 5, 6];

/// `[2,5,6]` valid map with the last column and the bottom row of the second image padded.
fn valid() -> Result<Tensor> {
    let mut v = vec![1f32; 2 * 5 * 6];
    for y in 0..5 {
        v[y * 6 + 5] = 0.0;
        v[30 + y * 6 + 5] = 0.0;
    }
    v[30 + 4 * 6..60].fill(0.0);
    Ok(Tensor::from_vec(v, (2, 5, 6), &Device::Cpu)?)
}

/// Where `valid` is 0, `a` is replaced by `b`.
fn on_padding(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let v = valid()?.unsqueeze(1)?.broadcast_as(a.shape())?.to_dtype(DType::U8)?;
    Ok(v.where_cond(a, b)?)
}

#[test]
fn zero_when_reconstruction_equals_target() -> Result<()> {
    let x = tensor(&SHAPE, 1, DType::F32)?;
    for kind in [ReconLoss::Mse, ReconLoss::L1] {
        assert_eq!(scalar(&masked_rec_loss(&x, &x, &valid()?, kind)?)?, 0.0);
    }
    Ok(())
}

#[test]
fn unit_error_on_valid_pixels_gives_one_whatever_the_padding() -> Result<()> {
    let x_hat = Tensor::zeros(&SHAPE, DType::F32, &Device::Cpu)?;
    let ones = Tensor::ones(&SHAPE, DType::F32, &Device::Cpu)?;
    for seed in [2, 3] {
        let x = on_padding(&ones, &(tensor(&SHAPE, seed, DType::F32)? * 100.0)?)?;
        for kind in [ReconLoss::Mse, ReconLoss::L1] {
            let l = scalar(&masked_rec_loss(&x_hat, &x, &valid()?, kind)?)?;
            assert!((l - 1.0).abs() < 1e-6, "{kind:?}: {l}");
        }
    }
    Ok(())
}

/// Changing a padded pixel's target (or prediction) leaves the loss bit-identical; padded pixels of `x̂` get
/// exactly zero gradient; the target, even as a variable, gets none.
#[test]
fn padded_pixels_are_ignored_and_the_target_gets_no_gradient() -> Result<()> {
    for kind in [ReconLoss::Mse, ReconLoss::L1] {
        let x_hat = Var::from_tensor(&tensor(&SHAPE, 4, DType::F32)?)?;
        let x = Var::from_tensor(&tensor(&SHAPE, 5, DType::F32)?)?;
        let l = masked_rec_loss(x_hat.as_tensor(), x.as_tensor(), &valid()?, kind)?;
        let x2 = on_padding(x.as_tensor(), &tensor(&SHAPE, 6, DType::F32)?)?;
        assert_eq!(scalar(&l)?, scalar(&masked_rec_loss(x_hat.as_tensor(), &x2, &valid()?, kind)?)?);
        let xh2 = on_padding(x_hat.as_tensor(), &tensor(&SHAPE, 7, DType::F32)?)?;
        assert_eq!(scalar(&l)?, scalar(&masked_rec_loss(&xh2, x.as_tensor(), &valid()?, kind)?)?);
        let grads = l.backward()?;
        assert!(grads.get(x.as_tensor()).is_none(), "the target must not receive a gradient");
        let g = grads.get(x_hat.as_tensor()).expect("x̂ gradient");
        let pad = valid()?.unsqueeze(1)?.broadcast_as(g.shape())?.eq(0f32)?;
        let on_pad = pad.to_dtype(DType::F32)?.mul(&g.abs()?)?.sum_all()?;
        assert_eq!(scalar(&on_pad)?, 0.0);
        assert!(scalar(&g.abs()?.sum_all()?)? > 0.0);
    }
    Ok(())
}

#[test]
fn empty_weight_gives_zero_and_a_finite_gradient() -> Result<()> {
    let x_hat = Var::from_tensor(&tensor(&SHAPE, 8, DType::F32)?)?;
    let w = Tensor::zeros((2, 5, 6), DType::F32, &Device::Cpu)?;
    let l = masked_rec_loss(x_hat.as_tensor(), &tensor(&SHAPE, 9, DType::F32)?, &w, ReconLoss::Mse)?;
    assert_eq!(scalar(&l)?, 0.0);
    let g = l.backward()?.get(x_hat.as_tensor()).map(vec_f64).transpose()?.unwrap_or_default();
    assert!(g.iter().all(|v| *v == 0.0));
    Ok(())
}

/// A hard `[2,5,6]` foreground map: a 2×3 block in each image.
fn hard_m() -> Result<Tensor> {
    let mut m = vec![0f32; 60];
    for b in 0..2 {
        for y in 1..3 {
            for x in 2..5 {
                m[b * 30 + y * 6 + x] = 1.0;
            }
        }
    }
    Ok(Tensor::from_vec(m, (2, 5, 6), &Device::Cpu)?)
}

/// `fgbg`: `∂L/∂x̂_o = 0` wherever m = 0 and `∂L/∂x̂_b = 0` wherever m = 1, and the object image's gradient does
/// not depend on the target's background pixels (the object branch sees no background pixel); m ≡ 1 gives x̂_o.
#[test]
fn fgbg_object_branch_sees_no_background_pixels() -> Result<()> {
    let m = hard_m()?;
    let obj = Var::from_tensor(&tensor(&SHAPE, 10, DType::F32)?)?;
    let bg = Var::from_tensor(&tensor(&SHAPE, 11, DType::F32)?)?;
    let x = tensor(&SHAPE, 12, DType::F32)?;
    let grads_for = |target: &Tensor| -> Result<(Vec<f64>, Vec<f64>)> {
        let x_hat = compose(&m, obj.as_tensor(), bg.as_tensor())?;
        let g = masked_rec_loss(&x_hat, target, &valid()?, ReconLoss::Mse)?.backward()?;
        Ok((vec_f64(g.get(obj.as_tensor()).expect("obj"))?, vec_f64(g.get(bg.as_tensor()).expect("bg"))?))
    };
    let (g_o, g_b) = grads_for(&x)?;
    let m3 = vec_f64(&m.unsqueeze(1)?.broadcast_as(&SHAPE)?)?;
    for i in 0..g_o.len() {
        if m3[i] == 0.0 {
            assert_eq!(g_o[i], 0.0, "object gradient at a background pixel {i}");
        } else {
            assert_eq!(g_b[i], 0.0, "background gradient at an object pixel {i}");
        }
    }
    // Change every background pixel of the target: the object branch's gradient is unchanged.
    let m_b = m.unsqueeze(1)?.broadcast_as(&SHAPE)?.to_dtype(DType::U8)?;
    let x_bg_changed = m_b.where_cond(&x, &(tensor(&SHAPE, 13, DType::F32)? * 5.0)?)?;
    let (g_o2, g_b2) = grads_for(&x_bg_changed)?;
    assert_eq!(g_o, g_o2);
    assert_ne!(g_b, g_b2);
    let ones = Tensor::ones((2, 5, 6), DType::F32, &Device::Cpu)?;
    assert_eq!(vec_f64(&compose(&ones, obj.as_tensor(), bg.as_tensor())?)?, vec_f64(obj.as_tensor())?);
    Ok(())
}

/// `fgonly` (weight `V·m`): background target pixels do not change the loss; with m ≡ 1 it equals `plain`.
#[test]
fn fgonly_ignores_background_and_equals_plain_for_m_one() -> Result<()> {
    let x_hat = tensor(&SHAPE, 14, DType::F32)?;
    let x = tensor(&SHAPE, 15, DType::F32)?;
    let m = hard_m()?;
    let w = (valid()? * &m)?;
    let l = scalar(&masked_rec_loss(&x_hat, &x, &w, ReconLoss::Mse)?)?;
    let m_b = m.unsqueeze(1)?.broadcast_as(&SHAPE)?.to_dtype(DType::U8)?;
    let x2 = m_b.where_cond(&x, &tensor(&SHAPE, 16, DType::F32)?)?;
    assert_eq!(l, scalar(&masked_rec_loss(&x_hat, &x2, &w, ReconLoss::Mse)?)?);
    let plain = scalar(&masked_rec_loss(&x_hat, &x, &valid()?, ReconLoss::Mse)?)?;
    let w1 = (valid()? * Tensor::ones((2, 5, 6), DType::F32, &Device::Cpu)?)?;
    assert_eq!(plain, scalar(&masked_rec_loss(&x_hat, &x, &w1, ReconLoss::Mse)?)?);
    Ok(())
}

/// The foreground map: ground truth on labelled pixels, the soft `1 − P_0` at 255; confident pseudo-labels on
/// unlabelled pixels, soft elsewhere; `soft` everywhere on request.
#[test]
fn foreground_map_from_labels_pseudo_labels_and_soft_values() -> Result<()> {
    let dev = Device::Cpu;
    // 1 image, 1×4 pixels, 3 classes; pixel logits give P_0 = 0.2, 0.5, 0.9, 1/3.
    let p0 = [0.2f64, 0.5, 0.9, 1.0 / 3.0];
    let mut z = vec![0f64; 12];
    for (i, &p) in p0.iter().enumerate() {
        z[i] = p.ln();
        z[4 + i] = ((1.0 - p) / 2.0).ln();
        z[8 + i] = ((1.0 - p) / 2.0).ln();
    }
    let logits = Tensor::from_vec(z, (1, 3, 1, 4), &dev)?;
    let fg = [1u32, 2];
    let soft: Vec<f64> = p0.iter().map(|p| 1.0 - p).collect();
    let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6);
    let s = vec_f64(&foreground::soft(&logits, &fg)?)?;
    assert!(close(&s, &soft), "{s:?}");
    let mask = Tensor::from_vec(vec![0u32, 2, 255, 1], (1, 1, 4), &dev)?;
    let l = vec_f64(&foreground::labeled(&mask, &logits, &fg, FgSourceL::Gt)?)?;
    assert!(close(&l, &[0.0, 1.0, soft[2], 1.0]), "{l:?}");
    assert!(close(&vec_f64(&foreground::labeled(&mask, &logits, &fg, FgSourceL::Soft)?)?, &soft));
    let pseudo = Pseudo {
        label: Tensor::from_vec(vec![0u32, 1, 0, 2], (1, 1, 4), &dev)?,
        conf: Tensor::from_vec(vec![0.99f32, 0.97, 0.5, 0.2], (1, 1, 4), &dev)?,
        ignore: Tensor::zeros((1, 1, 4), DType::U32, &dev)?,
    };
    let u = vec_f64(&foreground::unlabeled(&pseudo, &logits, &fg, 0.95, FgSourceU::Pseudo)?)?;
    assert!(close(&u, &[0.0, 1.0, soft[2], soft[3]]), "{u:?}");
    let u0 = vec_f64(&foreground::unlabeled(&pseudo, &logits, &fg, 0.0, FgSourceU::Pseudo)?)?;
    assert_eq!(u0, vec![0.0, 1.0, 0.0, 1.0]);
    assert!(close(&vec_f64(&foreground::unlabeled(&pseudo, &logits, &fg, 0.0, FgSourceU::Soft)?)?, &soft));
    Ok(())
}

#[test]
fn psnr_of_a_perfect_and_a_unit_error_reconstruction() -> Result<()> {
    let x = tensor(&SHAPE, 17, DType::F32)?.affine(0.1, 0.0)?;
    assert!(psnr(&x, &x, &valid()?)? > 100.0);
    // An error of 0.1/std on every channel is 0.1 in [0, 1] units → PSNR 20 dB (no clipping at these values).
    let std = Tensor::from_vec(aux_recon::loss::IMAGENET_STD.to_vec(), (1, 3, 1, 1), &Device::Cpu)?;
    let off = (x.to_dtype(DType::F64)?
        + Tensor::ones(&SHAPE, DType::F64, &Device::Cpu)?.broadcast_div(&std)?.affine(0.1, 0.0)?)?;
    let p = psnr(&off.to_dtype(DType::F32)?, &x, &valid()?)?;
    assert!((p - 20.0).abs() < 1e-3, "{p}");
    Ok(())
}
