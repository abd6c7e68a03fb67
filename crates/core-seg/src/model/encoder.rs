//! The encoder under the segmentation head: a ResNet or a MobileNetV2, chosen by `model.backbone`; either gives
//! c1..c4 at strides 4, 8, OS and OS (OS = the output stride, 16 or 8).

use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::deeplab::DeepLabConfig;
use super::mobilenet::MobileNetV2;
use super::resnet::{Depth, ResNet};
use crate::nn::Mode;
use crate::Result;

/// `model.backbone`: the encoder network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Backbone {
    #[serde(rename = "resnet18")]
    Resnet18,
    #[serde(rename = "resnet34")]
    Resnet34,
    #[serde(rename = "resnet50")]
    Resnet50,
    #[serde(rename = "resnet101")]
    Resnet101,
    /// torchvision's MobileNetV2 (`features.*`), width from `model.width_mult`.
    #[serde(rename = "mobilenet_v2")]
    MobilenetV2,
}

impl Backbone {
    /// The config spelling (`resnet18`, …, `mobilenet_v2`).
    pub fn name(self) -> &'static str {
        match self {
            Backbone::Resnet18 => "resnet18",
            Backbone::Resnet34 => "resnet34",
            Backbone::Resnet50 => "resnet50",
            Backbone::Resnet101 => "resnet101",
            Backbone::MobilenetV2 => "mobilenet_v2",
        }
    }

    /// The ResNet depth, `None` for MobileNetV2.
    pub fn resnet_depth(self) -> Option<Depth> {
        match self {
            Backbone::Resnet18 => Some(Depth::Resnet18),
            Backbone::Resnet34 => Some(Depth::Resnet34),
            Backbone::Resnet50 => Some(Depth::Resnet50),
            Backbone::Resnet101 => Some(Depth::Resnet101),
            Backbone::MobilenetV2 => None,
        }
    }
}

/// Encoder features at strides 4, 8, 16/8, 16/8.
#[derive(Debug, Clone)]
pub struct EncoderFeatures {
    pub c1: Tensor,
    pub c2: Tensor,
    pub c3: Tensor,
    pub c4: Tensor,
}

/// The model's `backbone` (parameters under `backbone.`).
pub enum Encoder {
    ResNet(ResNet),
    MobileNetV2(MobileNetV2),
}

impl Encoder {
    /// The encoder `cfg.backbone` names, at `cfg.output_stride`.
    pub fn new(cfg: &DeepLabConfig, vb: VarBuilder) -> Result<Self> {
        Ok(match cfg.backbone {
            Backbone::MobilenetV2 => Encoder::MobileNetV2(MobileNetV2::new(cfg.mobilenet()?, vb)?),
            _ => Encoder::ResNet(ResNet::new(cfg.resnet()?, vb)?),
        })
    }

    /// c1..c4 of `x`.
    pub fn forward_t(&self, x: &Tensor, mode: Mode) -> Result<EncoderFeatures> {
        match self {
            Encoder::ResNet(m) => m.forward_t(x, mode),
            Encoder::MobileNetV2(m) => m.forward_t(x, mode),
        }
    }

    /// Channels of c1..c4.
    pub fn channels(&self) -> [usize; 4] {
        match self {
            Encoder::ResNet(m) => m.cfg.channels(),
            Encoder::MobileNetV2(m) => m.cfg.channels(),
        }
    }
}
