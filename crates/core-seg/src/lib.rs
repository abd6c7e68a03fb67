//! `core-seg`: the shared core of semiseg-rs.
//!
//! - [`ops`]: trainable ops Candle 0.11 lacks (bilinear resize, stem max-pool, CE with ignore, OHEM,
//!   Dropout2d, PixelShuffle), each with a checked backward.
//! - [`nn`]: layers with PyTorch parameter names and the seeded [`nn::ParamStore`].
//! - [`model`]: ResNet-18/34/50/101 and DeepLabV3+ (UniMatch names).
//! - [`rng`]: the one seeded RNG every random draw comes from.

pub mod error;
pub mod kernels;
pub mod model;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod rng;

pub use error::{Error, Result};
