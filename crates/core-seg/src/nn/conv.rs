//! 2-D convolution with PyTorch parameter names (`weight [Cout, Cin/groups, k, k]`, optional `bias`).

use candle_core::Tensor;
use candle_nn::init::{FanInOut, NonLinearity, NormalOrUniform};
use candle_nn::{Init, VarBuilder};

use crate::Result;

/// Convolution geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvConfig {
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    pub groups: usize,
}

impl Default for ConvConfig {
    fn default() -> Self {
        Self { stride: 1, padding: 0, dilation: 1, groups: 1 }
    }
}

/// `nn.Conv2d`.
#[derive(Debug, Clone)]
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub cfg: ConvConfig,
}

/// torchvision ResNet init: Kaiming normal, fan_out, ReLU gain.
pub const KAIMING_FAN_OUT: Init =
    Init::Kaiming { dist: NormalOrUniform::Normal, fan: FanInOut::FanOut, non_linearity: NonLinearity::ReLU };

impl Conv2d {
    /// A conv layer; `init` None means PyTorch's default (Kaiming uniform with a = √5, i.e. U(±1/√fan_in)).
    pub fn new(
        cin: usize,
        cout: usize,
        k: usize,
        cfg: ConvConfig,
        bias: bool,
        init: Option<Init>,
        vb: VarBuilder,
    ) -> Result<Self> {
        if cfg.groups == 0 || !cin.is_multiple_of(cfg.groups) || !cout.is_multiple_of(cfg.groups) {
            crate::bail_arg!("conv {}: {cin}→{cout} not divisible by groups {}", vb.prefix(), cfg.groups);
        }
        let fan_in = (cin / cfg.groups) * k * k;
        let bound = 1.0 / (fan_in as f64).sqrt();
        let default_init = Init::Uniform { lo: -bound, up: bound };
        let weight = vb.get_with_hints((cout, cin / cfg.groups, k, k), "weight", init.unwrap_or(default_init))?;
        let bias = if bias { Some(vb.get_with_hints(cout, "bias", default_init)?) } else { None };
        Ok(Self { weight, bias, cfg })
    }

    /// Mixed precision: parameters stay in their own dtype (f32 master weights) and are cast to the
    /// activation dtype (e.g. bf16) for the product; the cast is differentiable, so gradients reach the
    /// f32 parameters. Under an [`super::AutocastGuard`] the convolution itself runs in the autocast dtype
    /// and the result is cast back to the input's dtype.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(dt) = super::autocast_dtype().filter(|dt| *dt != x.dtype()) {
            let y = self.forward(&x.to_dtype(dt)?)?;
            return Ok(y.to_dtype(x.dtype())?);
        }
        let c = self.cfg;
        let cast = |t: &Tensor| -> Result<Tensor> {
            Ok(if t.dtype() == x.dtype() { t.clone() } else { t.to_dtype(x.dtype())? })
        };
        let weight = cast(&self.weight)?;
        // CPU: the hand-written im2col/GEMM kernels. CUDA: Candle's (cuBLAS/cuDNN) forward with a backward that
        // avoids Candle's conv_transpose2d ([`crate::kernels::conv2d_device`]).
        let y = if x.device().is_cpu() && crate::kernels::active_for(x) {
            crate::kernels::conv2d(x, &weight, c.into())?
        } else if x.device().is_cuda() && !crate::kernels::reference_requested() {
            crate::kernels::conv2d_device(x, &weight, c.into())?
        } else {
            x.conv2d(&weight, c.padding, c.stride, c.dilation, c.groups)?
        };
        match &self.bias {
            Some(b) => Ok(y.broadcast_add(&cast(b)?.reshape((1, (), 1, 1))?)?),
            None => Ok(y),
        }
    }
}
