//! Shape masks, texture families and backgrounds of the synthetic scene generator.

use core_seg::rng::SegRng;

/// Object shapes, defined in rotated local coordinates scaled by the radius.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Unit disc.
    Disc,
    /// Square of half-side 0.8.
    Square,
    /// Equilateral triangle of circumradius 1.
    Triangle,
    /// Ring with inner radius 0.55.
    Ring,
    /// Cross with arm half-width 0.3.
    Cross,
    /// Wobbly ellipse (distractors only).
    Blob,
}

/// The five class shapes, in class order.
pub const SHAPES: [Shape; 5] = [Shape::Disc, Shape::Square, Shape::Triangle, Shape::Ring, Shape::Cross];

/// Texture families (two colours each, except smooth).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Texture {
    /// Parallel stripes.
    Stripes,
    /// Rotated checkerboard.
    Checker,
    /// Rotated grid of dots.
    Dots,
    /// One colour.
    Smooth,
}

/// The class textures, in class order.
pub const TEXTURES: [Texture; 3] = [Texture::Stripes, Texture::Checker, Texture::Dots];

/// Shape and texture of object class `c ≥ 1` (unique pairs for up to 15 object classes).
pub fn class_style(c: usize) -> (Shape, Texture) {
    let k = c - 1;
    (SHAPES[k % 5], TEXTURES[(k + k / 5) % 3])
}

impl Shape {
    /// Whether local point `(u, v)` lies inside; `wob` = (amplitude, frequency, phase, aspect) for blobs.
    pub fn contains(self, u: f32, v: f32, wob: [f32; 4]) -> bool {
        let r2 = u * u + v * v;
        match self {
            Shape::Disc => r2 <= 1.0,
            Shape::Square => u.abs().max(v.abs()) <= 0.8,
            Shape::Triangle => {
                let s3 = 3f32.sqrt();
                v >= -0.5 && s3 * u - v >= -1.0 && -s3 * u - v >= -1.0
            }
            Shape::Ring => (0.55 * 0.55..=1.0).contains(&r2),
            Shape::Cross => (u.abs() <= 0.3 && v.abs() <= 1.0) || (v.abs() <= 0.3 && u.abs() <= 1.0),
            Shape::Blob => {
                let (x, y) = (u, v / wob[3]);
                let th = y.atan2(x);
                (x * x + y * y).sqrt() <= 1.0 + wob[0] * (wob[1] * th + wob[2]).sin()
            }
        }
    }
}

/// A concrete texture instance: family plus its random period/orientation/phase and two colours.
#[derive(Debug, Clone)]
pub struct TexInst {
    family: Texture,
    period: f32,
    dot_r: f32,
    cos: f32,
    sin: f32,
    phase: f32,
    /// Primary colour.
    pub a: [f32; 3],
    /// Secondary colour.
    pub b: [f32; 3],
}

impl TexInst {
    /// Draws a texture of `family` for an image of side `size` with base colour `a`.
    pub fn draw(family: Texture, a: [f32; 3], size: usize, rng: &mut SegRng) -> Self {
        let sc = size as f64 / 64.0;
        let (lo, hi) = match family {
            Texture::Stripes => (4.0, 8.0),
            Texture::Checker => (3.0, 6.0),
            _ => (5.0, 8.0),
        };
        let period = (rng.uniform_range(lo, hi) * sc) as f32;
        let dot_r = (rng.uniform_range(1.2, 2.0) * sc) as f32;
        let ang = rng.uniform_range(0.0, std::f64::consts::PI) as f32;
        let phase = rng.uniform() as f32;
        let dir = random_dir(rng);
        let norm = rng.uniform_range(0.25, 0.5) as f32;
        let b = [0, 1, 2].map(|c| (a[c] + norm * dir[c]).clamp(0.0, 1.0));
        Self { family, period, dot_r, cos: ang.cos(), sin: ang.sin(), phase, a, b }
    }

    /// Colour at image point `(x, y)`.
    pub fn color(&self, x: f32, y: f32) -> [f32; 3] {
        let u = (x * self.cos + y * self.sin) / self.period + self.phase;
        let v = (-x * self.sin + y * self.cos) / self.period + self.phase;
        let second = match self.family {
            Texture::Stripes => u.rem_euclid(1.0) < 0.5,
            Texture::Checker => (u.floor() as i64 + v.floor() as i64).rem_euclid(2) == 0,
            Texture::Dots => {
                let (du, dv) = (u - u.round(), v - v.round());
                (du * du + dv * dv).sqrt() * self.period < self.dot_r
            }
            Texture::Smooth => false,
        };
        if second {
            self.b
        } else {
            self.a
        }
    }
}

/// A random unit vector in RGB space.
pub fn random_dir(rng: &mut SegRng) -> [f32; 3] {
    let v = [rng.normal(), rng.normal(), rng.normal()];
    let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt().max(1e-9);
    v.map(|x| (x / n) as f32)
}

/// Background: base colour U(0.2, 0.8) plus a g×g grid (g ∈ 3..=8) of N(0, noise) offsets, bilinearly upsampled.
pub fn background(size: usize, noise: f64, rng: &mut SegRng) -> Vec<f32> {
    let base = [0, 1, 2].map(|_| rng.uniform_range(0.2, 0.8) as f32);
    let g = rng.int_inclusive(3, 8) as usize;
    let grid: Vec<f32> = (0..g * g * 3).map(|_| (rng.normal() * noise) as f32).collect();
    let mut img = vec![0f32; size * size * 3];
    let scale = (g - 1) as f32 / (size.max(2) - 1) as f32;
    for y in 0..size {
        let fy = y as f32 * scale;
        let (y0, wy) = ((fy.floor() as usize).min(g - 2), fy - fy.floor().min((g - 2) as f32));
        for x in 0..size {
            let fx = x as f32 * scale;
            let (x0, wx) = ((fx.floor() as usize).min(g - 2), fx - fx.floor().min((g - 2) as f32));
            for c in 0..3 {
                let at = |yy: usize, xx: usize| grid[(yy * g + xx) * 3 + c];
                let top = at(y0, x0) * (1.0 - wx) + at(y0, x0 + 1) * wx;
                let bot = at(y0 + 1, x0) * (1.0 - wx) + at(y0 + 1, x0 + 1) * wx;
                img[(y * size + x) * 3 + c] = base[c] + top * (1.0 - wy) + bot * wy;
            }
        }
    }
    img
}
