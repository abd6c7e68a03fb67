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
        if cfg.groups == 0 || cin % cfg.groups != 0 || cout % cfg.groups != 0 {
            crate::bail_arg!("conv {}: {cin}→{cout} not divisible by groups {}", vb.prefix(), cfg.groups);
        }
        let fan_in = (cin / cfg.groups) * k * k;
        let bound = 1.0 / (fan_in as f64).sqrt();
        let default_init = Init::Uniform { lo: -bound, up: bound };
        let weight = vb.get_with_hints((cout, cin / cfg.groups, k, k), "weight", init.unwrap_or(default_init))?;
        let bias = if bias { Some(vb.get_with_hints(cout, "bias", default_init)?) } else { None };
        Ok(Self { weight, bias, cfg })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let c = self.cfg;
        let y = if crate::kernels::active_for(x) {
            crate::kernels::conv2d(x, &self.weight, c.into())?
        } else {
            x.conv2d(&self.weight, c.padding, c.stride, c.dilation, c.groups)?
        };
        match &self.bias {
            Some(b) => Ok(y.broadcast_add(&b.reshape((1, (), 1, 1))?)?),
            None => Ok(y),
        }
    }
}
