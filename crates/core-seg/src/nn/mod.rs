//! Layers with PyTorch parameter names, built from a [`candle_nn::VarBuilder`], plus the seeded parameter
//! store every model is initialised from.

mod batch_norm;
mod conv;
mod params;

pub use crate::kernels::Act;
pub use batch_norm::{BatchNorm2d, BnConfig};
pub use conv::{Conv2d, ConvConfig, KAIMING_FAN_OUT};
pub use params::{count_parameters, ParamStore};

use std::cell::Cell;

use candle_core::DType;

thread_local! {
    static AUTOCAST: Cell<Option<DType>> = const { Cell::new(None) };
}

/// The convolution dtype of mixed-precision training on this thread (`None` = the activations' dtype).
pub fn autocast_dtype() -> Option<DType> {
    AUTOCAST.with(|a| a.get())
}

/// Mixed precision à la `torch.autocast`, restricted to convolutions: while the guard lives, every
/// [`Conv2d`] casts its input and weights to `dtype` (bf16 or f16), convolves there (tensor cores on GPU)
/// and casts the result back to the input dtype. Batch norm, resize, losses and the optimiser stay in f32;
/// the parameters stay f32 master weights (the casts are differentiable). `None` switches it off.
pub struct AutocastGuard {
    prev: Option<DType>,
}

impl AutocastGuard {
    pub fn new(dtype: Option<DType>) -> Self {
        let prev = AUTOCAST.with(|a| a.replace(dtype));
        Self { prev }
    }
}

impl Drop for AutocastGuard {
    fn drop(&mut self) {
        AUTOCAST.with(|a| a.set(self.prev));
    }
}

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
