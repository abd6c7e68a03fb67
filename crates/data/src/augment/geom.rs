//! Resize → pad → crop → hflip, fused into one sampling pass over the output crop.
//!
//! Only the `S×S` output window is computed: each output pixel is mapped back through the flip, the crop
//! offset and the resize to a source coordinate. The image is sampled bilinearly (half-pixel centres, edge
//! clamp) and the mask by nearest neighbour with the same mapping, so the two stay aligned by construction.

use core_seg::rng::SegRng;

use crate::io::{Mask, RgbImage};

/// The geometric parameters drawn for one sample (UniMatch order: resize, crop, flip).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeomParams {
    /// Source width and height.
    pub src: (usize, usize),
    /// Resized width and height (before padding).
    pub resized: (usize, usize),
    /// Top-left corner `(x, y)` of the crop in the padded, resized image.
    pub offset: (usize, usize),
    /// Horizontal flip after the crop.
    pub flip: bool,
    /// Output crop size S.
    pub crop: usize,
}

/// Draws resize/crop/flip for a `w×h` source, exactly as UniMatch's `resize`, `crop` and `hflip`.
pub fn draw_geom(w: usize, h: usize, crop: usize, range: [f64; 2], rng: &mut SegRng) -> GeomParams {
    let long = w.max(h) as f64;
    let lo = (long * range[0]) as i64;
    let hi = ((long * range[1]) as i64).max(lo);
    let new_long = rng.int_inclusive(lo, hi).max(1) as f64;
    let (nw, nh) = if h > w {
        (((w as f64) * new_long / (h as f64) + 0.5) as usize, new_long as usize)
    } else {
        (new_long as usize, ((h as f64) * new_long / (w as f64) + 0.5) as usize)
    };
    let (nw, nh) = (nw.max(1), nh.max(1));
    let (pw, ph) = (nw.max(crop), nh.max(crop));
    let x = rng.int_inclusive(0, (pw - crop) as i64) as usize;
    let y = rng.int_inclusive(0, (ph - crop) as i64) as usize;
    let flip = rng.uniform() < 0.5;
    GeomParams { src: (w, h), resized: (nw, nh), offset: (x, y), flip, crop }
}

impl GeomParams {
    /// Column `ox` of the output → column in the resized image (before the padding check).
    fn resized_x(&self, ox: usize) -> usize {
        let cx = if self.flip { self.crop - 1 - ox } else { ox };
        self.offset.0 + cx
    }

    /// Output pixel `(ox, oy)` → resized-image coordinate, or `None` inside the padding.
    pub fn to_resized(&self, ox: usize, oy: usize) -> Option<(usize, usize)> {
        let (rx, ry) = (self.resized_x(ox), self.offset.1 + oy);
        (rx < self.resized.0 && ry < self.resized.1).then_some((rx, ry))
    }

    /// Resized coordinate → nearest source pixel (the mask's mapping).
    pub fn nearest_src(&self, rx: usize, ry: usize) -> (usize, usize) {
        let sx = ((rx as f64 + 0.5) * self.src.0 as f64 / self.resized.0 as f64) as usize;
        let sy = ((ry as f64 + 0.5) * self.src.1 as f64 / self.resized.1 as f64) as usize;
        (sx.min(self.src.0 - 1), sy.min(self.src.1 - 1))
    }

    /// `1` where the output pixel comes from the image, `0` on padding.
    pub fn valid_map(&self) -> Vec<u8> {
        let s = self.crop;
        let mut v = vec![0u8; s * s];
        for oy in 0..s {
            for ox in 0..s {
                v[oy * s + ox] = self.to_resized(ox, oy).is_some() as u8;
            }
        }
        v
    }
}

/// Bilinear taps along one axis: `(i0, i1, w1)` for resized coordinate `r`.
fn taps(r: usize, src: usize, dst: usize) -> (usize, usize, f32) {
    let f = ((r as f64 + 0.5) * src as f64 / dst as f64 - 0.5).max(0.0);
    let i0 = (f.floor() as usize).min(src - 1);
    let i1 = (i0 + 1).min(src - 1);
    (i0, i1, (f - i0 as f64) as f32)
}

/// The augmented image crop as HWC f32 in `[0, 1]`; padding is 0 (black).
pub fn warp_image(img: &RgbImage, g: &GeomParams) -> Vec<f32> {
    let s = g.crop;
    let (w, h) = g.src;
    let mut out = vec![0f32; s * s * 3];
    let cols: Vec<Option<(usize, usize, f32)>> = (0..s)
        .map(|ox| {
            let rx = g.resized_x(ox);
            (rx < g.resized.0).then(|| taps(rx, w, g.resized.0))
        })
        .collect();
    let px = |x: usize, y: usize, c: usize| img.data[(y * w + x) * 3 + c] as f32;
    for oy in 0..s {
        let ry = g.offset.1 + oy;
        if ry >= g.resized.1 {
            continue;
        }
        let (y0, y1, wy) = taps(ry, h, g.resized.1);
        for (ox, col) in cols.iter().enumerate() {
            let Some((x0, x1, wx)) = *col else { continue };
            for c in 0..3 {
                let top = px(x0, y0, c) * (1.0 - wx) + px(x1, y0, c) * wx;
                let bot = px(x0, y1, c) * (1.0 - wx) + px(x1, y1, c) * wx;
                out[(oy * s + ox) * 3 + c] = (top * (1.0 - wy) + bot * wy) / 255.0;
            }
        }
    }
    out
}

/// The augmented mask crop (nearest neighbour); padding gets `pad`.
pub fn warp_mask(mask: &Mask, g: &GeomParams, pad: u8) -> Vec<u8> {
    let s = g.crop;
    let mut out = vec![pad; s * s];
    for oy in 0..s {
        for ox in 0..s {
            if let Some((rx, ry)) = g.to_resized(ox, oy) {
                let (sx, sy) = g.nearest_src(rx, ry);
                out[oy * s + ox] = mask.data[sy * mask.width + sx];
            }
        }
    }
    out
}
