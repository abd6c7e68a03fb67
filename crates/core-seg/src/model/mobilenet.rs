//! MobileNetV2 exactly as torchvision's `mobilenet_v2().features`, with torchvision's parameter names:
//! `features.0.{0,1}` (3×3 stride-2 conv, BN, ReLU6), then 17 inverted residual blocks `features.N.conv.*`
//! (expansion 1×1 `conv.0.{0,1}`, depthwise 3×3 `conv.1.{0,1}`, linear 1×1 `conv.2` + BN `conv.3`; block 1 has
//! no expansion: `conv.0.{0,1}` depthwise, `conv.1` + `conv.2`), and optionally `features.18.{0,1}` (1×1 to
//! 1280·max(1, w) channels). Channel widths follow torchvision's `width_mult` with `_make_divisible(·, 8)`.
//!
//! Output stride 16 or 8 as in DeepLabV3Plus-Pytorch: from the stage where the stride would exceed the output
//! stride on, the depthwise convs keep stride 1 and dilate instead; the first block of such a stage keeps the
//! previous dilation (torchvision's `replace_stride_with_dilation` rule). OS 16: block 14 stride 1, blocks
//! 15–17 dilation 2. OS 8: block 7 stride 1, blocks 8–13 dilation 2, block 14 stride 1 and dilation 2, blocks
//! 15–17 dilation 4. Shortcuts are torchvision's, decided by the original strides: a block made stride 1 here
//! gets none (at width 1 those blocks change width anyway). Encoder features: c1 = `features[0:4]` (stride 4), c2 = `features[4:7]` (stride 8),
//! c3 = `features[7:14]`, c4 = `features[14:18]`.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use super::encoder::EncoderFeatures;
use crate::nn::{Act, BatchNorm2d, BnConfig, Conv2d, ConvConfig, Mode, KAIMING_FAN_OUT};
use crate::Result;

/// torchvision's inverted residual setting: (expansion t, channels c, blocks n, first stride s) per stage.
const SETTING: [(usize, usize, usize, usize); 7] =
    [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)];
/// Channel rounding of torchvision's `round_nearest`.
const ROUND: usize = 8;
/// Blocks (`features.N`, N = 1..=17) ending at c1, c2, c3, c4.
const STAGE_ENDS: [usize; 4] = [3, 6, 13, 17];

/// torchvision's `_make_divisible(v, divisor)`: the nearest multiple of `divisor` (at least `divisor`), one step
/// up when rounding down lost more than 10 %.
pub fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let down = (((v + d / 2.0).floor() as usize) / divisor * divisor).max(divisor);
    if (down as f64) < 0.9 * v {
        down + divisor
    } else {
        down
    }
}

/// MobileNetV2 configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MobileNetConfig {
    /// torchvision's `width_mult` (1.0 for the ImageNet model).
    pub width_mult: f64,
    /// 8, 16 or 32 (32 = torchvision's classifier network, no dilation).
    pub output_stride: usize,
    /// Build `features.18` (the 1×1 conv to the classifier width); DeepLabV3+ stops at block 17.
    pub last_conv: bool,
}

impl MobileNetConfig {
    /// An error naming the key when `width_mult` is not a positive number or the output stride not 8, 16, 32.
    pub fn validate(&self) -> Result<()> {
        if !(self.width_mult.is_finite() && self.width_mult > 0.0) {
            crate::bail_arg!("MobileNetV2: width_mult must be a positive number, got {}", self.width_mult);
        }
        if ![8, 16, 32].contains(&self.output_stride) {
            crate::bail_arg!("MobileNetV2: output_stride must be 8, 16 or 32, got {}", self.output_stride);
        }
        Ok(())
    }

    /// Channels of c1..c4 (the outputs of blocks 3, 6, 13 and 17).
    pub fn channels(&self) -> [usize; 4] {
        [24, 32, 96, 320].map(|c| make_divisible(c as f64 * self.width_mult, ROUND))
    }
}

/// Conv (no bias) + BN, torchvision's names relative to `vb` (`{conv}` and `{bn}`).
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
        groups: usize,
        vb: &VarBuilder,
        names: (&str, &str),
    ) -> Result<Self> {
        let padding = if k == 1 { 0 } else { dil * (k - 1) / 2 };
        let cfg = ConvConfig { stride, padding, dilation: dil, groups };
        let conv = Conv2d::new(cin, cout, k, cfg, false, Some(KAIMING_FAN_OUT), vb.pp(names.0))?;
        let bn = BatchNorm2d::new(cout, BnConfig::default(), vb.pp(names.1))?;
        Ok(Self { conv, bn })
    }

    /// `ReLU6(BN(conv(x)))`.
    fn forward_relu6(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        bn_relu6(&self.bn, &self.conv.forward(x)?, mode)
    }
}

/// `min(max(BN(x), 0), 6)`: the BN + ReLU6 of every MobileNetV2 conv unit, in one place (one fused kernel on
/// the CPU).
fn bn_relu6(bn: &BatchNorm2d, x: &Tensor, mode: Mode) -> Result<Tensor> {
    bn.forward_act(x, mode, None, Act::Relu6)
}

/// torchvision's `InvertedResidual` (with a dilation for the output-stride variants).
struct InvertedResidual {
    expand: Option<ConvBn>,
    depthwise: ConvBn,
    project: ConvBn,
    residual: bool,
}

impl InvertedResidual {
    /// `residual`: the identity shortcut of torchvision (`stride == 1 and inp == oup`), decided by the block's
    /// original stride, so a stride-2 block that runs at stride 1 for the output stride stays without one.
    fn new(
        cin: usize,
        cout: usize,
        stride: usize,
        dil: usize,
        t: usize,
        residual: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let hidden = cin * t;
        let c = vb.pp("conv");
        let (expand, next) =
            if t == 1 { (None, 0) } else { (Some(ConvBn::new(cin, hidden, 1, 1, 1, 1, &c.pp("0"), ("0", "1"))?), 1) };
        let depthwise = ConvBn::new(hidden, hidden, 3, stride, dil, hidden, &c.pp(next.to_string()), ("0", "1"))?;
        let (p, pb) = ((next + 1).to_string(), (next + 2).to_string());
        let project = ConvBn::new(hidden, cout, 1, 1, 1, 1, &c, (&p, &pb))?;
        Ok(Self { expand, depthwise, project, residual })
    }

    fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let h = match &self.expand {
            Some(e) => e.forward_relu6(x, mode)?,
            None => x.clone(),
        };
        let h = self.depthwise.forward_relu6(&h, mode)?;
        // Linear bottleneck: BN (+ identity), no activation, one fused op.
        self.project.bn.forward_act(&self.project.conv.forward(&h)?, mode, self.residual.then_some(x), false)
    }
}

/// MobileNetV2 features (`features.*`), no classifier.
pub struct MobileNetV2 {
    stem: ConvBn,
    blocks: Vec<InvertedResidual>,
    last: Option<ConvBn>,
    pub cfg: MobileNetConfig,
}

impl MobileNetV2 {
    pub fn new(cfg: MobileNetConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let f = vb.pp("features");
        let mut cin = make_divisible(32.0 * cfg.width_mult, ROUND);
        let stem = ConvBn::new(3, cin, 3, 2, 1, 1, &f.pp("0"), ("0", "1"))?;
        let (mut current_stride, mut dilation) = (2, 1);
        let mut blocks = Vec::new();
        for (t, c, n, s) in SETTING {
            let cout = make_divisible(c as f64 * cfg.width_mult, ROUND);
            let previous_dilation = dilation;
            let stride = if current_stride == cfg.output_stride {
                dilation *= s;
                1
            } else {
                current_stride *= s;
                s
            };
            for i in 0..n {
                let (st, d) = if i == 0 { (stride, previous_dilation) } else { (1, dilation) };
                let residual = (i > 0 || s == 1) && cin == cout;
                let vb = f.pp((blocks.len() + 1).to_string());
                blocks.push(InvertedResidual::new(cin, cout, st, d, t, residual, vb)?);
                cin = cout;
            }
        }
        let last = if cfg.last_conv {
            let cout = make_divisible(1280.0 * cfg.width_mult.max(1.0), ROUND);
            Some(ConvBn::new(cin, cout, 1, 1, 1, 1, &f.pp((blocks.len() + 1).to_string()), ("0", "1"))?)
        } else {
            None
        };
        Ok(Self { stem, blocks, last, cfg })
    }

    /// c1..c4 (the outputs of `features[0:4]`, `[4:7]`, `[7:14]`, `[14:18]`).
    pub fn forward_t(&self, x: &Tensor, mode: Mode) -> Result<EncoderFeatures> {
        let mut h = self.stem.forward_relu6(x, mode)?;
        let mut c = Vec::with_capacity(4);
        let mut start = 0;
        for end in STAGE_ENDS {
            for block in &self.blocks[start..end] {
                h = block.forward(&h, mode)?;
            }
            c.push(h.clone());
            start = end;
        }
        let [c1, c2, c3, c4] = [0, 1, 2, 3].map(|i| c[i].clone());
        Ok(EncoderFeatures { c1, c2, c3, c4 })
    }

    /// torchvision's `features(x)`: c4 through `features.18` (an error when built without it).
    pub fn forward_features(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let Some(last) = &self.last else {
            crate::bail_arg!("MobileNetV2 built without features.18 (last_conv = false)");
        };
        last.forward_relu6(&self.forward_t(x, mode)?.c4, mode)
    }
}
