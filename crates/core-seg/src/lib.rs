//! `core-seg`: the shared core of semiseg-rs.
//!
//! - [`ops`]: trainable ops Candle 0.11 lacks (bilinear resize, stem max-pool, CE with ignore, OHEM,
//!   Dropout2d, PixelShuffle), each with a checked backward.
//! - [`nn`]: layers with PyTorch parameter names and the seeded [`nn::ParamStore`].
//! - [`model`]: ResNet-18/34/50/101 and MobileNetV2 encoders, DeepLabV3+ (UniMatch names).
//! - [`plugin`]: the contract between the training loop, frameworks and auxiliary terms; [`frameworks`]: the
//!   supervised baseline, FixMatch, UniMatch and mean teacher; [`train`]: the one loop; [`methods`]: how a
//!   method crate registers its config tables, terms and frameworks.
//! - [`kernels`]: hand-written CPU kernels (im2col/GEMM convolution, fused BN, pooling, resize, softmax-CE)
//!   that the ops and layers use on CPU; the composite reference path stays behind `SEMISEG_REFERENCE_OPS=1`.
//! - [`rng`]: the one seeded RNG every random draw comes from.
//! - [`files`]: files written whole or not at all; [`host`]: the CPU and thread count a measurement ran on.
//! - [`dist`]: data-parallel training over NCCL (feature `nccl`; one process per GPU, SyncBN).

pub mod batch;
pub mod dist;
pub mod error;
pub mod eval;
pub mod files;
pub mod frameworks;
pub mod host;
pub mod kernels;
pub mod logging;
pub mod methods;
pub mod metrics;
pub mod model;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod plugin;
pub mod rng;
pub mod testing;
pub mod train;

pub use error::{Error, Result};
