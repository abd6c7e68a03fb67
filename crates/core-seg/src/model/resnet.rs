//! ResNet-18/34/50/101 with the deep stem (UniMatch's pretrained format) or torchvision's 7×7 stem,
//! `replace_stride_with_dilation`, and a width multiplier. Parameter paths are torchvision's
//! (`conv1`, `bn1`, `layer1.0.conv1`, `layer2.0.downsample.0`, …); the deep stem is `conv1.{0,1,3,4,6}`;
//! mmseg's ResNetV1c stem is `stem.{0,1,3,4,6,7}` (its stages have torchvision's names).

use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::encoder::EncoderFeatures;
use crate::nn::{BatchNorm2d, BnConfig, Conv2d, ConvConfig, Mode};
use crate::ops::max_pool_3x3_s2_p1;
use crate::Result;

/// ResNet depth (the ResNet values of [`super::Backbone`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Depth {
    Resnet18,
    Resnet34,
    Resnet50,
    Resnet101,
}

impl Depth {
    fn blocks(self) -> [usize; 4] {
        match self {
            Depth::Resnet18 => [2, 2, 2, 2],
            Depth::Resnet34 | Depth::Resnet50 => [3, 4, 6, 3],
            Depth::Resnet101 => [3, 4, 23, 3],
        }
    }
    fn bottleneck(self) -> bool {
        matches!(self, Depth::Resnet50 | Depth::Resnet101)
    }
    /// Channel expansion of the block's last conv.
    pub fn expansion(self) -> usize {
        if self.bottleneck() {
            4
        } else {
            1
        }
    }
}

/// Stem variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stem {
    /// Three 3×3 convs (w, w, 2w channels), UniMatch / EncNet ImageNet weights.
    Deep,
    /// One 7×7 stride-2 conv (w channels), torchvision / timm weights.
    Torchvision,
    /// mmseg ResNetV1c (`open-mmlab://resnet50_v1c`): three 3×3 convs (w/2, w/2, w channels), each + BN +
    /// ReLU, `stem.{0,1,3,4,6,7}`; no separate `bn1`.
    V1c,
}

/// Backbone configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResNetConfig {
    pub depth: Depth,
    pub stem: Stem,
    /// Channels of the first stage (64 in the standard nets; e.g. 16 for CPU-sized models).
    pub base_width: usize,
    /// Replace the stride of layers 2, 3, 4 by dilation (`[F,F,T]` → OS 16, `[F,T,T]` → OS 8).
    pub replace_stride_with_dilation: [bool; 3],
}

impl ResNetConfig {
    /// Channels of c1..c4.
    pub fn channels(&self) -> [usize; 4] {
        let e = self.depth.expansion();
        let w = self.base_width;
        [w * e, 2 * w * e, 4 * w * e, 8 * w * e]
    }
}

struct ConvBn {
    conv: Conv2d,
    bn: BatchNorm2d,
}

impl ConvBn {
    #[allow(clippy::too_many_arguments)]
    fn new(
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        dil: usize,
        vb: &VarBuilder,
        c: &str,
        b: &str,
    ) -> Result<Self> {
        let padding = if k == 1 { 0 } else { dil * (k - 1) / 2 };
        let cfg = ConvConfig { stride, padding, dilation: dil, groups: 1 };
        let conv = Conv2d::new(cin, cout, k, cfg, false, Some(crate::nn::KAIMING_FAN_OUT), vb.pp(c))?;
        let bn = BatchNorm2d::new(cout, BnConfig::default(), vb.pp(b))?;
        Ok(Self { conv, bn })
    }
    fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        self.bn.forward_t(&self.conv.forward(x)?, mode)
    }
    /// `act(BN(conv(x)) + residual)`, ReLU when `relu` ([`BatchNorm2d::forward_act`]).
    fn forward_act(&self, x: &Tensor, mode: Mode, residual: Option<&Tensor>, relu: bool) -> Result<Tensor> {
        self.bn.forward_act(&self.conv.forward(x)?, mode, residual, relu)
    }
}

/// A BasicBlock (two 3×3) or Bottleneck (1×1, 3×3 with the stride, 1×1) with optional downsample.
struct Block {
    convs: Vec<ConvBn>,
    downsample: Option<ConvBn>,
}

impl Block {
    fn new(cin: usize, planes: usize, stride: usize, dil: usize, bottleneck: bool, vb: VarBuilder) -> Result<Self> {
        let e = if bottleneck { 4 } else { 1 };
        let convs = if bottleneck {
            vec![
                ConvBn::new(cin, planes, 1, 1, 1, &vb, "conv1", "bn1")?,
                ConvBn::new(planes, planes, 3, stride, dil, &vb, "conv2", "bn2")?,
                ConvBn::new(planes, planes * e, 1, 1, 1, &vb, "conv3", "bn3")?,
            ]
        } else {
            vec![
                ConvBn::new(cin, planes, 3, stride, dil, &vb, "conv1", "bn1")?,
                ConvBn::new(planes, planes, 3, 1, dil, &vb, "conv2", "bn2")?,
            ]
        };
        let downsample = if stride != 1 || cin != planes * e {
            Some(ConvBn::new(cin, planes * e, 1, stride, 1, &vb.pp("downsample"), "0", "1")?)
        } else {
            None
        };
        Ok(Self { convs, downsample })
    }

    fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let identity = match &self.downsample {
            Some(d) => d.forward(x, mode)?,
            None => x.clone(),
        };
        let mut out = x.clone();
        let last = self.convs.len() - 1;
        for (i, cb) in self.convs.iter().enumerate() {
            // relu(bn(conv)) inside, relu(bn(conv) + identity) at the end, each one fused op.
            out = cb.forward_act(&out, mode, (i == last).then_some(&identity), true)?;
        }
        Ok(out)
    }
}

/// ResNet backbone (`base_forward` of UniMatch: no pooling, no fc).
pub struct ResNet {
    stem: Vec<ConvBn>,
    stem_last: Option<Conv2d>,
    bn1: Option<BatchNorm2d>,
    layers: Vec<Vec<Block>>,
    pub cfg: ResNetConfig,
}

impl ResNet {
    pub fn new(cfg: ResNetConfig, vb: VarBuilder) -> Result<Self> {
        let w = cfg.base_width;
        let kaiming = Some(crate::nn::KAIMING_FAN_OUT);
        let (stem, stem_last, mut inplanes) = match cfg.stem {
            Stem::Deep => {
                let s = vb.pp("conv1");
                let stem = vec![ConvBn::new(3, w, 3, 2, 1, &s, "0", "1")?, ConvBn::new(w, w, 3, 1, 1, &s, "3", "4")?];
                let c6 = ConvConfig { stride: 1, padding: 1, dilation: 1, groups: 1 };
                (stem, Some(Conv2d::new(w, 2 * w, 3, c6, false, kaiming, s.pp("6"))?), 2 * w)
            }
            Stem::Torchvision => {
                let c = ConvConfig { stride: 2, padding: 3, dilation: 1, groups: 1 };
                (Vec::new(), Some(Conv2d::new(3, w, 7, c, false, kaiming, vb.pp("conv1"))?), w)
            }
            Stem::V1c => {
                if w < 2 || !w.is_multiple_of(2) {
                    crate::bail_arg!("stem v1c needs an even base_width ≥ 2, got {w}");
                }
                let s = vb.pp("stem");
                let stem = vec![
                    ConvBn::new(3, w / 2, 3, 2, 1, &s, "0", "1")?,
                    ConvBn::new(w / 2, w / 2, 3, 1, 1, &s, "3", "4")?,
                    ConvBn::new(w / 2, w, 3, 1, 1, &s, "6", "7")?,
                ];
                (stem, None, w)
            }
        };
        let bn1 = match cfg.stem {
            Stem::V1c => None,
            _ => Some(BatchNorm2d::new(inplanes, BnConfig::default(), vb.pp("bn1"))?),
        };
        let (bottleneck, e) = (cfg.depth.bottleneck(), cfg.depth.expansion());
        let mut dilation = 1;
        let mut layers = Vec::new();
        for (li, &nblocks) in cfg.depth.blocks().iter().enumerate() {
            let planes = w << li;
            let mut stride = if li == 0 { 1 } else { 2 };
            let previous_dilation = dilation;
            if li > 0 && cfg.replace_stride_with_dilation[li - 1] {
                dilation *= stride;
                stride = 1;
            }
            let lvb = vb.pp(format!("layer{}", li + 1));
            let mut blocks = vec![Block::new(inplanes, planes, stride, previous_dilation, bottleneck, lvb.pp("0"))?];
            inplanes = planes * e;
            for bi in 1..nblocks {
                blocks.push(Block::new(inplanes, planes, 1, dilation, bottleneck, lvb.pp(bi.to_string()))?);
            }
            layers.push(blocks);
        }
        Ok(Self { stem, stem_last, bn1, layers, cfg })
    }

    pub fn forward_t(&self, x: &Tensor, mode: Mode) -> Result<EncoderFeatures> {
        let mut h = x.clone();
        for cb in &self.stem {
            h = cb.forward_act(&h, mode, None, true)?;
        }
        if let Some(c) = &self.stem_last {
            h = c.forward(&h)?;
        }
        if let Some(bn1) = &self.bn1 {
            h = bn1.forward_act(&h, mode, None, true)?;
        }
        h = max_pool_3x3_s2_p1(&h)?;
        let mut feats = Vec::with_capacity(4);
        for layer in &self.layers {
            for block in layer {
                h = block.forward(&h, mode)?;
            }
            feats.push(h.clone());
        }
        let c4 = feats.pop().expect("4 stages");
        let c3 = feats.pop().expect("4 stages");
        let c2 = feats.pop().expect("4 stages");
        let c1 = feats.pop().expect("4 stages");
        Ok(EncoderFeatures { c1, c2, c3, c4 })
    }
}
