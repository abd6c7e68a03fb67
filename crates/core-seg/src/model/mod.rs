//! Models: ResNet backbones and DeepLabV3+ / DeepLabV3, with UniMatch / torchvision / mmseg parameter names,
//! and weight I/O.

pub mod deeplab;
pub mod head;
pub mod pretrained;
pub mod resnet;
pub mod torch_legacy;
pub mod weights;

pub use deeplab::{DeepLabConfig, DeepLabV3Plus, SegOutput};
pub use head::{HeadFeatures, HeadKind, SegHead};
pub use resnet::{Depth, EncoderFeatures, ResNet, ResNetConfig, Stem};
