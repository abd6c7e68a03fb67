//! Channel–concept scores of a feature layer against ground-truth class masks (`docs/aux-recon.md`), in the style of
//! Network Dissection (Bau et al., 2017).
//!
//! For activations `A [N,K,H,W]` (resized to label size) and labels `Y`, over non-ignored pixels:
//! ```text
//! T_k      = the q-quantile of A[:,k] over the dataset (two passes: min/max, then a B-bin histogram)
//! M_k      = A[:,k] > T_k   (bin resolution: the bins above the quantile's bin; when none is occupied —
//!            ties at the maximum — the quantile's bin itself; a constant channel is never on)
//! IoU_{k,c} = |M_k ∧ [Y = c]| / |M_k ∨ [Y = c]|    accumulated over the dataset
//! r_{k,c}   = (μ₁ − μ₀)/σ · √(p(1 − p))            point-biserial correlation of A[:,k] with [Y = c]
//! ```
//! with `μ₁`, `μ₀` the mean activation on / off class `c`, `σ` the population std and `p` the class fraction.
//! The data are streamed three times ([`Phase::Range`] → [`Phase::Histogram`] → [`Phase::Overlap`]), so no
//! activation is kept in memory.

use core_seg::{Error, Result};

/// Histogram bins of the quantile pass.
pub const DEFAULT_BINS: usize = 4096;

/// A channel "responds to" a class when its IoU exceeds this (summary 1).
pub const IOU_HIT: f64 = 0.04;

/// Which pass [`ChannelStats::observe`] is accumulating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Min/max and the moments of the correlation.
    Range,
    /// Per-channel histograms for the threshold.
    Histogram,
    /// Intersections and unions.
    Overlap,
    Done,
}

/// Streaming accumulator of the scores of `K` channels against `C` classes.
#[derive(Debug, Clone)]
pub struct ChannelStats {
    k: usize,
    c: usize,
    quantile: f64,
    bins: usize,
    ignore: u32,
    phase: Phase,
    min: Vec<f64>,
    max: Vec<f64>,
    n: f64,
    n_c: Vec<f64>,
    sum: Vec<f64>,
    sumsq: Vec<f64>,
    /// `[k·C + c]`: Σ A[:,k] over pixels of class c.
    sum_c: Vec<f64>,
    hist: Vec<u64>,
    /// First "on" bin per channel (`None`: never on).
    cut: Vec<Option<usize>>,
    inter: Vec<u64>,
    on: Vec<u64>,
    /// Per `(k, c)`: the image with the largest intersection and its size.
    best_image: Vec<(usize, u64)>,
}

/// Final scores; matrices are row-major `[k·C + c]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelScores {
    pub channels: usize,
    pub classes: usize,
    pub iou: Vec<f64>,
    pub corr: Vec<f64>,
    /// `T_k` (lower edge of the first "on" bin; `None` for a channel that is never on).
    pub threshold: Vec<Option<f64>>,
    /// Per `(k, c)`: the image index with the largest `|M_k ∧ Y_c|`.
    pub best_image: Vec<usize>,
}

impl ChannelStats {
    pub fn new(channels: usize, classes: usize, quantile: f64, bins: usize, ignore: u32) -> Result<Self> {
        if channels == 0 || classes == 0 || bins < 2 || !(quantile > 0.0 && quantile < 1.0) {
            core_seg::bail_arg!("ChannelStats: {channels} channels, {classes} classes, q {quantile}, {bins} bins");
        }
        let (k, c) = (channels, classes);
        Ok(Self {
            k,
            c,
            quantile,
            bins,
            ignore,
            phase: Phase::Range,
            min: vec![f64::INFINITY; k],
            max: vec![f64::NEG_INFINITY; k],
            n: 0.0,
            n_c: vec![0.0; c],
            sum: vec![0.0; k],
            sumsq: vec![0.0; k],
            sum_c: vec![0.0; k * c],
            hist: vec![0; k * bins],
            cut: vec![None; k],
            inter: vec![0; k * c],
            on: vec![0; k],
            best_image: vec![(0, 0); k * c],
        })
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    fn bin(&self, ch: usize, a: f64) -> usize {
        let (lo, hi) = (self.min[ch], self.max[ch]);
        (((a - lo) / (hi - lo) * self.bins as f64).floor().max(0.0) as usize).min(self.bins - 1)
    }

    /// Adds one image: `act` is `[K, P]` (channel-major), `labels` `[P]`; pixels labelled `ignore` are skipped.
    pub fn observe(&mut self, image: usize, act: &[f32], labels: &[u32]) -> Result<()> {
        let p = labels.len();
        if act.len() != self.k * p {
            core_seg::bail_arg!("ChannelStats: {} activations for {} channels × {p} pixels", act.len(), self.k);
        }
        if let Some(&y) = labels.iter().find(|&&y| y != self.ignore && y as usize >= self.c) {
            core_seg::bail_arg!("ChannelStats: label {y} outside 0..{}", self.c);
        }
        let keep: Vec<usize> = (0..p).filter(|&i| labels[i] != self.ignore).collect();
        match self.phase {
            Phase::Range => {
                self.n += keep.len() as f64;
                for &i in &keep {
                    self.n_c[labels[i] as usize] += 1.0;
                }
                for ch in 0..self.k {
                    let a = &act[ch * p..(ch + 1) * p];
                    for &i in &keep {
                        let v = a[i] as f64;
                        self.min[ch] = self.min[ch].min(v);
                        self.max[ch] = self.max[ch].max(v);
                        self.sum[ch] += v;
                        self.sumsq[ch] += v * v;
                        self.sum_c[ch * self.c + labels[i] as usize] += v;
                    }
                }
            }
            Phase::Histogram => {
                for ch in (0..self.k).filter(|&ch| self.max[ch] > self.min[ch]) {
                    for &i in &keep {
                        let b = self.bin(ch, act[ch * p + i] as f64);
                        self.hist[ch * self.bins + b] += 1;
                    }
                }
            }
            Phase::Overlap => {
                for ch in 0..self.k {
                    let Some(cut) = self.cut[ch] else { continue };
                    let mut inter = vec![0u64; self.c];
                    for &i in &keep {
                        if self.bin(ch, act[ch * p + i] as f64) >= cut {
                            self.on[ch] += 1;
                            inter[labels[i] as usize] += 1;
                        }
                    }
                    for (c, &n) in inter.iter().enumerate() {
                        let j = ch * self.c + c;
                        self.inter[j] += n;
                        if n > self.best_image[j].1 {
                            self.best_image[j] = (image, n);
                        }
                    }
                }
            }
            Phase::Done => return Err(Error::InvalidArgument("ChannelStats: all passes are done".into())),
        }
        Ok(())
    }

    /// Ends the current pass (after the histogram pass: fixes the thresholds).
    pub fn next_phase(&mut self) {
        self.phase = match self.phase {
            Phase::Range => Phase::Histogram,
            Phase::Histogram => {
                for ch in 0..self.k {
                    self.cut[ch] = self.cut_bin(ch);
                }
                Phase::Overlap
            }
            Phase::Overlap | Phase::Done => Phase::Done,
        };
    }

    fn cut_bin(&self, ch: usize) -> Option<usize> {
        if self.max[ch] <= self.min[ch] {
            return None;
        }
        let h = &self.hist[ch * self.bins..(ch + 1) * self.bins];
        let total: u64 = h.iter().sum();
        let target = self.quantile * total as f64;
        let mut cum = 0u64;
        let q_bin = h.iter().position(|&n| {
            cum += n;
            cum as f64 >= target
        })?;
        match (q_bin + 1..self.bins).find(|&b| h[b] > 0) {
            Some(b) => Some(b),
            None => Some(q_bin),
        }
    }

    /// The scores (after the overlap pass).
    pub fn scores(&self) -> Result<ChannelScores> {
        if self.phase != Phase::Done {
            return Err(Error::InvalidArgument(format!("ChannelStats: scores asked in phase {:?}", self.phase)));
        }
        let (k, c) = (self.k, self.c);
        let (mut iou, mut corr) = (vec![0.0; k * c], vec![0.0; k * c]);
        for ch in 0..k {
            let mean = self.sum[ch] / self.n.max(1.0);
            let sd = (self.sumsq[ch] / self.n.max(1.0) - mean * mean).max(0.0).sqrt();
            for cl in 0..c {
                let j = ch * c + cl;
                let union = self.on[ch] as f64 + self.n_c[cl] - self.inter[j] as f64;
                iou[j] = if union > 0.0 { self.inter[j] as f64 / union } else { 0.0 };
                let (n1, n0) = (self.n_c[cl], self.n - self.n_c[cl]);
                if sd > 1e-12 * (1.0 + mean.abs()) && n1 > 0.0 && n0 > 0.0 {
                    let mu1 = self.sum_c[j] / n1;
                    let mu0 = (self.sum[ch] - self.sum_c[j]) / n0;
                    let p = n1 / self.n;
                    corr[j] = ((mu1 - mu0) / sd * (p * (1.0 - p)).sqrt()).clamp(-1.0, 1.0);
                }
            }
        }
        let threshold = (0..k)
            .map(|ch| self.cut[ch].map(|b| self.min[ch] + (self.max[ch] - self.min[ch]) * b as f64 / self.bins as f64))
            .collect();
        Ok(ChannelScores {
            channels: k,
            classes: c,
            iou,
            corr,
            threshold,
            best_image: self.best_image.iter().map(|b| b.0).collect(),
        })
    }
}

impl ChannelScores {
    /// `(c*(k), IoU_{k,c*})` per channel.
    pub fn best_class(&self) -> Vec<(usize, f64)> {
        (0..self.channels)
            .map(|k| {
                let row = &self.iou[k * self.classes..(k + 1) * self.classes];
                row.iter().enumerate().fold((0, f64::NEG_INFINITY), |b, (c, &v)| if v > b.1 { (c, v) } else { b })
            })
            .collect()
    }

    /// Summary 1: channels whose best IoU exceeds [`IOU_HIT`].
    pub fn channels_above(&self, thresh: f64) -> usize {
        self.best_class().iter().filter(|b| b.1 > thresh).count()
    }

    /// Summary 2: mean over classes of `max_k IoU_{k,c}`.
    pub fn mean_best_iou(&self) -> f64 {
        let best = |c: usize| (0..self.channels).map(|k| self.iou[k * self.classes + c]).fold(0.0, f64::max);
        (0..self.classes).map(best).sum::<f64>() / self.classes as f64
    }

    /// Channels sorted by best IoU (descending), the first `n`.
    pub fn top_channels(&self, n: usize) -> Vec<usize> {
        let best = self.best_class();
        let mut idx: Vec<usize> = (0..self.channels).collect();
        idx.sort_by(|&a, &b| best[b].1.total_cmp(&best[a].1).then(a.cmp(&b)));
        idx.truncate(n);
        idx
    }

    /// For class `c`, channels sorted by IoU (descending), the first `n`.
    pub fn top_for_class(&self, c: usize, n: usize) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.channels).collect();
        let v = |k: usize| self.iou[k * self.classes + c];
        idx.sort_by(|&a, &b| v(b).total_cmp(&v(a)).then(a.cmp(&b)));
        idx.truncate(n);
        idx
    }
}

/// All three passes over in-memory data (`act[i]` `[K, P_i]`, `labels[i]` `[P_i]`), for tests and small sets.
pub fn score_in_memory(act: &[Vec<f32>], labels: &[Vec<u32>], stats: &mut ChannelStats) -> Result<ChannelScores> {
    for _ in 0..3 {
        for (i, (a, y)) in act.iter().zip(labels).enumerate() {
            stats.observe(i, a, y)?;
        }
        stats.next_phase();
    }
    stats.scores()
}
