//! # Image reconstruction as an auxiliary task for semi-supervised segmentation
//!
//! Lin, Xu, Liu, Zou, Shi, "Revisiting Image Reconstruction for Semi-supervised Semantic Segmentation"
//! (arXiv 2303.09794, DICTA 2023). Only the abstract is available and no code exists: everything below beyond
//! "autoencoding through a bottleneck latent representation as an auxiliary task", "channels correlating with
//! semantic concepts" and "a modification disentangling the object clue from the background patterns" is this
//! project's reading (tagged [design] in `docs/aux-recon.md`); every choice is a key of [`ReconConfig`]
//! whose alternatives run. None of the disentangled modes is "the paper's method".
//!
//! ## Base
//! Any framework of the project (supervised, mean teacher, FixMatch, UniMatch), unchanged. From its step we take
//! the clean train-mode forward on `cat(x_l, x_w)` (`x_l` alone for supervised): the encoder's bottleneck
//! features `f = c4` (or the ASPP output), the detached prediction `P`, the valid maps `V`, the ground truth `y`
//! and the weak view's pseudo-labels `ŷ` with confidence `q`; optionally the CutMixed strong views' pass.
//!
//! ## Decoder R ([`decoder`])
//! ```text
//! z0 = ReLU(BN(Conv1x1(f)));   u_i = ReLU(BN(Conv3x3(Up2x(u_{i−1}))))  (i = 1 … S);   x̂ = Resize_{H×W}(Conv3x3(u_S))
//! ```
//! `S = log2(output_stride)` stages, widths `[256, 128, 64, 32, 32]` at OS 16; no skip connection (the bottleneck
//! carries the whole image), no output activation (the target is the normalised image).
//!
//! ## Loss ([`loss`])
//! ```text
//! L_rec = Σ_{n,p} V_n(p)·Σ_ch (x̂[n,ch,p] − sg(x[n,ch,p]))² / (3·Σ_{n,p} V_n(p))        (|·| for recon.loss = l1)
//! L = L_base + λ_rec(t)·L_rec,     λ_rec(t) = λ·min(1, t / warmup_iters),  λ = 1, warmup_iters = 0
//! ```
//! over the clean views the student already forwards with gradient (`recon.views = auto`), padded pixels
//! (`V = 0`) excluded; `L_rec` flows into the encoder (`recon.detach = true` stops it, a diagnostic control).
//!
//! ## Object/background disentangling (`recon.mode`, [`foreground`])
//! With the detached foreground probability `m` — `[y ∈ fg]` on labelled pixels, `[ŷ ∈ fg]` on confident
//! (`q ≥ τ`) unlabelled pixels, `Σ_{c∈fg} P_c` elsewhere:
//! ```text
//! plain   (default)  L_rec as above
//! fgbg               x̂ = m⊙x̂_o + (1 − m)⊙x̂_b, x̂_o / x̂_b from the two halves of u_S;  L_rec(x̂)
//! fgonly             L_rec = Σ V·m·Σ_ch e / (3·Σ V·m)          (0 when Σ V·m = 0)
//! ```
//! In `fgbg` the object head gets no gradient from pixels with `m = 0`, in `fgonly` background pixels do not
//! enter the loss at all. (`bgswap`, compositing foregrounds onto other backgrounds, is not implemented.)
//!
//! ## Diagnostic ([`channels`])
//! Per-channel activations of an intermediate layer of R (`u2`) are thresholded at their 0.995 quantile and
//! scored against every class mask (IoU, point-biserial correlation), `cargo xtask diagnose recon-channels`.
//!
//! ## Use
//! ```text
//! let store = trainer.store.clone();
//! trainer.add_aux_term(|vb| aux_recon::build(&cfg, Some(&semi), &model_cfg,
//!     aux_recon::var_builder(&store, seed, vb.dtype(), vb.device())))?;
//! ```

pub mod channels;
pub mod config;
pub mod decoder;
pub mod foreground;
pub mod loss;
pub mod plugin;
pub mod term;

pub use channels::{ChannelScores, ChannelStats, Phase};
pub use config::{
    layer_index, DiagnoseConfig, FgSourceL, FgSourceU, Geometry, ReconConfig, ReconInput, ReconLoss, ReconMode,
    ValidFrom, Views, DEFAULT_WIDTHS,
};
pub use decoder::{ReconDecoder, ReconOutput};
pub use loss::{compose, masked_rec_loss, psnr};
pub use plugin::Plugin;
pub use term::{build, var_builder, ReconStep, ReconTerm, PREFIX, RECON_STREAM};
