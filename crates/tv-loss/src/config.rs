//! Configuration of the TV term (`[tv]` in run configs, `docs/tv-loss.md`).
//!
//! The paper gives neither the exact TV form, the normalisation, λ nor a schedule: every default below tagged
//! "[design]" is this project's choice, documented in `docs/tv-loss.md`.

use core_seg::{Error, Result};
use serde::{Deserialize, Serialize};

/// Which discretisation of `‖∇P‖₁` is penalised (`tv.variant`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum TvVariant {
    /// Anisotropic, per class: `Σ vx·ρ(DxP) + vy·ρ(DyP)` (the literal "L1 of the gradient") [design default].
    #[default]
    A,
    /// Isotropic per class: `Σ sqrt(vx·DxP² + vy·DyP² + ε) − √ε`.
    B,
    /// Vectorial (classes coupled): `Σ_{n,i,j} sqrt(Σ_k vx·DxP² + vy·DyP² + ε) − √ε`.
    C,
}

/// Normaliser `Z` of the raw sum (`tv.normalize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TvNormalize {
    /// `Z = K·Σ_n ΣV_n` (A, B) or `Σ_n ΣV_n` (C): a per-pixel (per-class) mean [design default].
    #[default]
    Mean,
    /// `Z = 1`.
    Sum,
}

/// Which predictions the term is applied to (`tv.apply_to`; the brief's `on` is an alias).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ApplyTo {
    /// Supervised → labelled batch; FixMatch/UniMatch → labelled batch + train-mode weak view [design default].
    #[default]
    Auto,
    /// The labelled batch only.
    Labeled,
    /// The train-mode weak-view prediction only (error under the supervised framework).
    #[serde(alias = "unlabeled")]
    UnlabeledWeak,
    /// Labelled + weak view (error under the supervised framework, unlike `auto`).
    Both,
    /// Labelled + weak + the two strong views (an extra train-mode forward of the un-mixed strong views).
    AllViews,
}

/// Resolution the TV is measured at (`tv.at`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TvAt {
    /// Softmax of the full-resolution logits [design default].
    #[default]
    Output,
    /// Softmax of the stride-4 decoder logits before the bilinear upsampling (≈16× fewer terms).
    Decoder,
}

/// Implementation of the loss (`tv.kernel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TvKernel {
    /// The fused kernel where it applies (variant A, no curvilinear switch, f32/f64 on CPU or — with the
    /// `cuda` feature — f32/f64/bf16 on CUDA), else the composite.
    #[default]
    Auto,
    /// Differentiable Candle primitives (the reference; any device and dtype).
    Composite,
    /// The fused CPU kernel ([`crate::fused`]); an error where it does not apply.
    Fused,
}

/// The curvilinear-structure variant (speculative, off by default).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CurvilinearConfig {
    pub enabled: bool,
    /// The foreground (curvilinear) class whose TV is replaced by the along-structure penalty.
    pub fg_class: usize,
    /// σ of the Gaussian that smooths the structure tensor, in pixels [design: 2].
    pub rho: f64,
}

impl Default for CurvilinearConfig {
    fn default() -> Self {
        Self { enabled: false, fg_class: 1, rho: 2.0 }
    }
}

/// `[tv]`: `L = L_base + λ(t)·TV(softmax(z))`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TvConfig {
    /// Whether run configs add the term at all (`build` does not look at it).
    pub enabled: bool,
    pub variant: TvVariant,
    /// Charbonnier ε of `ρ_ε(d) = sqrt(d² + ε) − √ε`. `None` = the variant's default: 0 for A (exact L1,
    /// sub-gradient sign(0) = 0), 1e-6 for B and C [design].
    pub eps: Option<f64>,
    pub normalize: TvNormalize,
    /// λ [design: 0.1; sweep {0.01, 0.03, 0.1, 0.3, 1} per dataset on validation].
    pub weight: f64,
    /// Linear ramp of λ over the first `warmup_frac` of the iterations [design: 0; option 0.1].
    pub warmup_frac: f64,
    #[serde(alias = "on")]
    pub apply_to: ApplyTo,
    pub at: TvAt,
    pub curvilinear: CurvilinearConfig,
    pub kernel: TvKernel,
    /// Weight each difference by the image contrast `exp(−‖x_p − x_q‖²/2σ²)` ([`crate::contrast`]) [design
    /// extension, default false: the abstract's TV is unweighted].
    pub contrast: bool,
}

impl Default for TvConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            variant: TvVariant::A,
            eps: None,
            normalize: TvNormalize::Mean,
            weight: 0.1,
            warmup_frac: 0.0,
            apply_to: ApplyTo::Auto,
            at: TvAt::Output,
            curvilinear: CurvilinearConfig::default(),
            kernel: TvKernel::Auto,
            contrast: false,
        }
    }
}

impl TvConfig {
    /// ε actually used (the variant's default when unset).
    pub fn eps(&self) -> f64 {
        self.eps.unwrap_or(match self.variant {
            TvVariant::A => 0.0,
            TvVariant::B | TvVariant::C => 1e-6,
        })
    }

    /// `λ(t) = λ·min(1, t / (warmup_frac·T))` for iteration `t` (0-based) of `T`; `λ` when there is no warm-up.
    pub fn weight_at(&self, iter: usize, total_iters: usize) -> f64 {
        let ramp = self.warmup_frac * total_iters as f64;
        if self.warmup_frac <= 0.0 || ramp <= 0.0 {
            self.weight
        } else {
            self.weight * (iter as f64 / ramp).min(1.0)
        }
    }

    /// Rejects values the loss cannot honour.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("tv: {m}")));
        if !self.weight.is_finite() || self.weight < 0.0 {
            return bad(format!("weight must be finite and >= 0, got {}", self.weight));
        }
        if !(0.0..=1.0).contains(&self.warmup_frac) {
            return bad(format!("warmup_frac must be in [0, 1], got {}", self.warmup_frac));
        }
        let eps = self.eps();
        if !eps.is_finite() || eps < 0.0 {
            return bad(format!("eps must be finite and >= 0, got {eps}"));
        }
        let c = &self.curvilinear;
        if self.contrast && (c.enabled || self.at == TvAt::Decoder || self.kernel == TvKernel::Fused) {
            return bad("contrast weights need tv.at = output, no curvilinear variant and kernel auto|composite".into());
        }
        if c.enabled {
            if self.variant == TvVariant::C {
                return bad("curvilinear replaces one class's TV: use variant A or B, not the coupled C".into());
            }
            if !c.rho.is_finite() || c.rho < 0.0 {
                return bad(format!("curvilinear.rho must be finite and >= 0, got {}", c.rho));
            }
        }
        Ok(())
    }
}
