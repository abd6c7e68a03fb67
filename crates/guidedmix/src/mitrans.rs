//! MITrans (`mmseg/models/necks/mitrans.py`, `num_convs = 2`, `concat_input = True`, no norm) with mmcv's
//! embedded-Gaussian `NonLocal2d`. Parameter names as the official state dict: `mitrans.convs.0.conv`,
//! `mitrans.nl_block.{g,theta,phi,conv_out}.conv`, `mitrans.convs.1.conv`, `mitrans.conv_cat.conv`.
//!
//! ```text
//! o = ReLU(conv3x3_{Cin→Ch}(x))                                       convs.0
//! o = NonLocal2d(o):  θ, φ, g = conv1x1_{Ch→Ci}(o),  Ci = Ch / reduction
//!     W = softmax_row(Θ·Φ / √Ci)  [B, hw, hw],   o ← o + conv_out_{Ci→Ch}(W·G)
//! o = ReLU(conv3x3_{Ch→Ch}(o))                                         convs.1
//! y = ReLU(conv3x3_{Cin+Ch→Ch}(cat[x, o]))                             conv_cat
//! ```
//! Init as mmcv: the 3×3 convs Kaiming normal (fan_out, ReLU) with zero bias; θ, φ, g N(0, 0.01) with zero
//! bias; `conv_out` all zeros, so the non-local block starts as the identity.

use candle_core::Tensor;
use candle_nn::{Init, VarBuilder};
use core_seg::nn::{Conv2d, ConvConfig, KAIMING_FAN_OUT};
use core_seg::Result;

/// `ConvModule` without norm: a conv with a bias initialised to 0.
fn conv_module(cin: usize, cout: usize, k: usize, init: Init, vb: &VarBuilder, name: &str) -> Result<Conv2d> {
    let vb = vb.pp(name).pp("conv");
    let cfg = ConvConfig { padding: k / 2, ..ConvConfig::default() };
    let mut c = Conv2d::new(cin, cout, k, cfg, false, Some(init), vb.clone())?;
    c.bias = Some(vb.get_with_hints(cout, "bias", Init::Const(0.0))?);
    Ok(c)
}

/// mmcv `NonLocal2d(mode = "embedded_gaussian", use_scale = True, sub_sample = False)`.
pub struct NonLocal2d {
    pub g: Conv2d,
    pub theta: Conv2d,
    pub phi: Conv2d,
    pub conv_out: Conv2d,
    pub inter: usize,
}

impl NonLocal2d {
    pub fn new(channels: usize, reduction: usize, vb: VarBuilder) -> Result<Self> {
        if reduction == 0 || channels < reduction || !channels.is_multiple_of(reduction) {
            core_seg::bail_arg!("NonLocal2d: {channels} channels with reduction {reduction}");
        }
        let inter = channels / reduction;
        let small = Init::Randn { mean: 0.0, stdev: 0.01 };
        Ok(Self {
            g: conv_module(channels, inter, 1, small, &vb, "g")?,
            theta: conv_module(channels, inter, 1, small, &vb, "theta")?,
            phi: conv_module(channels, inter, 1, small, &vb, "phi")?,
            conv_out: conv_module(inter, channels, 1, Init::Const(0.0), &vb, "conv_out")?,
            inter,
        })
    }

    /// `W = softmax_row(Θ·Φ / √Ci)` `[B, hw, hw]` and `G [B, hw, Ci]` for `x [B, Ch, h, w]`.
    fn weights_and_values(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, _, h, w) = x.dims4()?;
        let flat = |c: &Conv2d| -> Result<Tensor> { Ok(c.forward(x)?.reshape((b, self.inter, h * w))?) };
        let theta = flat(&self.theta)?.transpose(1, 2)?.contiguous()?;
        let phi = flat(&self.phi)?;
        let g = flat(&self.g)?.transpose(1, 2)?.contiguous()?;
        let logits = (theta.matmul(&phi)? / (self.inter as f64).sqrt())?;
        Ok((candle_nn::ops::softmax(&logits, 2)?, g))
    }

    /// The attention matrix `W [B, hw, hw]` (each row sums to 1).
    pub fn attention(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.weights_and_values(x)?.0)
    }

    /// `x + conv_out(reshape(W·G → [B, Ci, h, w]))`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, _, h, w) = x.dims4()?;
        let (wts, g) = self.weights_and_values(x)?;
        let y = wts.matmul(&g)?.transpose(1, 2)?.contiguous()?.reshape((b, self.inter, h, w))?;
        Ok((x + self.conv_out.forward(&y)?)?)
    }
}

/// The MITrans neck (see the module doc).
pub struct MITrans {
    pub conv0: Conv2d,
    pub nl_block: NonLocal2d,
    pub conv1: Conv2d,
    pub conv_cat: Conv2d,
}

impl MITrans {
    /// `Cin → Ch` with non-local reduction `reduction`; parameters under `vb` (the caller passes `mitrans`).
    pub fn new(cin: usize, ch: usize, reduction: usize, vb: VarBuilder) -> Result<Self> {
        let convs = vb.pp("convs");
        Ok(Self {
            conv0: conv_module(cin, ch, 3, KAIMING_FAN_OUT, &convs, "0")?,
            nl_block: NonLocal2d::new(ch, reduction, vb.pp("nl_block"))?,
            conv1: conv_module(ch, ch, 3, KAIMING_FAN_OUT, &convs, "1")?,
            conv_cat: conv_module(cin + ch, ch, 3, KAIMING_FAN_OUT, &vb, "conv_cat")?,
        })
    }

    /// `[B, Cin, h, w] → [B, Ch, h, w]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let o = self.conv0.forward(x)?.relu()?;
        let o = self.nl_block.forward(&o)?;
        let o = self.conv1.forward(&o)?.relu()?;
        Ok(self.conv_cat.forward(&Tensor::cat(&[x, &o], 1)?)?.relu()?)
    }
}
