//! Segmentation heads on the backbone, split in two stages so that methods can work on the ASPP features
//! (GuidedMix mixes them between images and runs a second head's last stage on the mixture):
//! ```text
//! features: (c1, c4) → HeadFeatures { aspp: A = cat[ASPP branches], low: reduce(c1) (v3+ only) }
//! tail:     A (, low) → (feature map, logits at feature resolution)
//! ```
//! - [`HeadKind::Deeplabv3plus`]: UniMatch's decoder (`model/semseg/deeplabv3plus.py`). `A = cat[b0, b1, b2, b3,
//!   pool]` (5·C_a channels); tail = `project` 1×1 → bilinear (align_corners = true) to c1's size →
//!   `cat[reduce(c1), ·]` → `fuse` (two 3×3) → `classifier`; stride 4. Names `head.b0.0`, `head.b4.gap.1`,
//!   `head.project.0`, `reduce.0`, `fuse.0`, `fuse.3`, `classifier` (no prefix of its own).
//! - [`HeadKind::Deeplabv3`]: mmsegmentation's `ASPPHead` (DeepLabV3, what GuidedMix's configs build).
//!   `A = cat[up(image_pool(c4)), a_1, a_12, a_24, a_36]`; tail = `bottleneck` 3×3 → Dropout2d → `conv_seg` 1×1;
//!   stride = output stride; logits resized with align_corners = false. Names `image_pool.1.conv`,
//!   `image_pool.1.bn`, `aspp_modules.{0..3}.{conv,bn}`, `bottleneck.{conv,bn}`, `conv_seg` under the model's
//!   `decode_head.` prefix. Init as mmcv: convs Kaiming normal (fan_out, ReLU), `conv_seg` N(0, 0.01), bias 0.
//!
//! The classifier dropout (mmseg's `dropout_ratio`) needs an RNG, so it is applied only when the caller passes
//! one to [`SegHead::tail`]; [`super::DeepLabV3Plus::forward_full`] passes none.

use candle_core::Tensor;
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use super::deeplab::DeepLabConfig;
use crate::nn::{BatchNorm2d, BnConfig, Conv2d, ConvConfig, Mode, KAIMING_FAN_OUT};
use crate::ops::{dropout2d, resize_bilinear};
use crate::rng::SegRng;
use crate::Result;

/// `model.head`: which decoder sits on the backbone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum HeadKind {
    /// UniMatch's DeepLabV3+ (ASPP + low-level decoder).
    #[default]
    Deeplabv3plus,
    /// mmseg's DeepLabV3 `ASPPHead` (no low-level decoder, classifier dropout).
    Deeplabv3,
}

impl HeadKind {
    /// Prefix of the model's head parameters (`decode_head` for DeepLabV3; none for UniMatch's DeepLabV3+).
    pub fn prefix(self) -> Option<&'static str> {
        match self {
            HeadKind::Deeplabv3plus => None,
            HeadKind::Deeplabv3 => Some("decode_head"),
        }
    }
}

/// The head's first-stage output: the ASPP concatenation `A [B, 5·C_a, h, w]` and, for DeepLabV3+, the
/// reduced low-level map `reduce(c1) [B, C_r, h1, w1]`.
#[derive(Debug, Clone)]
pub struct HeadFeatures {
    pub aspp: Tensor,
    pub low: Option<Tensor>,
}

impl HeadFeatures {
    /// Applies `f` to every tensor (e.g. a row selection).
    pub fn map(&self, f: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Self> {
        Ok(Self { aspp: f(&self.aspp)?, low: self.low.as_ref().map(&f).transpose()? })
    }

    /// `a·self + b·other`, tensor by tensor (GuidedMix's feature mix).
    pub fn affine_mix(&self, a: f64, other: &Self, b: f64) -> Result<Self> {
        let mix = |x: &Tensor, y: &Tensor| -> Result<Tensor> { Ok(((x * a)? + (y * b)?)?) };
        let low = match (&self.low, &other.low) {
            (Some(x), Some(y)) => Some(mix(x, y)?),
            (None, None) => None,
            _ => crate::bail_arg!("HeadFeatures::affine_mix: one side has a low-level map, the other not"),
        };
        Ok(Self { aspp: mix(&self.aspp, &other.aspp)?, low })
    }
}

/// A conv without bias followed by BN (and ReLU in [`cbr`]).
type ConvBn = (Conv2d, BatchNorm2d);

#[allow(clippy::too_many_arguments)]
fn conv_bn(
    cin: usize,
    cout: usize,
    k: usize,
    dil: usize,
    init: Option<Init>,
    vb: &VarBuilder,
    conv: &str,
    bn: &str,
) -> Result<ConvBn> {
    let pad = if k == 1 { 0 } else { dil };
    let cfg = ConvConfig { stride: 1, padding: pad, dilation: dil, groups: 1 };
    Ok((
        Conv2d::new(cin, cout, k, cfg, false, init, vb.pp(conv))?,
        BatchNorm2d::new(cout, BnConfig::default(), vb.pp(bn))?,
    ))
}

fn cbr(cb: &ConvBn, x: &Tensor, mode: Mode) -> Result<Tensor> {
    cb.1.forward_act(&cb.0.forward(x)?, mode, None, true)
}

/// Global average pooling → conv-BN-ReLU → bilinear up of the 1×1 map (a broadcast for either corner rule).
fn pool_branch(cb: &ConvBn, x: &Tensor, mode: Mode) -> Result<Tensor> {
    let (n, _, h, w) = x.dims4()?;
    let g = cbr(cb, &x.mean_keepdim((2, 3))?, mode)?;
    Ok(g.broadcast_as((n, g.dim(1)?, h, w))?.contiguous()?)
}

fn maybe_dropout(x: Tensor, dropout: Option<(f64, &mut SegRng)>) -> Result<Tensor> {
    match dropout {
        Some((p, rng)) if p > 0.0 => dropout2d(&x, p, rng),
        _ => Ok(x),
    }
}

/// UniMatch's DeepLabV3+ decoder.
pub struct V3PlusHead {
    branches: Vec<ConvBn>,
    pool: ConvBn,
    project: ConvBn,
    reduce: ConvBn,
    fuse: [ConvBn; 2],
    classifier: Conv2d,
}

/// mmseg's `ASPPHead` (DeepLabV3).
pub struct AsppHead {
    image_pool: ConvBn,
    aspp_modules: Vec<ConvBn>,
    bottleneck: ConvBn,
    conv_seg: Conv2d,
}

/// A segmentation head of either kind (built once per model: the variants' size difference does not matter).
#[allow(clippy::large_enum_variant)]
pub enum SegHead {
    V3Plus(V3PlusHead),
    V3(AsppHead),
}

impl SegHead {
    /// Builds the head `cfg.head` names, parameters relative to `vb`. `tail_in` overrides the input width of
    /// the tail (`project` / `bottleneck`), default `5·C_a` (for a tail fed by a transformed `A`).
    pub fn new(cfg: &DeepLabConfig, tail_in: Option<usize>, vb: VarBuilder) -> Result<Self> {
        let [low, _, _, high] = cfg.encoder_channels()?;
        let ca = cfg.aspp_channels.unwrap_or(high / 8);
        let rates = cfg.rates();
        let tail_in = tail_in.unwrap_or(5 * ca);
        match cfg.head {
            HeadKind::Deeplabv3plus => {
                let h = vb.pp("head");
                let mut branches = vec![conv_bn(high, ca, 1, 1, None, &h.pp("b0"), "0", "1")?];
                for (i, &r) in rates.iter().enumerate() {
                    branches.push(conv_bn(high, ca, 3, r, None, &h.pp(format!("b{}", i + 1)), "0", "1")?);
                }
                let pool = conv_bn(high, ca, 1, 1, None, &h.pp("b4.gap"), "1", "2")?;
                let project = conv_bn(tail_in, ca, 1, 1, None, &h.pp("project"), "0", "1")?;
                let reduce = conv_bn(low, cfg.reduce_channels, 1, 1, None, &vb.pp("reduce"), "0", "1")?;
                let (f, fc) = (vb.pp("fuse"), cfg.fuse_channels);
                let fuse = [
                    conv_bn(ca + cfg.reduce_channels, fc, 3, 1, None, &f, "0", "1")?,
                    conv_bn(fc, fc, 3, 1, None, &f, "3", "4")?,
                ];
                let classifier =
                    Conv2d::new(fc, cfg.nclass, 1, ConvConfig::default(), true, None, vb.pp("classifier"))?;
                Ok(SegHead::V3Plus(V3PlusHead { branches, pool, project, reduce, fuse, classifier }))
            }
            HeadKind::Deeplabv3 => {
                let k = Some(KAIMING_FAN_OUT);
                let image_pool = conv_bn(high, ca, 1, 1, k, &vb.pp("image_pool.1"), "conv", "bn")?;
                let mut aspp_modules = vec![conv_bn(high, ca, 1, 1, k, &vb.pp("aspp_modules.0"), "conv", "bn")?];
                for (i, &r) in rates.iter().enumerate() {
                    aspp_modules.push(conv_bn(
                        high,
                        ca,
                        3,
                        r,
                        k,
                        &vb.pp(format!("aspp_modules.{}", i + 1)),
                        "conv",
                        "bn",
                    )?);
                }
                let bottleneck = conv_bn(tail_in, ca, 3, 1, k, &vb.pp("bottleneck"), "conv", "bn")?;
                let seg_init = Some(Init::Randn { mean: 0.0, stdev: 0.01 });
                let mut conv_seg =
                    Conv2d::new(ca, cfg.nclass, 1, ConvConfig::default(), false, seg_init, vb.pp("conv_seg"))?;
                conv_seg.bias = Some(vb.pp("conv_seg").get_with_hints(cfg.nclass, "bias", Init::Const(0.0))?);
                Ok(SegHead::V3(AsppHead { image_pool, aspp_modules, bottleneck, conv_seg }))
            }
        }
    }

    /// Channels of `A` (`5·C_a`).
    pub fn aspp_width(&self) -> usize {
        let w = |cb: &ConvBn| cb.0.weight.dim(0).unwrap_or(0);
        match self {
            SegHead::V3Plus(h) => 5 * w(&h.pool),
            SegHead::V3(h) => 5 * w(&h.image_pool),
        }
    }

    /// The corner rule of the final logit upsampling (UniMatch: true; mmseg: false).
    pub fn align_corners(&self) -> bool {
        matches!(self, SegHead::V3Plus(_))
    }

    /// The 1×1 classifier that maps the feature map of [`Self::tail`] to logits (`classifier` of DeepLabV3+,
    /// `conv_seg` of DeepLabV3).
    pub fn classifier(&self) -> &Conv2d {
        match self {
            SegHead::V3Plus(h) => &h.classifier,
            SegHead::V3(h) => &h.conv_seg,
        }
    }

    /// First stage: the ASPP concatenation on c4 (and `reduce(c1)` for DeepLabV3+).
    pub fn features(&self, c1: &Tensor, c4: &Tensor, mode: Mode) -> Result<HeadFeatures> {
        match self {
            SegHead::V3Plus(h) => {
                let mut feats = h.branches.iter().map(|b| cbr(b, c4, mode)).collect::<Result<Vec<_>>>()?;
                feats.push(pool_branch(&h.pool, c4, mode)?);
                Ok(HeadFeatures { aspp: Tensor::cat(&feats, 1)?, low: Some(cbr(&h.reduce, c1, mode)?) })
            }
            SegHead::V3(h) => {
                let mut feats = vec![pool_branch(&h.image_pool, c4, mode)?];
                for m in &h.aspp_modules {
                    feats.push(cbr(m, c4, mode)?);
                }
                Ok(HeadFeatures { aspp: Tensor::cat(&feats, 1)?, low: None })
            }
        }
    }

    /// Second stage: `(feature map before the classifier, logits)` at the head's output resolution. With
    /// `dropout = Some((p, rng))` a Dropout2d(p) precedes the classifier (mmseg's `cls_seg`).
    pub fn tail(&self, f: &HeadFeatures, mode: Mode, dropout: Option<(f64, &mut SegRng)>) -> Result<(Tensor, Tensor)> {
        let (_, x, logits) = self.tail_full(f, mode, dropout)?;
        Ok((x, logits))
    }

    /// [`Self::tail`] that also returns (first) the projected ASPP map on the c4 grid: `project` of DeepLabV3+,
    /// `bottleneck` of DeepLabV3 (there the same tensor as the feature map).
    pub fn tail_full(
        &self,
        f: &HeadFeatures,
        mode: Mode,
        dropout: Option<(f64, &mut SegRng)>,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        match self {
            SegHead::V3Plus(h) => {
                let Some(low) = &f.low else {
                    crate::bail_arg!("DeepLabV3+ tail needs the low-level map (HeadFeatures::low)");
                };
                let (_, _, h1, w1) = low.dims4()?;
                let proj = cbr(&h.project, &f.aspp, mode)?;
                let high = resize_bilinear(&proj, (h1, w1), true)?;
                let mut x = Tensor::cat(&[low.clone(), high], 1)?;
                for cb in &h.fuse {
                    x = cbr(cb, &x, mode)?;
                }
                let logits = h.classifier.forward(&maybe_dropout(x.clone(), dropout)?)?;
                Ok((proj, x, logits))
            }
            SegHead::V3(h) => {
                let x = cbr(&h.bottleneck, &f.aspp, mode)?;
                let logits = h.conv_seg.forward(&maybe_dropout(x.clone(), dropout)?)?;
                Ok((x.clone(), x, logits))
            }
        }
    }
}
