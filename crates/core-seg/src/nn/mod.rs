//! Layers with PyTorch parameter names, built from a [`candle_nn::VarBuilder`], plus the seeded parameter
//! store every model is initialised from.

mod batch_norm;
mod conv;
mod params;

pub use batch_norm::{BatchNorm2d, BnConfig};
pub use conv::{Conv2d, ConvConfig, KAIMING_FAN_OUT};
pub use params::{count_parameters, ParamStore};

/// Train/eval switch passed through every forward (PyTorch's `module.train()` / `.eval()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Train,
    Eval,
}

impl Mode {
    pub fn is_train(self) -> bool {
        self == Mode::Train
    }
}
