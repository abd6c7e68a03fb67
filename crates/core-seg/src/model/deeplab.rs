//! DeepLabV3+ exactly as UniMatch (`model/semseg/deeplabv3plus.py`): ASPP on c4, 48-channel reduction of
//! c1, two 3×3 fuse convs, a 1×1 classifier, bilinear (align_corners = true) upsampling. Parameter names
//! are UniMatch's `state_dict` names (`backbone.*`, `head.b0.0.weight`, `head.b4.gap.1.weight`,
//! `reduce.0.weight`, `fuse.3.weight`, `classifier.bias`, …). With `head = "deeplabv3"` the decoder is
//! mmsegmentation's DeepLabV3 `ASPPHead` instead (`decode_head.*`, see [`super::head`]); with `stem = "v1c"`
//! the backbone is mmseg's ResNetV1c (`backbone.stem.*`): together with `output_stride = 8` this is the
//! network GuidedMix-Net's configs build. With `backbone = "mobilenet_v2"` the encoder is torchvision's
//! MobileNetV2 (`backbone.features.*`) as in DeepLabV3Plus-Pytorch: low-level features = `features[0:4]`
//! (24 channels at width 1), high-level = `features[4:18]` (320 channels), dilated to OS 16 or 8.

use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::encoder::{Backbone, Encoder, EncoderFeatures};
use super::head::{HeadKind, SegHead};
use super::mobilenet::MobileNetConfig;
use super::resnet::{ResNetConfig, Stem};
use crate::nn::Mode;
use crate::ops::{dropout2d, resize_bilinear};
use crate::rng::SegRng;
use crate::Result;

/// Model configuration; defaults are UniMatch's VOC model (R-101, deep stem, OS 16, 21 classes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeepLabConfig {
    pub backbone: Backbone,
    /// ResNet stem (ResNets only).
    pub stem: Stem,
    /// First-stage width of a ResNet (64 standard; smaller for CPU-sized models).
    pub base_width: usize,
    /// MobileNetV2 width multiplier (torchvision's `width_mult`, channels rounded to multiples of 8); 1.0 for
    /// ResNets.
    pub width_mult: f64,
    /// 16 (`replace_stride_with_dilation = [F,F,T]`) or 8 (`[F,T,T]`).
    pub output_stride: usize,
    /// ASPP rates; `None` = (6, 12, 18) at OS 16, doubled at OS 8.
    pub dilations: Option<[usize; 3]>,
    /// ASPP width (and DeepLabV3's bottleneck width); `None` = c4 channels / 8 (UniMatch's formula; mmseg's
    /// DeepLabV3 uses 512 = c4 / 4).
    pub aspp_channels: Option<usize>,
    pub reduce_channels: usize,
    pub fuse_channels: usize,
    pub nclass: usize,
    /// The decoder: UniMatch's DeepLabV3+ (default) or mmseg's DeepLabV3 ASPP head (GuidedMix's configs).
    pub head: HeadKind,
}

impl Default for DeepLabConfig {
    fn default() -> Self {
        Self {
            backbone: Backbone::Resnet101,
            stem: Stem::Deep,
            base_width: 64,
            width_mult: 1.0,
            output_stride: 16,
            dilations: None,
            aspp_channels: None,
            reduce_channels: 48,
            fuse_channels: 256,
            nclass: 21,
            head: HeadKind::Deeplabv3plus,
        }
    }
}

impl DeepLabConfig {
    /// Every layer width is at least 1 (a zero width would build empty convolutions).
    fn check_widths(&self) -> Result<()> {
        let widths = [
            ("base_width", self.base_width),
            ("aspp_channels", self.aspp_channels.unwrap_or(1)),
            ("reduce_channels", self.reduce_channels),
            ("fuse_channels", self.fuse_channels),
            ("nclass", self.nclass),
        ];
        match widths.iter().find(|(_, w)| *w == 0) {
            Some((key, _)) => crate::bail_arg!("model.{key} must be at least 1, got 0"),
            None => Ok(()),
        }
    }

    /// The ResNet of a `resnet*` backbone (an error for MobileNetV2 or a `width_mult` other than 1).
    pub fn resnet(&self) -> Result<ResNetConfig> {
        self.check_widths()?;
        let Some(depth) = self.backbone.resnet_depth() else {
            crate::bail_arg!("model.backbone = {} is not a ResNet", self.backbone.name());
        };
        if self.width_mult != 1.0 {
            crate::bail_arg!(
                "model.width_mult = {} applies to mobilenet_v2 only (ResNets: base_width)",
                self.width_mult
            );
        }
        let replace = match self.output_stride {
            16 => [false, false, true],
            8 => [false, true, true],
            os => crate::bail_arg!("output_stride must be 8 or 16, got {os}"),
        };
        Ok(ResNetConfig { depth, stem: self.stem, base_width: self.base_width, replace_stride_with_dilation: replace })
    }

    /// The MobileNetV2 of a `mobilenet_v2` backbone (an error for the others, or for a ResNet-only key set).
    pub fn mobilenet(&self) -> Result<MobileNetConfig> {
        self.check_widths()?;
        if self.backbone != Backbone::MobilenetV2 {
            crate::bail_arg!("model.backbone = {} is not mobilenet_v2", self.backbone.name());
        }
        let d = Self::default();
        if self.base_width != d.base_width || self.stem != d.stem {
            crate::bail_arg!("model.base_width and model.stem apply to ResNets only (mobilenet_v2: width_mult)");
        }
        if !matches!(self.output_stride, 8 | 16) {
            crate::bail_arg!("output_stride must be 8 or 16, got {}", self.output_stride);
        }
        let cfg = MobileNetConfig { width_mult: self.width_mult, output_stride: self.output_stride, last_conv: false };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Channels of the encoder's c1..c4.
    pub fn encoder_channels(&self) -> Result<[usize; 4]> {
        match self.backbone {
            Backbone::MobilenetV2 => Ok(self.mobilenet()?.channels()),
            _ => Ok(self.resnet()?.channels()),
        }
    }

    pub fn rates(&self) -> [usize; 3] {
        self.dilations.unwrap_or(if self.output_stride == 8 { [12, 24, 36] } else { [6, 12, 18] })
    }
}

/// Output of a full forward: logits, the FP-branch logits when asked, encoder and decoder features.
#[derive(Debug, Clone)]
pub struct SegOutput {
    /// `[B, K, H, W]` at input resolution.
    pub logits: Tensor,
    /// `[B, K, H, W]` from the Dropout2d-perturbed features (UniMatch's FP stream).
    pub logits_fp: Option<Tensor>,
    /// c1..c4 of the (clean) input.
    pub enc: EncoderFeatures,
    /// Decoder feature map after `fuse` (`[B, fuse_channels, H/4, W/4]`), clean half only.
    pub dec: Tensor,
    /// ASPP projection output (`[B, aspp_channels, h4, w4]`, the c4 grid), clean half only.
    pub aspp: Tensor,
}

/// DeepLabV3+ (`backbone`, `head`, `reduce`, `fuse`, `classifier`), or DeepLabV3 (`backbone`, `decode_head`)
/// with `cfg.head = deeplabv3`.
pub struct DeepLabV3Plus {
    pub backbone: Encoder,
    pub head: SegHead,
    pub cfg: DeepLabConfig,
}

impl DeepLabV3Plus {
    pub fn new(cfg: &DeepLabConfig, vb: VarBuilder) -> Result<Self> {
        let backbone = Encoder::new(cfg, vb.pp("backbone"))?;
        let head_vb = match cfg.head.prefix() {
            Some(p) => vb.pp(p),
            None => vb,
        };
        let head = SegHead::new(cfg, None, head_vb)?;
        Ok(Self { backbone, head, cfg: cfg.clone() })
    }

    /// Decoder: returns the head's last feature map (`fuse` / `bottleneck` output) and low-resolution logits.
    pub fn decode(&self, c1: &Tensor, c4: &Tensor, mode: Mode) -> Result<(Tensor, Tensor)> {
        let (_, f, logits) = self.decode_full(c1, c4, mode)?;
        Ok((f, logits))
    }

    /// [`Self::decode`] that also returns (first) the projected ASPP map on the c4 grid ([`SegHead::tail_full`]).
    pub fn decode_full(&self, c1: &Tensor, c4: &Tensor, mode: Mode) -> Result<(Tensor, Tensor, Tensor)> {
        self.head.tail_full(&self.head.features(c1, c4, mode)?, mode, None)
    }

    /// The 1×1 classifier of the head: logits at the head's resolution are `classifier().forward(&dec)` for the
    /// decoder feature map `dec` ([`SegOutput::dec`]).
    pub fn classifier(&self) -> &crate::nn::Conv2d {
        self.head.classifier()
    }

    /// Logits `[B, K, H, W]`.
    pub fn forward_t(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        Ok(self.forward_full(x, mode, None)?.logits)
    }

    /// One encoder pass; with `fp = Some((p, rng))` the decoder runs on `cat(c, Dropout2d_p(c))` for c1 and c4
    /// and the output is split into clean and perturbed halves (UniMatch's `need_fp`).
    pub fn forward_full(&self, x: &Tensor, mode: Mode, fp: Option<(f64, &mut SegRng)>) -> Result<SegOutput> {
        let (b, _, h, w) = x.dims4()?;
        let enc = self.backbone.forward_t(x, mode)?;
        let ac = self.head.align_corners();
        let (aspp, dec, logits, logits_fp) = match fp {
            None => {
                let (aspp, dec, lo) = self.decode_full(&enc.c1, &enc.c4, mode)?;
                (aspp, dec, resize_bilinear(&lo, (h, w), ac)?, None)
            }
            Some((p, rng)) => {
                let c1 = Tensor::cat(&[enc.c1.clone(), dropout2d(&enc.c1, p, rng)?], 0)?;
                let c4 = Tensor::cat(&[enc.c4.clone(), dropout2d(&enc.c4, p, rng)?], 0)?;
                let (aspp, dec, lo) = self.decode_full(&c1, &c4, mode)?;
                let up = resize_bilinear(&lo, (h, w), ac)?;
                (aspp.narrow(0, 0, b)?, dec.narrow(0, 0, b)?, up.narrow(0, 0, b)?, Some(up.narrow(0, b, b)?))
            }
        };
        Ok(SegOutput { logits, logits_fp, enc, dec, aspp })
    }
}
