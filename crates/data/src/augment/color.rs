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
    img.iter_mut().for_each(|v| *v = (f * *v + (1.0 - f) * mean).clamp(0.0, 1.0));
}

/// Blends each pixel with its own luma.
pub fn saturation(img: &mut [f32], f: f32) {
    for p in img.chunks_exact_mut(3) {
        let g = luma(p);
        p.iter_mut().for_each(|v| *v = (f * *v + (1.0 - f) * g).clamp(0.0, 1.0));
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
    let r = (3.0 * sigma).ceil().max(1.0) as usize;
    let mut k: Vec<f32> = (0..=2 * r)
        .map(|i| {
            let d = i as f64 - r as f64;
            (-(d * d) / (2.0 * sigma * sigma)).exp() as f32
        })
        .collect();
    let sum: f32 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= sum);
    // Horizontal pass: each row is copied into an edge-padded buffer, then convolved.
    let mut padded = vec![0f32; (w + 2 * r) * 3];
    let mut tmp = vec![0f32; img.len()];
    for y in 0..h {
        let row = &img[y * w * 3..(y + 1) * w * 3];
        for x in 0..w + 2 * r {
            let sx = x.saturating_sub(r).min(w - 1);
            padded[x * 3..x * 3 + 3].copy_from_slice(&row[sx * 3..sx * 3 + 3]);
        }
        let out = &mut tmp[y * w * 3..(y + 1) * w * 3];
        for (j, &kv) in k.iter().enumerate() {
            let src = &padded[j * 3..(j + w) * 3];
            out.iter_mut().zip(src).for_each(|(o, s)| *o += kv * s);
        }
    }
    // Vertical pass: whole rows at a time (contiguous, vectorisable).
    img.iter_mut().for_each(|v| *v = 0.0);
    let stride = w * 3;
    for y in 0..h {
        let out = &mut img[y * stride..(y + 1) * stride];
        for (j, &kv) in k.iter().enumerate() {
            let sy = (y + j).saturating_sub(r).min(h - 1);
            let src = &tmp[sy * stride..(sy + 1) * stride];
            out.iter_mut().zip(src).for_each(|(o, s)| *o += kv * s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blur_preserves_constants_and_mass_and_smooths_an_impulse() {
        let (w, h) = (9, 7);
        let mut c = vec![0.25f32; w * h * 3];
        gaussian_blur(&mut c, w, h, 1.3);
        assert!(c.iter().all(|v| (v - 0.25).abs() < 1e-5));
        let mut d = vec![0f32; w * h * 3];
        d[(3 * w + 4) * 3 + 1] = 1.0;
        gaussian_blur(&mut d, w, h, 0.8);
        let total: f32 = d.iter().sum();
        assert!((total - 1.0).abs() < 1e-4, "{total}");
        assert!(d[(3 * w + 4) * 3 + 1] < 0.5 && d[(3 * w + 5) * 3 + 1] > 0.01);
        assert_eq!(d[(3 * w + 4) * 3], 0.0, "channels stay separate");
    }

    #[test]
    fn hue_full_turn_is_identity_and_grayscale_is_luma() {
        let mut p = vec![0.8f32, 0.2, 0.4, 0.1, 0.9, 0.3];
        let orig = p.clone();
        hue(&mut p, 1.0);
        assert!(p.iter().zip(&orig).all(|(a, b)| (a - b).abs() < 1e-5));
        hue(&mut p, 0.5);
        assert!((p[0] - orig[0]).abs() > 0.1);
        let mut g = vec![1.0f32, 0.0, 0.0];
        grayscale(&mut g);
        assert!(g.iter().all(|v| (v - 0.299).abs() < 1e-6));
    }
}
