//! DeepLabV3+ exactly as UniMatch (`model/semseg/deeplabv3plus.py`): ASPP on c4, 48-channel reduction of
//! c1, two 3×3 fuse convs, a 1×1 classifier, bilinear (align_corners = true) upsampling. Parameter names
//! are UniMatch's `state_dict` names (`backbone.*`, `head.b0.0.weight`, `head.b4.gap.1.weight`,
//! `reduce.0.weight`, `fuse.3.weight`, `classifier.bias`, …).

use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::resnet::{Depth, EncoderFeatures, ResNet, ResNetConfig, Stem};
use crate::nn::{BatchNorm2d, BnConfig, Conv2d, ConvConfig, Mode};
use crate::ops::{dropout2d, resize_bilinear};
use crate::rng::SegRng;
use crate::Result;

/// Model configuration; defaults are UniMatch's VOC model (R-101, deep stem, OS 16, 21 classes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeepLabConfig {
    pub backbone: Depth,
    pub stem: Stem,
    /// First-stage width (64 standard; smaller for CPU-sized models).
    pub base_width: usize,
    /// 16 (`replace_stride_with_dilation = [F,F,T]`) or 8 (`[F,T,T]`).
    pub output_stride: usize,
    /// ASPP rates; `None` = (6, 12, 18) at OS 16, doubled at OS 8.
    pub dilations: Option<[usize; 3]>,
    /// ASPP width; `None` = c4 channels / 8 (UniMatch's formula).
    pub aspp_channels: Option<usize>,
    pub reduce_channels: usize,
    pub fuse_channels: usize,
    pub nclass: usize,
}

impl Default for DeepLabConfig {
    fn default() -> Self {
        Self {
            backbone: Depth::Resnet101,
            stem: Stem::Deep,
            base_width: 64,
            output_stride: 16,
            dilations: None,
            aspp_channels: None,
            reduce_channels: 48,
            fuse_channels: 256,
            nclass: 21,
        }
    }
}

impl DeepLabConfig {
    pub fn resnet(&self) -> Result<ResNetConfig> {
        let replace = match self.output_stride {
            16 => [false, false, true],
            8 => [false, true, true],
            os => crate::bail_arg!("output_stride must be 8 or 16, got {os}"),
        };
        Ok(ResNetConfig {
            depth: self.backbone,
            stem: self.stem,
            base_width: self.base_width,
            replace_stride_with_dilation: replace,
        })
    }
    pub fn rates(&self) -> [usize; 3] {
        self.dilations.unwrap_or(if self.output_stride == 8 { [12, 24, 36] } else { [6, 12, 18] })
    }
}

fn conv_bn_relu(
    cin: usize,
    cout: usize,
    k: usize,
    dil: usize,
    vb: &VarBuilder,
    conv: &str,
    bn: &str,
) -> Result<(Conv2d, BatchNorm2d)> {
    let pad = if k == 1 { 0 } else { dil };
    let cfg = ConvConfig { stride: 1, padding: pad, dilation: dil, groups: 1 };
    Ok((
        Conv2d::new(cin, cout, k, cfg, false, None, vb.pp(conv))?,
        BatchNorm2d::new(cout, BnConfig::default(), vb.pp(bn))?,
    ))
}

fn apply(cb: &(Conv2d, BatchNorm2d), x: &Tensor, mode: Mode) -> Result<Tensor> {
    Ok(cb.1.forward_t(&cb.0.forward(x)?, mode)?.relu()?)
}

/// ASPP: 1×1, three dilated 3×3, image pooling; concat; 1×1 projection. No dropout.
struct Aspp {
    branches: Vec<(Conv2d, BatchNorm2d)>,
    pool: (Conv2d, BatchNorm2d),
    project: (Conv2d, BatchNorm2d),
}

impl Aspp {
    fn new(cin: usize, cout: usize, rates: [usize; 3], vb: VarBuilder) -> Result<Self> {
        let mut branches = vec![conv_bn_relu(cin, cout, 1, 1, &vb.pp("b0"), "0", "1")?];
        for (i, &r) in rates.iter().enumerate() {
            branches.push(conv_bn_relu(cin, cout, 3, r, &vb.pp(format!("b{}", i + 1)), "0", "1")?);
        }
        let pool = conv_bn_relu(cin, cout, 1, 1, &vb.pp("b4.gap"), "1", "2")?;
        let project = conv_bn_relu(5 * cout, cout, 1, 1, &vb.pp("project"), "0", "1")?;
        Ok(Self { branches, pool, project })
    }

    fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let (n, _, h, w) = x.dims4()?;
        let mut feats = self.branches.iter().map(|b| apply(b, x, mode)).collect::<Result<Vec<_>>>()?;
        let gap = apply(&self.pool, &x.mean_keepdim((2, 3))?, mode)?;
        // Bilinear upsampling of a 1×1 map (align_corners = true) is a broadcast.
        feats.push(gap.broadcast_as((n, gap.dim(1)?, h, w))?.contiguous()?);
        apply(&self.project, &Tensor::cat(&feats, 1)?, mode)
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

/// DeepLabV3+ (`backbone`, `head`, `reduce`, `fuse`, `classifier`).
pub struct DeepLabV3Plus {
    pub backbone: ResNet,
    head: Aspp,
    reduce: (Conv2d, BatchNorm2d),
    fuse: [(Conv2d, BatchNorm2d); 2],
    classifier: Conv2d,
    pub cfg: DeepLabConfig,
}

impl DeepLabV3Plus {
    pub fn new(cfg: &DeepLabConfig, vb: VarBuilder) -> Result<Self> {
        let rcfg = cfg.resnet()?;
        let backbone = ResNet::new(rcfg, vb.pp("backbone"))?;
        let [low, _, _, high] = rcfg.channels();
        let aspp_ch = cfg.aspp_channels.unwrap_or(high / 8);
        let head = Aspp::new(high, aspp_ch, cfg.rates(), vb.pp("head"))?;
        let reduce = conv_bn_relu(low, cfg.reduce_channels, 1, 1, &vb.pp("reduce"), "0", "1")?;
        let f = vb.pp("fuse");
        let fuse = [
            conv_bn_relu(aspp_ch + cfg.reduce_channels, cfg.fuse_channels, 3, 1, &f, "0", "1")?,
            conv_bn_relu(cfg.fuse_channels, cfg.fuse_channels, 3, 1, &f, "3", "4")?,
        ];
        let classifier =
            Conv2d::new(cfg.fuse_channels, cfg.nclass, 1, ConvConfig::default(), true, None, vb.pp("classifier"))?;
        Ok(Self { backbone, head, reduce, fuse, classifier, cfg: cfg.clone() })
    }

    /// Decoder: returns the fused feature map `[B, fuse, h1, w1]` and low-resolution logits.
    pub fn decode(&self, c1: &Tensor, c4: &Tensor, mode: Mode) -> Result<(Tensor, Tensor)> {
        let (_, f, logits) = self.decode_full(c1, c4, mode)?;
        Ok((f, logits))
    }

    /// [`Self::decode`] that also returns the ASPP output `[B, aspp, h4, w4]` (first).
    pub fn decode_full(&self, c1: &Tensor, c4: &Tensor, mode: Mode) -> Result<(Tensor, Tensor, Tensor)> {
        let (_, _, h1, w1) = c1.dims4()?;
        let aspp = self.head.forward(c4, mode)?;
        let high = resize_bilinear(&aspp, (h1, w1), true)?;
        let low = apply(&self.reduce, c1, mode)?;
        let mut f = Tensor::cat(&[low, high], 1)?;
        for cb in &self.fuse {
            f = apply(cb, &f, mode)?;
        }
        let logits = self.classifier.forward(&f)?;
        Ok((aspp, f, logits))
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
        let (aspp, dec, logits, logits_fp) = match fp {
            None => {
                let (aspp, dec, lo) = self.decode_full(&enc.c1, &enc.c4, mode)?;
                (aspp, dec, resize_bilinear(&lo, (h, w), true)?, None)
            }
            Some((p, rng)) => {
                let c1 = Tensor::cat(&[enc.c1.clone(), dropout2d(&enc.c1, p, rng)?], 0)?;
                let c4 = Tensor::cat(&[enc.c4.clone(), dropout2d(&enc.c4, p, rng)?], 0)?;
                let (aspp, dec, lo) = self.decode_full(&c1, &c4, mode)?;
                let up = resize_bilinear(&lo, (h, w), true)?;
                (aspp.narrow(0, 0, b)?, dec.narrow(0, 0, b)?, up.narrow(0, 0, b)?, Some(up.narrow(0, b, b)?))
            }
        };
        Ok(SegOutput { logits, logits_fp, enc, dec, aspp })
    }
}
