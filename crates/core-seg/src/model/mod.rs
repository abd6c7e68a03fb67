//! Models: ResNet and MobileNetV2 encoders, DeepLabV3+ / DeepLabV3 heads, with UniMatch / torchvision / mmseg
//! parameter names, and weight I/O.
//!
//! - [`resnet`]: ResNet-18/34/50/101 (deep, torchvision or mmseg-V1c stem).
//! - [`mobilenet`]: torchvision's MobileNetV2 features (`features.*`, `width_mult`, dilated to OS 16 or 8).
//! - [`encoder`]: the `model.backbone` choice between them and the c1..c4 features every head and method reads.
//! - [`deeplab`], [`head`]: DeepLabV3+ (UniMatch's decoder) or mmseg's DeepLabV3 on either encoder.
//! - [`weights`]: full or backbone-only safetensors files, with a report of missing and unexpected keys.

pub mod deeplab;
pub mod encoder;
pub mod head;
pub mod mobilenet;
pub mod resnet;
pub mod weights;

pub use deeplab::{DeepLabConfig, DeepLabV3Plus, SegOutput};
pub use encoder::{Backbone, Encoder, EncoderFeatures};
pub use head::{HeadFeatures, HeadKind, SegHead};
pub use mobilenet::{MobileNetConfig, MobileNetV2};
pub use resnet::{Depth, ResNet, ResNetConfig, Stem};
