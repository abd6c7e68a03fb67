//! # GuidedMix-Net: labelled images as reference for unlabelled ones
//!
//! Tu, Huang, Zheng, He, Cao, Shao, "GuidedMix-Net: Semi-Supervised Semantic Segmentation by Using Labeled
//! Images as Reference", AAAI 2022 (arXiv 2112.14015); extended version arXiv 2106.15064. The papers' full
//! texts are not available to this project; the official code (`yh-pengtu/GuidedMix-Net`, an mmsegmentation
//! 0.27 fork) is the precise specification and differs from the papers (`docs/guidedmix.md` lists how).
//! The default of every key of [`GuidedMixConfig`] is the code ("GM-code"); the papers' readings are switches.
//!
//! ## Network
//! The code builds DeepLabV3 (mmseg `ASPPHead`) on ResNetV1c at output stride 8: `[model] head = "deeplabv3"`,
//! `stem = "v1c"`, `output_stride = 8` (`core_seg::model::head`). A second head of the same kind, the *mixed
//! head* (`decode_head_mix.*`), is owned by this framework; inference uses the backbone and main head only.
//! Each head is split as `A = features(F)` (the ASPP concatenation, 5·512 channels) and `z = tail(A)`
//! (`bottleneck` → Dropout2d(0.1) → `conv_seg`), so logits `z` are at 1/8 resolution.
//!
//! ## One step ([`framework`])
//! With `B` labelled `(x_l, y_l)` and `B` unlabelled `x_u`:
//! ```text
//! F = backbone(cat(x_l, x_u));   A_l, A_u = features(F_l), features(F_u);   z_l, z_u = tail(A_l), tail(A_u)
//! L_sup = Σ_p [y_p ≠ 255]·CE_p(up(z_l), y_l) / (B·H·W)                         (mmseg: mean over all pixels)
//! λ ~ U(0, min(½, lambda_factor));   pairs (l_k, u_k) = (k, perm[k])             (pairing)
//! A_m = λ·A_l[l_k] + (1 − λ)·A_u[u_k];   A_m ← MITrans(A_m) if on;   z_m = tail_mix(A_m)
//! z̃_u = z_m − λ·z_l[l_k]                                                        (decoupling)
//! L_uns = w·Focal(z̃_u, argmax sg(z_u[u_k]))        w = 10, γ = ½, α = ½         (mask generation)
//! L = L_sup + L_uns
//! ```
//! The target `z_u` is detached: the unlabelled images are learnt through the mixed pathway (the backbone via
//! `F_u`, the main ASPP via `A_u`, the main head's tail via `z_l` with coefficient −λ).
//!
//! ## Switches (the papers' readings, [`config`])
//! - `pairing = "similar"` ([`pairing::similar_pairs`]): `l(j) = argmax_i cos(GAP(F_u[j]), GAP(F_l[i]))`,
//!   optionally with `align_weight·mean_k (1 − cos(g_l[l_k], g_u[u_k]))`.
//! - `mix_space = "image"`: `x_m = λ·x_l[l_k] + (1 − λ)·x_u[u_k]`, `z_m` = the whole mixed network on `x_m`.
//! - `detach_labeled = true`: `z̃_u = z_m − λ·sg(z_l[l_k])`, so `L_uns` no longer pushes the labelled logits
//!   away from the unlabelled image's pseudo-label (the main tail then learns from `L_sup` alone).
//! - `mitrans = true` ([`mitrans`]): three 3×3 convs and a non-local block on `A_m`.
//! - `direction = "paper"`: `L_uns = w·ℓ(z_u[u_k], argmax sg(z̃_u))` (the mixed-data pseudo mask supervises the
//!   unlabelled prediction) and the mixed head learns from
//!   `L_ldec = λ·w·Focal(z_m − (1 − λ)·z_u[u_k], argmax sg(z_l[l_k]))` (weight `labeled_decouple_weight`).
//! - `unsup_loss = "ce"`, `ce_reduction = "valid_pixels"`; `[model] head = "deeplabv3plus"` mixes UniMatch's
//!   DeepLabV3+ ASPP concatenation and its reduced c1 with the same λ and pairs (logits at stride 4).
//!
//! ## Losses ([`loss`])
//! The sigmoid focal loss is composed from Candle ops with a stable softplus, so no backward is hand-written.
//!
//! ## Use
//! ```text
//! let build = |vb| guidedmix::build(&gm_cfg, &model_cfg, vb);
//! let mut t = Trainer::with_framework(&model_cfg, train_cfg, build, DType::F32, &dev)?;
//! ```

pub mod config;
pub mod framework;
pub mod loss;
pub mod mitrans;
pub mod pairing;
pub mod plugin;

pub use config::{CeReduction, Direction, GuidedMixConfig, MixSpace, Pairing, UnsupLoss};
pub use framework::{build, mix_head_prefix, Forced, GuidedMix, MixParts, MixStep};
pub use mitrans::{MITrans, NonLocal2d};
pub use plugin::Plugin;
