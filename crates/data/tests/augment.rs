//! Augmentation invariants: alignment under resize/crop/flip, padding values, CutMix bounds, config keys.

use core_seg::rng::SegRng;
use data::augment::{augment_labeled, augment_unlabeled, cutmix::draw_box, AugConfig, MEAN, STD};
use data::io::{Mask, RgbImage};
use data::palette::voc_palette;

/// A block image (blocks of 16 px) whose colour is the VOC palette colour of its mask value.
fn blocks(w: usize, h: usize) -> (RgbImage, Mask) {
    let pal = voc_palette();
    let mask: Vec<u8> = (0..w * h).map(|i| (((i % w) / 16 + 3 * ((i / w) / 16)) % 21) as u8).collect();
    let data = mask.iter().flat_map(|&m| pal[m as usize]).collect();
    (RgbImage { width: w, height: h, data }, Mask { width: w, height: h, data: mask })
}

/// Normalised CHW pixel → 0..255 RGB.
fn pixel(chw: &[f32], s: usize, i: usize) -> [f32; 3] {
    [0, 1, 2].map(|c| (chw[c * s * s + i] * STD[c] + MEAN[c]) * 255.0)
}

#[test]
fn mask_and_image_stay_aligned_under_resize_crop_flip() {
    let (img, mask) = blocks(97, 61);
    let pal = voc_palette();
    let cfg = AugConfig { crop_size: 80, ..Default::default() };
    let mut flips = [0usize; 2];
    for seed in 0..40 {
        let mut rng = SegRng::new(seed);
        let c = augment_labeled(&img, &mask, &cfg, &mut rng);
        let s = cfg.crop_size;
        flips[c.geom.flip as usize] += 1;
        let long = c.geom.resized.0.max(c.geom.resized.1);
        assert!((48..=194).contains(&long), "long side {long}");
        let mut pure = 0;
        for y in 0..s {
            for x in 0..s {
                let i = y * s + x;
                if c.valid[i] == 0 {
                    continue;
                }
                let m = c.mask[i];
                let p = pixel(&c.image, s, i);
                let exp = pal[m as usize];
                let same = (0..3).all(|k| (p[k] - exp[k] as f32).abs() < 1.0);
                if same {
                    pure += 1;
                    continue;
                }
                // A blended colour is only allowed next to a label boundary (or the crop border, whose
                // outer neighbours are not in the output).
                let border = x == 0 || y == 0 || x == s - 1 || y == s - 1;
                let near = border
                    || (y.saturating_sub(1)..(y + 2).min(s))
                        .flat_map(|yy| (x.saturating_sub(1)..(x + 2).min(s)).map(move |xx| yy * s + xx))
                        .any(|j| c.valid[j] == 0 || c.mask[j] != m);
                assert!(near, "seed {seed}: pixel ({x},{y}) colour {p:?} but mask {m}");
            }
        }
        let valid = c.valid.iter().filter(|&&v| v == 1).count();
        assert!(pure * 2 > valid, "seed {seed}: only {pure}/{valid} pure pixels");
    }
    assert!(flips[0] > 5 && flips[1] > 5, "{flips:?}");
}

#[test]
fn unit_scale_crop_and_flip_are_exact_copies() {
    let (img, mask) = blocks(50, 40);
    let cfg = AugConfig { crop_size: 32, resize_range: [1.0, 1.0], ..Default::default() };
    for seed in 0..20 {
        let c = augment_labeled(&img, &mask, &cfg, &mut SegRng::new(seed));
        let (x0, y0) = c.geom.offset;
        assert_eq!(c.geom.resized, (50, 40));
        for y in 0..32 {
            for x in 0..32 {
                let sx = if c.geom.flip { x0 + 31 - x } else { x0 + x };
                assert_eq!(c.mask[y * 32 + x], mask.data[(y0 + y) * 50 + sx]);
                let p = pixel(&c.image, 32, y * 32 + x);
                let q = &img.data[((y0 + y) * 50 + sx) * 3..][..3];
                assert!((0..3).all(|k| (p[k] - q[k] as f32).abs() < 1e-3));
            }
        }
    }
}

#[test]
fn padding_values_labelled_255_unlabelled_ignore_and_black_image() {
    let (img, mask) = blocks(40, 30);
    // Crop larger than any resize of the long side (≤ 80): there is always padding.
    let cfg = AugConfig { crop_size: 96, ..Default::default() };
    for seed in 0..20 {
        let c = augment_labeled(&img, &mask, &cfg, &mut SegRng::new(seed));
        let u = augment_unlabeled(&img, &cfg, &mut SegRng::new(seed));
        let pad = c.valid.iter().filter(|&&v| v == 0).count();
        assert!(pad > 0);
        for i in 0..96 * 96 {
            assert_eq!(c.valid[i] == 0, c.mask[i] == 255, "labelled mask 255 exactly on padding");
            assert_eq!(u.ignore[i], if u.valid[i] == 0 { 255 } else { 0 });
            if c.valid[i] == 0 {
                assert!(pixel(&c.image, 96, i).iter().all(|v| v.abs() < 1e-3), "black padding");
                assert!(pixel(&u.weak, 96, i).iter().all(|v| v.abs() < 1e-3));
            }
        }
        // Padding is right/bottom before the flip: the top-left (top-right if flipped) pixel is inside.
        assert_eq!(c.valid[if c.geom.flip { 95 } else { 0 }], 1);
    }
}

#[test]
fn cutmix_box_bounds_area_and_aspect() {
    let s = 321usize;
    let mut rng = SegRng::new(9);
    let cfg = AugConfig::default();
    for _ in 0..2000 {
        let b = draw_box(s, 1.0, cfg.cutmix_area, cfg.cutmix_ratio, &mut rng);
        assert!(b.x + b.w <= s && b.y + b.h <= s, "{b:?}");
        let area = (b.w * b.h) as f64;
        assert!(area <= 0.4 * (s * s) as f64, "{b:?}");
        assert!(((b.w + 1) * (b.h + 1)) as f64 >= 0.02 * (s * s) as f64, "{b:?}");
        assert!((b.h + 1) as f64 / b.w as f64 >= 0.3 && b.h as f64 / (b.w + 1) as f64 <= 1.0 / 0.3, "{b:?}");
        assert_eq!(b.to_map(s).iter().filter(|&&v| v == 1).count(), b.w * b.h);
    }
    let empty = (0..2000).filter(|_| draw_box(s, 0.5, cfg.cutmix_area, cfg.cutmix_ratio, &mut rng).h == 0).count();
    assert!((850..1150).contains(&empty), "p = 0.5 gives {empty}/2000 empty boxes");
}

#[test]
fn strong_views_differ_from_weak_and_same_rng_is_identical() {
    let (img, _) = blocks(64, 64);
    let cfg = AugConfig { crop_size: 48, ..Default::default() };
    let a = augment_unlabeled(&img, &cfg, &mut SegRng::stream(3, &[1, 2]));
    let b = augment_unlabeled(&img, &cfg, &mut SegRng::stream(3, &[1, 2]));
    assert_eq!(a, b);
    let changed = (0..30)
        .filter(|&k| {
            let u = augment_unlabeled(&img, &cfg, &mut SegRng::new(k));
            u.strong1 != u.weak && u.strong2 != u.strong1
        })
        .count();
    assert!(changed >= 25, "{changed}/30 samples with distinct strong views");
}

#[test]
fn config_defaults_and_unknown_keys() {
    let d: AugConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(d, AugConfig::default());
    assert_eq!((d.crop_size, d.pad_label_u, d.ignore_index), (321, 254, 255));
    assert!(serde_json::from_str::<AugConfig>(r#"{"crop_size": 64, "bogus": 1}"#).is_err());
    let keys = serde_json::to_value(&d).unwrap();
    let names: Vec<&String> = keys.as_object().unwrap().keys().collect();
    assert_eq!(names.len(), 12);
    assert!(AugConfig { jitter_p: 1.5, ..d.clone() }.validate().is_err());
    assert!(AugConfig { resize_range: [2.0, 0.5], ..d }.validate().is_err());
}
