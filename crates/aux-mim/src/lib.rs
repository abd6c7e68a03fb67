//! # S4MIM: masked image modeling for semi-supervised semantic segmentation
//!
//! Li, Hao, Shang, Jiao, "Masked Image Modeling Boosting Semi-Supervised Semantic Segmentation"
//! (arXiv 2411.08756). Only the abstract is available to this project; everything below beyond its three
//! sentences is this project's reading (tagged [design] in `docs/aux-mim.md`), and every choice is a
//! key of [`MimConfig`] whose alternatives run.
//!
//! ## Base
//! UniMatch (or FixMatch) unchanged. From its step we take `x [B,3,S,S]`, the pseudo-label `ŷ = argmax sg(P_w)`
//! with confidence `q` (ground truth `y` for labelled images), the valid map, and the decoder feature map
//! `F = fuse(·) [·,256,⌈S/4⌉,⌈S/4⌉]`. The MIM branch draws its masks from its own stream ([`term::mim_rng`]).
//!
//! ## Patch masks ([`mask`])
//! `M [B,S,S]`: the image is tiled by `P×P` cells (`n = ⌈S/P⌉`), exactly `round(r·n²)` cells (or Bernoulli(r)
//! each) are masked (`M = 1`).
//!
//! ## 1. Class-wise MIM ([`classwise`], [`head`])
//! For every class `c` of image `b`, with region `R_{b,c} = [ŷ_b = c] ∧ valid_b ∧ [q_b ≥ τ_m]`,
//! ```text
//! Vis = R·(1 − M),  Msk = R·M,   X̃ = x_b ⊙ Vis           (other classes never serve as context)
//! X̂ = crop_S(PixelShuffle_4(Conv1x1_{256→48}(F(X̃))))
//! L_cmim = Σ Msk·|X̂ − sg(x_b)| / (3·Σ Msk + 1e-5)
//! ```
//! at most `Kmax` classes per image (sampled ∝ |R|) and `N_max` samples per step, all in one forward.
//! Plain MIM (`mode = plain`, the ablation) reconstructs `x ⊙ (1 − M) ⊙ valid` instead.
//!
//! ## 2. Feature aggregation ([`aggregation`])
//! With `Vis↓, Msk↓` the masks average-pooled to feature resolution and `μV_n = Σ Vis↓ F / Σ Vis↓`,
//! ```text
//! L_fa = Σ_{n,p} Msk↓_n(p)·(1 − cos(F_n(p), sg(μV_n))) / Σ_{n,p} Msk↓_n(p)        (pixel → prototype)
//! L_fa = mean_n (1 − cos(μM_n, μV_n))                                           (prototype ↔ prototype)
//! ```
//!
//! ## 3. MIM in semantic space ([`semantic`])
//! S1 (default): `L_sem = UniMatchCE(model(x_w ⊙ (1 − M')), ŷ_w, q_w ≥ τ)`; S2: the same supervision on the
//! decoder run with `c1 ⊙ (1 − M'_4)`, `c4 ⊙ (1 − M'_16)`.
//!
//! ## Total ([`term`])
//! ```text
//! L = L_UniMatch + λ_rec(t)·L_cmim + λ_fa(t)·L_fa + λ_sem(t)·L_sem,   λ(t) = λ·min(1, t / (E_w·iters_per_epoch))
//! ```
//! with `λ_rec = 1`, `λ_fa = 0.1`, `λ_sem = 0.5`, `E_w = 1` epoch.
//!
//! **Measured** (`cargo xtask reproduce mim-synthetic`: synthetic scenes, 1/16 labels, 1000 iterations,
//! `λ_rec = 0.1`, 3 seeds; `results/mim-synthetic/report.md`, `docs/aux-mim.md`): UniMatch 47.78 ± 1.09 mIoU;
//! with plain MIM 47.17 ± 1.10, class-wise MIM 46.73 ± 1.14, feature aggregation 46.06 ± 0.63, semantic MIM
//! (full S4MIM) 44.83 ± 0.68. No term helps at this budget.
//!
//! ## Use
//! ```text
//! let mut mim = aux_mim::MimConfig::default();
//! mim.iters_per_epoch = Some(iters_per_epoch);
//! trainer.add_aux_term(|vb| aux_mim::build(&mim, &model_cfg, vb))?;
//! ```

pub mod aggregation;
pub mod classwise;
#[cfg(feature = "cuda")]
pub mod classwise_cuda;
pub mod config;
pub mod head;
pub mod mask;
pub mod plugin;
pub mod semantic;
pub mod term;

pub use config::{
    FaConfig, FaMode, FeatureLevel, MaskConfig, MaskSampling, MimBn, MimConfig, MimMode, RecConfig, RecLoss, S2Fp,
    SemConfig, SemForward, SemMode, Source, VisibleFrom,
};
pub use plugin::Plugin;
pub use term::{build, build_with_semi, MimTerm};
