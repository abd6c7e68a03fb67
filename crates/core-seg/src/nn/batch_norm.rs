//! 2-D batch normalisation with PyTorch semantics and the one-value-per-channel guard.

use candle_core::{DType, Tensor, Var};
use candle_nn::{Init, VarBuilder};

use super::Mode;
use crate::kernels::Act;
use crate::{Error, Result};

/// BN hyper-parameters (PyTorch defaults).
#[derive(Debug, Clone, Copy)]
pub struct BnConfig {
    pub eps: f64,
    pub momentum: f64,
}

impl Default for BnConfig {
    fn default() -> Self {
        Self { eps: 1e-5, momentum: 0.1 }
    }
}

/// `nn.BatchNorm2d`: parameters `weight`, `bias`; buffers `running_mean`, `running_var`.
///
/// Train: `y = γ·(x − μ_B)/√(σ²_B + ε) + β` with batch statistics over (N, H, W), and
/// `running ← (1 − m)·running + m·stat` (unbiased variance for the running estimate).
/// Eval: the running statistics replace the batch ones.
#[derive(Debug, Clone)]
pub struct BatchNorm2d {
    pub weight: Tensor,
    pub bias: Tensor,
    pub running_mean: Var,
    pub running_var: Var,
    cfg: BnConfig,
    name: String,
}

impl BatchNorm2d {
    pub fn new(channels: usize, cfg: BnConfig, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(channels, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(channels, "bias", Init::Const(0.0))?;
        let running_mean = vb.get_with_hints(channels, "running_mean", Init::Const(0.0))?;
        let running_var = vb.get_with_hints(channels, "running_var", Init::Const(1.0))?;
        Ok(Self {
            weight,
            bias,
            running_mean: Var::from_tensor(&running_mean)?,
            running_var: Var::from_tensor(&running_var)?,
            cfg,
            name: vb.prefix(),
        })
    }

    /// Mixed precision: a half-precision input (bf16/f16) is normalised in the parameters' dtype (f32) and
    /// the result cast back, as PyTorch's autocast does for batch norm.
    pub fn forward_t(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        if x.dtype() != self.weight.dtype() && matches!(x.dtype(), DType::BF16 | DType::F16) {
            let y = self.forward_t(&x.to_dtype(self.weight.dtype())?, mode)?;
            return Ok(y.to_dtype(x.dtype())?);
        }
        let (n, c, h, w) = x.dims4()?;
        let shape = (1, c, 1, 1);
        let (mean, var) = if mode.is_train() {
            let count = n * h * w;
            if count <= 1 {
                return Err(Error::BatchNormSingleValue {
                    name: self.name.clone(),
                    values: count,
                    shape: x.dims().to_vec(),
                });
            }
            if crate::kernels::active_for(x) {
                let (y, mean, var) = crate::kernels::batch_norm_train(x, &self.weight, &self.bias, self.cfg.eps)?;
                // SyncBN: the statistics are those of the batch over all ranks.
                self.update_running(&mean, &var, count * crate::dist::sync_bn_world(x))?;
                return Ok(y);
            }
            let mean = x.mean_keepdim((0, 2, 3))?;
            let centered = x.broadcast_sub(&mean)?;
            let var = centered.sqr()?.mean_keepdim((0, 2, 3))?;
            self.update_running(&mean, &var, count)?;
            (mean, var)
        } else {
            (self.running_mean.as_tensor().reshape(shape)?, self.running_var.as_tensor().reshape(shape)?)
        };
        let inv_std = (var + self.cfg.eps)?.sqrt()?.recip()?;
        let scale = inv_std.broadcast_mul(&self.weight.reshape(shape)?)?;
        let y = x.broadcast_sub(&mean)?.broadcast_mul(&scale)?.broadcast_add(&self.bias.reshape(shape)?)?;
        Ok(y)
    }

    /// `act(BN(x) + residual)`: the tail of a conv-BN-ReLU or of a residual block (`act` = [`Act::Relu`] or
    /// `true`), of MobileNetV2's conv-BN-ReLU6 ([`Act::Relu6`]) or of its linear bottleneck with the residual
    /// add (`residual`, [`Act::None`] or `false`). On CPU (f32/f64, kernels active) one fused op
    /// ([`crate::kernels::batch_norm_act`]); elsewhere [`Self::forward_t`], then the add and the activation as
    /// Candle ops.
    pub fn forward_act(
        &self,
        x: &Tensor,
        mode: Mode,
        residual: Option<&Tensor>,
        act: impl Into<Act>,
    ) -> Result<Tensor> {
        let act = act.into();
        let fused = x.device().is_cpu()
            && crate::kernels::active_for(x)
            && x.dtype() == self.weight.dtype()
            && residual.is_none_or(|r| r.dtype() == x.dtype() && r.dims() == x.dims());
        if !fused {
            let y = self.forward_t(x, mode)?;
            let y = match residual {
                Some(r) => (y + r)?,
                None => y,
            };
            return Ok(act.apply(&y)?);
        }
        let (n, _, h, w) = x.dims4()?;
        let eps = self.cfg.eps;
        if mode.is_train() {
            let count = n * h * w;
            if count <= 1 {
                return Err(Error::BatchNormSingleValue {
                    name: self.name.clone(),
                    values: count,
                    shape: x.dims().to_vec(),
                });
            }
            let stats = crate::kernels::BnStats::Batch;
            let (y, st) = crate::kernels::batch_norm_act(x, &self.weight, &self.bias, eps, stats, residual, act)?;
            if let Some((mean, var)) = st {
                self.update_running(&mean, &var, count * crate::dist::sync_bn_world(x))?;
            }
            Ok(y)
        } else {
            let stats = crate::kernels::BnStats::Running(self.running_mean.as_tensor(), self.running_var.as_tensor());
            Ok(crate::kernels::batch_norm_act(x, &self.weight, &self.bias, eps, stats, residual, act)?.0)
        }
    }

    fn update_running(&self, mean: &Tensor, var: &Tensor, count: usize) -> Result<()> {
        let m = self.cfg.momentum;
        let unbiased = (var.detach().flatten_all()? * (count as f64 / (count as f64 - 1.0)))?;
        let rm = ((self.running_mean.as_tensor() * (1.0 - m))? + (mean.detach().flatten_all()? * m)?)?;
        let rv = ((self.running_var.as_tensor() * (1.0 - m))? + (unbiased * m)?)?;
        self.running_mean.set(&rm)?;
        self.running_var.set(&rv)?;
        Ok(())
    }
}
