//! Models: ResNet backbones and DeepLabV3+, with UniMatch / torchvision parameter names, and weight I/O.

pub mod deeplab;
pub mod resnet;
pub mod weights;

pub use deeplab::{DeepLabConfig, DeepLabV3Plus, SegOutput};
pub use resnet::{Depth, EncoderFeatures, ResNet, ResNetConfig, Stem};
