//! UniMatch's CutMix box (`obtain_cutmix_box`).

use core_seg::rng::SegRng;

/// A CutMix rectangle: rows `[y, y+h)`, columns `[x, x+w)`; `None` fields never occur (an empty box is `h = 0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CutmixBox {
    /// Left column.
    pub x: usize,
    /// Top row.
    pub y: usize,
    /// Width.
    pub w: usize,
    /// Height.
    pub h: usize,
}

/// With probability `p` draws a box of area `U(area)·S²` and aspect `U(ratio)` that fits inside `S×S`;
/// otherwise returns an empty box. Retries are capped; a box that cannot fit is shrunk to `S`.
pub fn draw_box(s: usize, p: f64, area: [f64; 2], ratio: [f64; 2], rng: &mut SegRng) -> CutmixBox {
    if rng.uniform() >= p {
        return CutmixBox::default();
    }
    let a = rng.uniform_range(area[0], area[1]) * (s * s) as f64;
    for _ in 0..10_000 {
        let r = rng.uniform_range(ratio[0], ratio[1]);
        let w = (a / r).sqrt() as usize;
        let h = (a * r).sqrt() as usize;
        let x = rng.below(s as u64) as usize;
        let y = rng.below(s as u64) as usize;
        if x + w <= s && y + h <= s {
            return CutmixBox { x, y, w, h };
        }
    }
    let side = (a.sqrt() as usize).min(s);
    CutmixBox { x: 0, y: 0, w: side, h: side }
}

impl CutmixBox {
    /// The box as an `S×S` u8 map (1 inside).
    pub fn to_map(&self, s: usize) -> Vec<u8> {
        let mut m = vec![0u8; s * s];
        for row in self.y..(self.y + self.h).min(s) {
            for col in self.x..(self.x + self.w).min(s) {
                m[row * s + col] = 1;
            }
        }
        m
    }
}
