//! The project's one random number generator.
//!
//! Candle's CPU RNG cannot be seeded, so every random draw in semiseg-rs (weight init, dropout masks,
//! augmentation, CutMix boxes, MIM masks, sampler order) comes from [`SegRng`]: xoshiro256++ seeded through
//! SplitMix64. Its whole state is four `u64`s, saved in checkpoints for bit-identical resume.
//! Independent streams are derived with [`SegRng::stream`], so a sample's augmentation is a pure function of
//! `(seed, epoch, index)` and does not depend on thread scheduling.

use rand::RngCore;
use serde::{Deserialize, Serialize};

/// xoshiro256++ with SplitMix64 seeding. Implements [`rand::RngCore`], so `rand`/`rand_distr` work on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegRng {
    s: [u64; 4],
}

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SegRng {
    /// A generator seeded from one `u64`.
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let s = [splitmix64(&mut x), splitmix64(&mut x), splitmix64(&mut x), splitmix64(&mut x)];
        Self { s }
    }

    /// An independent generator for `(seed, path...)`, e.g. `SegRng::stream(seed, &[epoch, index])`.
    pub fn stream(seed: u64, path: &[u64]) -> Self {
        let mut h = seed ^ 0x5EED_5E65_0000_0001;
        for &p in path {
            let mut x = h ^ p.wrapping_mul(0xD6E8_FEB8_6659_FD93);
            h = splitmix64(&mut x);
        }
        Self::new(h)
    }

    /// A child generator drawn from this one (advances `self`).
    pub fn fork(&mut self) -> Self {
        Self::new(self.next_u64())
    }

    /// The raw state, for checkpoints.
    pub fn state(&self) -> [u64; 4] {
        self.s
    }

    /// Restores a state saved by [`SegRng::state`].
    pub fn from_state(s: [u64; 4]) -> Self {
        Self { s }
    }

    /// Uniform `f64` in `[0, 1)` (53 random bits).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform `f64` in `[lo, hi)`.
    pub fn uniform_range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Uniform integer in `[lo, hi]`, both ends inclusive (`lo <= hi`).
    pub fn int_inclusive(&mut self, lo: i64, hi: i64) -> i64 {
        debug_assert!(lo <= hi);
        let span = (hi - lo) as u64 + 1;
        lo + (self.below(span) as i64)
    }

    /// Uniform integer in `[0, n)` without modulo bias (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        // Lemire's multiply-shift rejection method.
        let mut m = (self.next_u64() as u128) * (n as u128);
        if (m as u64) < n {
            let t = n.wrapping_neg() % n;
            while (m as u64) < t {
                m = (self.next_u64() as u128) * (n as u128);
            }
        }
        (m >> 64) as u64
    }

    /// `true` with probability `p`.
    pub fn bernoulli(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    /// Standard normal sample (Box–Muller; one value per call, deterministic).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

impl RngCore for SegRng {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    fn next_u64(&mut self) -> u64 {
        let result = (self.s[0].wrapping_add(self.s[3])).rotate_left(23).wrapping_add(self.s[0]);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        for chunk in dst.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_state_round_trip() {
        let mut a = SegRng::new(7);
        let mut b = SegRng::new(7);
        let xs: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        let mut c = SegRng::from_state(a.state());
        assert_eq!(a.next_u64(), c.next_u64());
        assert_ne!(SegRng::new(8).next_u64(), SegRng::new(7).next_u64());
    }

    #[test]
    fn streams_differ_and_are_reproducible() {
        let a = SegRng::stream(1, &[0, 5]).next_u64_owned();
        let b = SegRng::stream(1, &[0, 5]).next_u64_owned();
        let c = SegRng::stream(1, &[5, 0]).next_u64_owned();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn moments_of_uniform_normal_and_below() {
        let mut r = SegRng::new(3);
        let n = 200_000;
        let mean_u: f64 = (0..n).map(|_| r.uniform()).sum::<f64>() / n as f64;
        assert!((mean_u - 0.5).abs() < 0.005, "{mean_u}");
        let zs: Vec<f64> = (0..n).map(|_| r.normal()).collect();
        let m = zs.iter().sum::<f64>() / n as f64;
        let v = zs.iter().map(|z| (z - m) * (z - m)).sum::<f64>() / n as f64;
        assert!(m.abs() < 0.01 && (v - 1.0).abs() < 0.02, "{m} {v}");
        let mut counts = [0usize; 3];
        for _ in 0..30_000 {
            counts[r.below(3) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (c as i64 - 10_000).abs() < 400), "{counts:?}");
        let mut hits = [false; 4];
        for _ in 0..1000 {
            hits[(r.int_inclusive(2, 5) - 2) as usize] = true;
        }
        assert!(hits.iter().all(|&h| h));
    }

    trait Owned {
        fn next_u64_owned(self) -> u64;
    }
    impl Owned for SegRng {
        fn next_u64_owned(mut self) -> u64 {
            self.next_u64()
        }
    }
}
