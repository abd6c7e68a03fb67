//! Photometric strong augmentations on HWC f32 images in `[0, 1]` (torchvision semantics).

use core_seg::rng::SegRng;

const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

fn luma(p: &[f32]) -> f32 {
    LUMA[0] * p[0] + LUMA[1] * p[1] + LUMA[2] * p[2]
}

/// `ColorJitter(b, c, s, h)`: factors `U[1−b, 1+b]` etc., hue shift `U[−h, h]`, the four ops in random order.
pub fn color_jitter(img: &mut [f32], jitter: [f64; 4], rng: &mut SegRng) {
    let mut order = [0usize, 1, 2, 3];
    rng.shuffle(&mut order);
    let factor = |r: &mut SegRng, a: f64| r.uniform_range((1.0 - a).max(0.0), 1.0 + a) as f32;
    let b = factor(rng, jitter[0]);
    let c = factor(rng, jitter[1]);
    let s = factor(rng, jitter[2]);
    let h = rng.uniform_range(-jitter[3], jitter[3]) as f32;
    for op in order {
        match op {
            0 => brightness(img, b),
            1 => contrast(img, c),
            2 => saturation(img, s),
            _ => hue(img, h),
        }
    }
}

/// Multiplies every channel by `f`.
pub fn brightness(img: &mut [f32], f: f32) {
    img.iter_mut().for_each(|v| *v = (*v * f).clamp(0.0, 1.0));
}

/// Blends with the mean luma of the whole image.
pub fn contrast(img: &mut [f32], f: f32) {
    let n = (img.len() / 3).max(1) as f32;
    let mean = img.chunks_exact(3).map(luma).sum::<f32>() / n;
    img.iter_mut()
        .for_each(|v| *v = (f * *v + (1.0 - f) * mean).clamp(0.0, 1.0));
}

/// Blends each pixel with its own luma.
pub fn saturation(img: &mut [f32], f: f32) {
    for p in img.chunks_exact_mut(3) {
        let g = luma(p);
        p.iter_mut()
            .for_each(|v| *v = (f * *v + (1.0 - f) * g).clamp(0.0, 1.0));
    }
}

/// Rotates the hue by `shift` turns (HSV round trip).
pub fn hue(img: &mut [f32], shift: f32) {
    for p in img.chunks_exact_mut(3) {
        let (r, g, b) = (p[0], p[1], p[2]);
        let max = r.max(g).max(b);
        let min = r.min(g).min(b);
        let d = max - min;
        if d <= 0.0 {
            continue;
        }
        let sector = if max == r {
            ((g - b) / d).rem_euclid(6.0)
        } else if max == g {
            (b - r) / d + 2.0
        } else {
            (r - g) / d + 4.0
        };
        let mut hh = sector / 6.0;
        hh = (hh + shift).rem_euclid(1.0);
        let sat = d / max;
        let [nr, ng, nb] = hsv_to_rgb(hh, sat, max);
        p[0] = nr;
        p[1] = ng;
        p[2] = nb;
    }
}

fn hsv_to_rgb(h: f32, s: f32, v: f32) -> [f32; 3] {
    let h6 = h * 6.0;
    let i = (h6.floor() as i32).rem_euclid(6);
    let f = h6 - h6.floor();
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match i {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

/// Replaces every pixel by its luma in all three channels.
pub fn grayscale(img: &mut [f32]) {
    for p in img.chunks_exact_mut(3) {
        let g = luma(p);
        p.iter_mut().for_each(|v| *v = g);
    }
}

/// Exact separable Gaussian blur, radius `⌈3σ⌉`, edge pixels repeated.
pub fn gaussian_blur(img: &mut [f32], w: usize, h: usize, sigma: f64) {
    let r = (3.0 * sigma).ceil().max(1.0) as isize;
    let mut k: Vec<f32> = (-r..=r)
        .map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp() as f32)
        .collect();
    let sum: f32 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= sum);
    let mut tmp = vec![0f32; img.len()];
    let clamp = |v: isize, n: usize| v.clamp(0, n as isize - 1) as usize;
    for y in 0..h {
        for x in 0..w {
            let mut acc = [0f32; 3];
            for (j, kv) in k.iter().enumerate() {
                let sx = clamp(x as isize + j as isize - r, w);
                let base = (y * w + sx) * 3;
                (0..3).for_each(|c| acc[c] += kv * img[base + c]);
            }
            tmp[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&acc);
        }
    }
    for y in 0..h {
        for x in 0..w {
            let mut acc = [0f32; 3];
            for (j, kv) in k.iter().enumerate() {
                let sy = clamp(y as isize + j as isize - r, h);
                let base = (sy * w + x) * 3;
                (0..3).for_each(|c| acc[c] += kv * tmp[base + c]);
            }
            img[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&acc);
        }
    }
}
