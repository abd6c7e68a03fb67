//! Composes one synthetic scene: background, objects and distractors in random paint order, then lighting,
//! optional blur and per-pixel noise.

use core_seg::rng::SegRng;

use super::render::{self, Shape, TexInst, Texture, SHAPES, TEXTURES};
use super::SynthConfig;
use crate::io::{Mask, RgbImage};

/// One thing to paint.
struct Item {
    shape: Shape,
    tex: TexInst,
    label: u8,
    cx: f32,
    cy: f32,
    r: f32,
    cos: f32,
    sin: f32,
    wob: [f32; 4],
    shade: [f32; 2],
}

/// Mean colour of object class `c ≥ 1`: points on a circle around mid-grey, `spread` away from it.
pub fn class_mean(c: usize, k: usize, spread: f64) -> [f32; 3] {
    let a = 2.0 * std::f64::consts::PI * (c - 1) as f64 / (k - 1).max(1) as f64;
    let t = 2.0 * std::f64::consts::PI / 3.0;
    [a, a - t, a + t].map(|x| (0.5 + spread * x.cos()) as f32)
}

fn is_class_style(shape: Shape, tex: Texture, k: usize) -> bool {
    (1..k).any(|c| render::class_style(c) == (shape, tex))
}

/// Draws position, size, rotation and colours of an item with the given style and label.
fn draw_item(cfg: &SynthConfig, shape: Shape, family: Texture, label: u8, rng: &mut SegRng) -> Item {
    let sc = cfg.size as f64 / 64.0;
    let k = cfg.num_classes;
    let mean_class = if label > 0 { label as usize } else { 1 + rng.below((k - 1) as u64) as usize };
    let m = class_mean(mean_class, k, cfg.class_color_spread);
    let a = m.map(|v| (v as f64 + rng.normal() * cfg.sigma_col).clamp(0.0, 1.0) as f32);
    let tex = TexInst::draw(family, a, cfg.size, rng);
    let ang = rng.uniform_range(0.0, 2.0 * std::f64::consts::PI) as f32;
    let sd = render::random_dir(rng);
    Item {
        shape,
        tex,
        label,
        cx: (rng.uniform_range(4.0, 60.0) * sc) as f32,
        cy: (rng.uniform_range(4.0, 60.0) * sc) as f32,
        r: (rng.uniform_range(cfg.radius[0], cfg.radius[1]) * sc) as f32,
        cos: ang.cos(),
        sin: ang.sin(),
        wob: [
            rng.uniform_range(0.1, 0.3) as f32,
            rng.int_inclusive(2, 5) as f32,
            rng.uniform_range(0.0, std::f64::consts::TAU) as f32,
            rng.uniform_range(0.5, 1.0) as f32,
        ],
        shade: [sd[0] * 0.1, sd[1] * 0.1],
    }
}

/// A distractor (background label): a wobbly blob, or with `p_confuser` a shape/texture pair of no class.
fn draw_distractor(cfg: &SynthConfig, rng: &mut SegRng) -> Item {
    if rng.uniform() < cfg.p_confuser {
        for _ in 0..32 {
            let s = SHAPES[rng.below(5) as usize];
            let t = TEXTURES[rng.below(3) as usize];
            if !is_class_style(s, t, cfg.num_classes) {
                return draw_item(cfg, s, t, 0, rng);
            }
        }
    }
    let fam = [Texture::Stripes, Texture::Checker, Texture::Dots, Texture::Smooth][rng.below(4) as usize];
    draw_item(cfg, Shape::Blob, fam, 0, rng)
}

fn paint(item: &Item, img: &mut [f32], mask: &mut [u8], size: usize) {
    let reach = item.r * 1.35;
    let x0 = (item.cx - reach).floor().max(0.0) as usize;
    let y0 = (item.cy - reach).floor().max(0.0) as usize;
    let x1 = ((item.cx + reach).ceil() as usize).min(size - 1);
    let y1 = ((item.cy + reach).ceil() as usize).min(size - 1);
    for y in y0..=y1 {
        for x in x0..=x1 {
            let (dx, dy) = (x as f32 + 0.5 - item.cx, y as f32 + 0.5 - item.cy);
            let u = (dx * item.cos + dy * item.sin) / item.r;
            let v = (-dx * item.sin + dy * item.cos) / item.r;
            if !item.shape.contains(u, v, item.wob) {
                continue;
            }
            let c = item.tex.color(x as f32, y as f32);
            let f = 1.0 + item.shade[0] * u + item.shade[1] * v;
            let i = y * size + x;
            (0..3).for_each(|ch| img[i * 3 + ch] = c[ch] * f);
            mask[i] = item.label;
        }
    }
}

/// Global effects: lighting gradient, optional blur, per-pixel noise, clip and quantise.
fn finish(cfg: &SynthConfig, mut img: Vec<f32>, rng: &mut SegRng) -> Vec<u8> {
    let s = cfg.size;
    let ang = rng.uniform_range(0.0, 2.0 * std::f64::consts::PI);
    let (gc, gs) = (ang.cos() as f32, ang.sin() as f32);
    let amp = rng.uniform_range(-cfg.light, cfg.light) as f32;
    for y in 0..s {
        for x in 0..s {
            let t = ((x as f32 / s as f32 - 0.5) * gc + (y as f32 / s as f32 - 0.5) * gs) * 2.0;
            let f = 1.0 + amp * t.clamp(-1.0, 1.0);
            (0..3).for_each(|c| img[(y * s + x) * 3 + c] *= f);
        }
    }
    if rng.uniform() < cfg.blur_p {
        let sigma = rng.uniform_range(cfg.blur_sigma[0], cfg.blur_sigma[1]) * s as f64 / 64.0;
        crate::augment::color::gaussian_blur(&mut img, s, s, sigma);
    }
    let sigma = rng.uniform_range(0.02, cfg.noise_hi);
    img.iter().map(|&v| ((v as f64 + rng.normal() * sigma).clamp(0.0, 1.0) * 255.0).round() as u8).collect()
}

/// Generates one scene: a `size×size` image and its dense mask (values 0..K−1).
pub fn generate(cfg: &SynthConfig, rng: &mut SegRng) -> (RgbImage, Mask) {
    let s = cfg.size;
    let mut img = render::background(s, cfg.bg_noise, rng);
    let mut mask = vec![0u8; s * s];
    let n_obj = rng.int_inclusive(1, cfg.max_obj as i64) as usize;
    let n_dis = rng.int_inclusive(0, cfg.max_distract as i64) as usize;
    let mut items: Vec<Item> = (0..n_obj)
        .map(|_| {
            let c = 1 + rng.below((cfg.num_classes - 1) as u64) as usize;
            let (shape, tex) = render::class_style(c);
            draw_item(cfg, shape, tex, c as u8, rng)
        })
        .collect();
    items.extend((0..n_dis).map(|_| draw_distractor(cfg, rng)));
    rng.shuffle(&mut items);
    for item in &items {
        paint(item, &mut img, &mut mask, s);
    }
    let data = finish(cfg, img, rng);
    (RgbImage { width: s, height: s, data }, Mask { width: s, height: s, data: mask })
}
