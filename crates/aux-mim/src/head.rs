//! The SimMIM-style reconstruction head: a 1×1 convolution to `3·r²` channels, PixelShuffle(r), crop.
//!
//! ```text
//! X̂ = crop_{H×W}( PixelShuffle_r( Conv1x1_{C→3r², bias}(F) ) )      F [N,C,h,w] → X̂ [N,3,H,W]
//! PixelShuffle_r: out[n, c, h·r + i, w·r + j] = in[n, c·r² + i·r + j, h, w]
//! ```
//! `r = 4` on the decoder's `fuse` map (`C = fuse_channels`), `r = output_stride` on c4.

use candle_core::Tensor;
use candle_nn::VarBuilder;
use core_seg::model::DeepLabConfig;
use core_seg::nn::{Conv2d, ConvConfig};
use core_seg::ops::pixel_shuffle;
use core_seg::Result;

use crate::config::FeatureLevel;

/// Output channels of the reconstruction (RGB).
pub const IMAGE_CHANNELS: usize = 3;

/// `Conv1x1 + PixelShuffle(r) + crop`. Parameters: `<prefix>.weight [3r², C, 1, 1]`, `<prefix>.bias [3r²]`.
pub struct RecHead {
    pub conv: Conv2d,
    pub r: usize,
}

impl RecHead {
    /// A head reading `cin` channels and upsampling by `r` (PyTorch's default conv init).
    pub fn new(cin: usize, r: usize, vb: VarBuilder) -> Result<Self> {
        if r == 0 || cin == 0 {
            core_seg::bail_arg!("RecHead: cin {cin}, r {r}");
        }
        let conv = Conv2d::new(cin, IMAGE_CHANNELS * r * r, 1, ConvConfig::default(), true, None, vb)?;
        Ok(Self { conv, r })
    }

    /// The head for a model and feature level: `fuse_channels → 48, r = 4` or `c4 channels → 3·OS², r = OS`.
    pub fn for_model(cfg: &DeepLabConfig, level: FeatureLevel, vb: VarBuilder) -> Result<Self> {
        match level {
            FeatureLevel::Fuse => Self::new(cfg.fuse_channels, 4, vb),
            FeatureLevel::C4 => Self::new(cfg.encoder_channels()?[3], cfg.output_stride, vb),
        }
    }

    /// `F [N,C,h,w] → X̂ [N,3,H,W]`; requires `r·h ≥ H` and `r·w ≥ W`.
    pub fn forward(&self, feat: &Tensor, (h, w): (usize, usize)) -> Result<Tensor> {
        let y = pixel_shuffle(&self.conv.forward(feat)?, self.r)?;
        let (_, _, yh, yw) = y.dims4()?;
        if yh < h || yw < w {
            core_seg::bail_arg!("RecHead: {yh}x{yw} reconstruction cannot be cropped to {h}x{w}");
        }
        Ok(y.narrow(2, 0, h)?.narrow(3, 0, w)?)
    }
}
