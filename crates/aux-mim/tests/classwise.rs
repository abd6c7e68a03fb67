//! Class-wise inputs, eligibility, caps and the masked L1 loss.

mod support;
use core_seg::testing as toy;

use aux_mim::classwise::{
    build_inputs, cap_samples, classwise_samples, masked_rec_loss, plain_samples, region_labels,
    weighted_without_replacement, Masks, Sample,
};
use aux_mim::{FaConfig, FaMode, MimConfig, MimMode, MimTerm, RecLoss, SemConfig, SemMode};
use candle_core::{DType, Device, Tensor, Var};
use core_seg::batch::{LabeledBatch, UnlabeledBatch};
use core_seg::model::DeepLabV3Plus;
use core_seg::nn::ParamStore;
use core_seg::plugin::StepCtx;
use core_seg::plugin::{AuxTerm, Pseudo};
use core_seg::rng::SegRng;
use core_seg::Result;
use support::{manual_step, scalar, vec_f64};

const S: usize = 8;

/// Image 0 (pseudo-labelled): classes 0/1/2 in vertical bands, a 255 pixel, a padded last column, low
/// confidence on one row. Image 1 (ground truth): classes 3 and 1.
fn two_images() -> (Vec<Vec<u32>>, Vec<Vec<u8>>, Vec<f32>) {
    let mut l0 = vec![0u32; S * S];
    let mut l1 = vec![3u32; S * S];
    let mut v0 = vec![1u8; S * S];
    let mut conf = vec![0.99f32; S * S];
    for y in 0..S {
        for x in 0..S {
            l0[y * S + x] = (x / 3) as u32; // 0,0,0,1,1,1,2,2
            if y >= 4 {
                l1[y * S + x] = 1;
            }
        }
        v0[y * S + S - 1] = 0;
    }
    l0[2 * S + 1] = 255;
    l1[5 * S + 5] = 255;
    for c in conf.iter_mut().skip(6 * S).take(S) {
        *c = 0.5;
    }
    let r0 = region_labels(&l0, &v0, Some((&conf, 0.95)));
    let r1 = region_labels(&l1, &[1u8; S * S], None);
    (vec![r0, r1], vec![v0, vec![1u8; S * S]], conf)
}

/// X̃_n is 0 (all channels) outside Vis_n and x_{b(n)} on Vis_n; Vis ∩ Msk = ∅, Vis ∪ Msk = R;
/// classes of one image are disjoint; 255, padded and unconfident pixels are in no region.
#[test]
fn classwise_input_is_zero_outside_visible_region() -> Result<()> {
    let (regions, _valid, _) = two_images();
    // Checkerboard of 2×2 cells, shared by all classes of an image.
    let m: Vec<u8> = (0..S * S).map(|p| (((p / S) / 2 + (p % S) / 2) % 2) as u8).collect();
    let masks = vec![m.clone(), m.clone()];
    let mut rng = SegRng::new(0);
    let samples = classwise_samples(&mut rng, &regions, (S, S), Masks::Shared(&masks), 10, 100)?;
    let classes: Vec<(usize, Option<u32>)> = samples.iter().map(|s| (s.row, s.class)).collect();
    assert_eq!(classes, vec![(0, Some(0)), (0, Some(1)), (0, Some(2)), (1, Some(1)), (1, Some(3))]);
    // Excluded pixels.
    assert_eq!(regions[0][2 * S + 1], 255);
    assert!((0..S).all(|y| regions[0][y * S + S - 1] == 255 && regions[0][6 * S + y] == 255));
    assert_eq!(regions[1][5 * S + 5], 255);

    let img: Vec<f32> = (0..2 * 3 * S * S).map(|i| 1.0 + (i % 7) as f32).collect();
    let images = Tensor::from_vec(img, (2, 3, S, S), &Device::Cpu)?;
    let (xt, target, vis, msk) = build_inputs(&images, &samples)?;
    assert_eq!(xt.dims(), &[5, 3, S, S]);
    let xt = vec_f64(&xt)?;
    let tg = vec_f64(&target)?;
    let (vis, msk) = (vec_f64(&vis)?, vec_f64(&msk)?);
    for (n, s) in samples.iter().enumerate() {
        let reg = &regions[s.row];
        for p in 0..S * S {
            let (v, k) = (vis[n * S * S + p], msk[n * S * S + p]);
            assert!(v * k == 0.0, "Vis ∩ Msk ≠ ∅");
            let in_r = reg[p] == s.class.expect("class");
            assert_eq!(v + k == 1.0, in_r, "Vis ∪ Msk ≠ R at {p}");
            for ch in 0..3 {
                let i = (n * 3 + ch) * S * S + p;
                if v == 1.0 {
                    assert_eq!(xt[i], tg[i]);
                    assert!(xt[i] != 0.0);
                } else {
                    assert_eq!(xt[i], 0.0);
                }
            }
        }
        // Disjoint from every other class of the same image.
        for (n2, s2) in samples.iter().enumerate() {
            if n2 != n && s2.row == s.row {
                assert!((0..S * S).all(|p| vis[n * S * S + p] + msk[n * S * S + p] == 0.0
                    || vis[n2 * S * S + p] + msk[n2 * S * S + p] == 0.0));
            }
        }
    }
    Ok(())
}

/// Hand example: X̂ = 0, x = 2, Msk = 4 pixels → 24/(12 + 1e-5) = 1.9999983; L2 gives 48/(12 + 1e-5).
#[test]
fn masked_l1_hand_example() -> Result<()> {
    let dev = Device::Cpu;
    let pred = Tensor::zeros((1, 3, 3, 3), DType::F64, &dev)?;
    let x = Tensor::full(2f64, (1, 3, 3, 3), &dev)?;
    let msk = Tensor::from_vec(vec![1f64, 1., 0., 1., 1., 0., 0., 0., 0.], (1, 3, 3), &dev)?;
    let l1 = scalar(&masked_rec_loss(&pred, &x, &msk, RecLoss::L1)?)?;
    assert!((l1 - 24.0 / (12.0 + 1e-5)).abs() < 1e-12, "{l1}");
    assert!((l1 - 1.9999983).abs() < 1e-7);
    let l2 = scalar(&masked_rec_loss(&pred, &x, &msk, RecLoss::L2)?)?;
    assert!((l2 - 48.0 / (12.0 + 1e-5)).abs() < 1e-12, "{l2}");
    Ok(())
}

/// changing X̂ outside Msk changes neither the loss nor its gradient (which is 0 there).
#[test]
fn masked_l1_ignores_pixels_outside_the_mask() -> Result<()> {
    let dev = Device::Cpu;
    let mut rng = SegRng::new(4);
    let rand = |rng: &mut SegRng, n: usize| -> Vec<f64> { (0..n).map(|_| rng.normal()).collect() };
    let x = Tensor::from_vec(rand(&mut rng, 2 * 3 * 16), (2, 3, 4, 4), &dev)?;
    let mv: Vec<f64> = (0..32).map(|i| ((i * 7) % 3 == 0) as u8 as f64).collect();
    let msk = Tensor::from_vec(mv.clone(), (2, 4, 4), &dev)?;
    let p1 = rand(&mut rng, 96);
    let mut p2 = p1.clone();
    for (i, v) in p2.iter_mut().enumerate() {
        let (n, p) = (i / 48, i % 16);
        if mv[n * 16 + p] == 0.0 {
            *v = 1e6 * (*v + 3.0); // arbitrary change outside Msk
        }
    }
    let run = |p: Vec<f64>| -> Result<(f64, Vec<f64>)> {
        let v = Var::from_tensor(&Tensor::from_vec(p, (2, 3, 4, 4), &dev)?)?;
        let l = masked_rec_loss(v.as_tensor(), &x, &msk, RecLoss::L1)?;
        let g = l.backward()?.get(v.as_tensor()).expect("grad").clone();
        Ok((scalar(&l)?, vec_f64(&g)?))
    };
    let (l1, g1) = run(p1)?;
    let (l2, g2) = run(p2)?;
    assert_eq!(l1, l2);
    assert_eq!(g1, g2);
    for (i, g) in g1.iter().enumerate() {
        let (n, p) = (i / 48, i % 16);
        if mv[n * 16 + p] == 0.0 {
            assert_eq!(*g, 0.0);
        } else {
            assert!(g.abs() > 0.0);
        }
    }
    Ok(())
}

/// empty visible or masked part → no sample; ≤ Kmax per image (∝ |R|); ≤ N_max per step.
#[test]
fn eligibility_and_caps() -> Result<()> {
    // Classes: 1 = one fully masked cell, 2 = one fully visible cell, 3/4/5 straddle cells. P = 2 on 8×8.
    let mut reg = vec![0u32; S * S];
    let m: Vec<u8> = (0..S * S).map(|p| ((p % S) / 2 % 2) as u8).collect(); // odd cell-columns masked
    for y in 0..2 {
        for x in 2..4 {
            reg[y * S + x] = 1; // cell column 1: masked
        }
        for x in 4..6 {
            reg[y * S + x] = 2; // cell column 2: visible
        }
    }
    for y in 2..4 {
        for x in 0..4 {
            reg[y * S + x] = 3;
        }
    }
    for y in 4..6 {
        for x in 0..4 {
            reg[y * S + x] = 4;
        }
    }
    for y in 6..8 {
        for x in 0..4 {
            reg[y * S + x] = 5;
        }
    }
    let masks = vec![m];
    let mut rng = SegRng::new(9);
    let all = classwise_samples(&mut rng, std::slice::from_ref(&reg), (S, S), Masks::Shared(&masks), 10, 100)?;
    let cls: Vec<u32> = all.iter().filter_map(|s| s.class).collect();
    assert_eq!(cls, vec![0, 3, 4, 5], "classes 1 (all masked) and 2 (all visible) are not eligible");
    let capped = classwise_samples(&mut rng, std::slice::from_ref(&reg), (S, S), Masks::Shared(&masks), 2, 100)?;
    assert_eq!(capped.len(), 2);
    let regions = vec![reg.clone(), reg.clone(), reg];
    let n = classwise_samples(
        &mut rng,
        &regions,
        (S, S),
        Masks::Shared(&[masks[0].clone(), masks[0].clone(), masks[0].clone()]),
        3,
        4,
    )?;
    assert_eq!(n.len(), 4, "N_max");
    let p =
        plain_samples(&mut rng, &vec![vec![1u8; 64]; 3], &[masks[0].clone(), masks[0].clone(), masks[0].clone()], 2)?;
    assert_eq!(p.len(), 2);
    Ok(())
}

/// Sampling ∝ |R| without replacement: with areas 1:1:8 and k = 1 the large class is picked ≈ 80% of the time;
/// k = 2 never repeats an index; the cap keeps order.
#[test]
fn weighted_selection_statistics() -> Result<()> {
    let mut rng = SegRng::new(3);
    let trials = 4000;
    let big = (0..trials).filter(|_| weighted_without_replacement(&mut rng, &[1.0, 1.0, 8.0], 1) == vec![2]).count();
    let f = big as f64 / trials as f64;
    let se = (0.8f64 * 0.2 / trials as f64).sqrt();
    assert!((f - 0.8).abs() < 4.0 * se, "{f}");
    for _ in 0..100 {
        let k = weighted_without_replacement(&mut rng, &[3.0, 1.0, 2.0, 5.0], 2);
        assert!(k.len() == 2 && k[0] < k[1]);
    }
    let s = |row| Sample { row, class: None, vis: vec![], msk: vec![] };
    let kept = cap_samples(&mut rng, (0..6).map(s).collect(), 3);
    assert_eq!(kept.len(), 3);
    assert!(kept.windows(2).all(|w| w[0].row < w[1].row));
    Ok(())
}

/// Plain and class-wise MIM agree (and labelled samples use ground-truth classes): an unpadded crop labelled
/// entirely with one class, all pixels confident, gives identical inputs and identical L_cmim in plain and
/// class-wise mode.
#[test]
fn plain_equals_classwise_on_single_class_crops() -> Result<()> {
    let dev = Device::Cpu;
    let s = 32;
    let store = ParamStore::new(11);
    let model = DeepLabV3Plus::new(&toy::tiny_model(3), store.var_builder(DType::F32, &dev))?;
    let l = toy::toy_batch(&[1, 2], s, DType::F32, &dev)?;
    let labeled = LabeledBatch { mask: support::const_u32(2, s, 2)?, ..l };
    let u = toy::toy_unlabeled(&[5, 6], s, 1, &dev)?;
    let u =
        UnlabeledBatch { ignore: support::const_u32(2, s, 0)?, valid: Tensor::ones((2, s, s), DType::U8, &dev)?, ..u };
    let pseudo =
        Pseudo { label: support::const_u32(2, s, 2)?, conf: support::const_f32(2, s, 1.0)?, ignore: u.ignore.clone() };
    let step = manual_step(&model, labeled, Some(u), Some(pseudo), 0.95)?;
    let mut losses = Vec::new();
    for mode in [MimMode::Plain, MimMode::Classwise] {
        let cfg = MimConfig {
            mode,
            mask: aux_mim::MaskConfig { patch: 8, ..Default::default() },
            fa: FaConfig { mode: FaMode::Off, ..Default::default() },
            sem: SemConfig { mode: SemMode::Off, ..Default::default() },
            warmup_epochs: 0.0,
            n_max: Some(4),
            ..Default::default()
        };
        let mut term = MimTerm::new(&cfg, &toy::tiny_model(3), None, store.var_builder(DType::F32, &dev))?;
        let mut rng = SegRng::new(77);
        let mut ctx = StepCtx { iter: 0, total_iters: 1, rng: &mut rng, store: &store };
        let out = term.losses(&model, &step, &mut ctx)?;
        assert_eq!(out.len(), 1);
        losses.push(scalar(&out[0].1)?);
    }
    assert!(losses[0] > 0.0 && losses[0].is_finite());
    assert_eq!(losses[0], losses[1], "plain {} vs class-wise {}", losses[0], losses[1]);
    // Inputs: plain Vis = (1 − M)·valid equals class-wise Vis = R·(1 − M) when R is the whole crop.
    let reg = region_labels(&[2u32; 64], &[1u8; 64], None);
    let m: Vec<u8> = (0..64).map(|p| (p % 3 == 0) as u8).collect();
    let cw = classwise_samples(&mut SegRng::new(1), &[reg], (8, 8), Masks::Shared(std::slice::from_ref(&m)), 3, 8)?;
    let pl = plain_samples(&mut SegRng::new(1), &[vec![1u8; 64]], &[m], 8)?;
    assert_eq!((&cw[0].vis, &cw[0].msk), (&pl[0].vis, &pl[0].msk));
    Ok(())
}
