//! Trainable ops that Candle 0.11 lacks or gets wrong for training (see `docs/models.md` and
//! `third_party/candle-core/PATCHES.md`).
//!
//! Each op here is built from differentiable Candle primitives (or is a custom op with a hand-written
//! backward), checked against f64 finite differences and against PyTorch fixtures. Never call Candle's
//! 2-D max pooling, bilinear upsampling or last-dim softmax ops on a trainable path: their gradients are wrong
//! or missing.

mod dropout;
mod loss;
mod pool;
mod resize;
mod shuffle;

pub use dropout::{dropout2d, dropout2d_mask, dropout2d_with_mask};
pub use loss::{cross_entropy_ignore, cross_entropy_per_pixel, masked_mean, ohem_cross_entropy, OhemConfig};
pub use pool::max_pool_3x3_s2_p1;
pub use resize::{interp_matrix, resize_bilinear};
pub use shuffle::{pixel_shuffle, pixel_unshuffle};

/// The label value that marks pixels excluded from every loss.
pub const IGNORE_INDEX: u32 = 255;

/// The composite Candle implementations, kept for checking the kernels (`SEMISEG_REFERENCE_OPS=1` selects
/// them everywhere).
pub mod reference {
    pub use super::loss::cross_entropy_per_pixel_reference as cross_entropy_per_pixel;
    pub use super::pool::max_pool_3x3_s2_p1_reference as max_pool_3x3_s2_p1;
    pub use super::resize::resize_bilinear_reference as resize_bilinear;
}
