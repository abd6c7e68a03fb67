//! Optimisers with PyTorch semantics, parameter groups and the poly schedule.
//!
//! Candle's `SGD` has no momentum or weight decay, and its `AdamW` keeps its state private (no exact resume),
//! so both are implemented here with their state exposed for checkpoints.

use std::collections::BTreeMap;

use candle_core::{backprop::GradStore, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::Result;

/// A named set of variables sharing a learning-rate multiplier (UniMatch: backbone ×1, the rest ×`lr_multi`).
#[derive(Clone)]
pub struct ParamGroup {
    pub name: String,
    pub lr_mult: f64,
    pub vars: Vec<(String, Var)>,
}

/// Splits trainable variables into `backbone.*` (×1) and the rest (×`head_mult`). BN running statistics are
/// buffers, not parameters, and are left out.
pub fn backbone_head_groups(vars: &[(String, Var)], head_mult: f64) -> Vec<ParamGroup> {
    let trainable = |n: &str| !n.ends_with("running_mean") && !n.ends_with("running_var");
    let (mut bb, mut head) = (Vec::new(), Vec::new());
    for (n, v) in vars.iter().filter(|(n, _)| trainable(n)) {
        if n.starts_with("backbone.") {
            bb.push((n.clone(), v.clone()));
        } else {
            head.push((n.clone(), v.clone()));
        }
    }
    vec![
        ParamGroup { name: "backbone".into(), lr_mult: 1.0, vars: bb },
        ParamGroup { name: "head".into(), lr_mult: head_mult, vars: head },
    ]
}

/// Poly decay: `lr = base · (1 − it/T)^power`.
pub fn poly_lr(base: f64, it: usize, total: usize, power: f64) -> f64 {
    poly_lr_floor(base, 0.0, it, total, power)
}

/// Poly decay with a floor (mmcv's `PolyLrUpdaterHook` with `min_lr`):
/// `lr = (base − min) · (1 − it/T)^power + min`.
pub fn poly_lr_floor(base: f64, min: f64, it: usize, total: usize, power: f64) -> f64 {
    if total == 0 {
        return base;
    }
    (base - min) * (1.0 - (it.min(total) as f64) / total as f64).powf(power) + min
}

/// Optimiser hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum OptimConfig {
    /// `buf ← m·buf + (g + wd·p)` (first step `buf = g + wd·p`), `p ← p − lr·buf`.
    Sgd { momentum: f64, weight_decay: f64 },
    /// Decoupled decay: `p ← p·(1 − lr·wd)`, then bias-corrected Adam.
    Adamw { beta1: f64, beta2: f64, eps: f64, weight_decay: f64 },
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig::Sgd { momentum: 0.9, weight_decay: 1e-4 }
    }
}

/// An optimiser over parameter groups; `state` holds one or two moment tensors per parameter name.
pub struct Optimizer {
    pub cfg: OptimConfig,
    pub groups: Vec<ParamGroup>,
    /// Base learning rate; group `g` uses `lr · g.lr_mult`.
    pub lr: f64,
    pub step_count: usize,
    pub state: BTreeMap<String, Tensor>,
}

impl Optimizer {
    pub fn new(cfg: OptimConfig, groups: Vec<ParamGroup>, lr: f64) -> Self {
        Self { cfg, groups, lr, step_count: 0, state: BTreeMap::new() }
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// One update from `grads`; variables without a gradient are skipped (no decay either).
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step_count += 1;
        let t = self.step_count as i32;
        let groups = std::mem::take(&mut self.groups);
        let result = (|| {
            for g in &groups {
                let lr = self.lr * g.lr_mult;
                for (name, var) in &g.vars {
                    let Some(grad) = grads.get(var.as_tensor()) else {
                        continue;
                    };
                    let p = var.as_tensor();
                    match self.cfg {
                        OptimConfig::Sgd { momentum, weight_decay }
                            if crate::kernels::sgd_supported(
                                p,
                                grad,
                                self.state.get(&format!("{name}.momentum_buffer")),
                            ) =>
                        {
                            let key = format!("{name}.momentum_buffer");
                            let buf =
                                crate::kernels::sgd_step(var, grad, self.state.get(&key), lr, momentum, weight_decay)?;
                            self.state.insert(key, buf);
                        }
                        OptimConfig::Sgd { momentum, weight_decay } => {
                            let d = (grad + (p * weight_decay)?)?;
                            let key = format!("{name}.momentum_buffer");
                            let buf = match self.state.get(&key) {
                                Some(b) if momentum != 0.0 => ((b * momentum)? + &d)?,
                                _ => d,
                            };
                            var.set(&(p - (&buf * lr)?)?)?;
                            self.state.insert(key, buf.detach());
                        }
                        OptimConfig::Adamw { beta1, beta2, eps, weight_decay } => {
                            let (km, kv) = (format!("{name}.exp_avg"), format!("{name}.exp_avg_sq"));
                            let m_prev = self.state.get(&km).cloned().unwrap_or(grad.zeros_like()?);
                            let v_prev = self.state.get(&kv).cloned().unwrap_or(grad.zeros_like()?);
                            let m = ((m_prev * beta1)? + (grad * (1.0 - beta1))?)?;
                            let v = ((v_prev * beta2)? + (grad.sqr()? * (1.0 - beta2))?)?;
                            let mhat = (&m / (1.0 - beta1.powi(t)))?;
                            let vhat = (&v / (1.0 - beta2.powi(t)))?;
                            let decayed = (p * (1.0 - lr * weight_decay))?;
                            let upd = (mhat / (vhat.sqrt()? + eps)?)?;
                            var.set(&(decayed - (upd * lr)?)?)?;
                            self.state.insert(km, m.detach());
                            self.state.insert(kv, v.detach());
                        }
                    }
                }
            }
            Ok(())
        })();
        self.groups = groups;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn poly_matches_spec_example() {
        let lr = poly_lr(0.001, 50, 100, 0.9);
        assert!((lr - 5.35887e-4).abs() < 1e-9, "{lr}");
        assert_eq!(poly_lr(0.001, 0, 100, 0.9), 0.001);
    }

    /// GuidedMix's schedule (official code, mmcv poly with `min_lr`): 0.01 at it = 0, 1e-4 at T, 0.00540528 at T/2.
    #[test]
    fn poly_with_floor_matches_mmcv() {
        assert!((poly_lr_floor(0.01, 1e-4, 0, 20000, 0.9) - 0.01).abs() < 1e-15);
        assert!((poly_lr_floor(0.01, 1e-4, 20000, 20000, 0.9) - 1e-4).abs() < 1e-15);
        let mid = poly_lr_floor(0.01, 1e-4, 10000, 20000, 0.9);
        assert!((mid - 0.00540528).abs() < 5e-9, "{mid}");
    }

    /// Two SGD steps on f(p) = ½‖p‖² by hand: g = p, wd = 0.1, m = 0.9, lr = 0.1; head group ×10.
    #[test]
    #[allow(clippy::approx_constant)]
    fn sgd_momentum_weight_decay_and_groups_by_hand() -> Result<()> {
        let dev = Device::Cpu;
        let a = Var::from_tensor(&Tensor::new(&[1.0f64], &dev)?)?;
        let b = Var::from_tensor(&Tensor::new(&[1.0f64], &dev)?)?;
        let vars = vec![("backbone.w".to_string(), a.clone()), ("classifier.w".to_string(), b.clone())];
        let groups = backbone_head_groups(&vars, 10.0);
        let mut opt = Optimizer::new(OptimConfig::Sgd { momentum: 0.9, weight_decay: 0.1 }, groups, 0.01);
        for _ in 0..2 {
            let loss = ((a.as_tensor().sqr()? + b.as_tensor().sqr()?)? * 0.5)?.sum_all()?;
            opt.step(&loss.backward()?)?;
        }
        // backbone: d1 = 1 + 0.1 = 1.1, p1 = 1 − 0.011 = 0.989; d2 = 1.1·0.989 = 1.0879,
        // buf2 = 0.9·1.1 + 1.0879 = 2.0779, p2 = 0.989 − 0.020779 = 0.968221.
        let pa = a.as_tensor().to_vec1::<f64>()?[0];
        assert!((pa - 0.968221).abs() < 1e-12, "{pa}");
        // head at lr 0.1: p1 = 1 − 0.11 = 0.89; d2 = 1.1·0.89 = 0.979; buf2 = 0.99 + 0.979 = 1.969; p2 = 0.6931.
        let pb = b.as_tensor().to_vec1::<f64>()?[0];
        assert!((pb - 0.6931).abs() < 1e-12, "{pb}");
        let _ = DType::F64;
        Ok(())
    }

    /// AdamW first step moves each parameter by exactly lr·sign(g) (plus decay).
    #[test]
    fn adamw_first_step_is_sign_step() -> Result<()> {
        let dev = Device::Cpu;
        let a = Var::from_tensor(&Tensor::new(&[2.0f64, -3.0], &dev)?)?;
        let groups = vec![ParamGroup { name: "all".into(), lr_mult: 1.0, vars: vec![("w".into(), a.clone())] }];
        let cfg = OptimConfig::Adamw { beta1: 0.9, beta2: 0.999, eps: 0.0, weight_decay: 0.5 };
        let mut opt = Optimizer::new(cfg, groups, 0.1);
        let loss = a.as_tensor().sqr()?.sum_all()?;
        opt.step(&loss.backward()?)?;
        let p = a.as_tensor().to_vec1::<f64>()?;
        // decay: 2·(1 − 0.05) = 1.9, then −0.1·sign(4) → 1.8; −3·0.95 = −2.85 + 0.1 → −2.75.
        assert!((p[0] - 1.8).abs() < 1e-12 && (p[1] + 2.75).abs() < 1e-12, "{p:?}");
        Ok(())
    }
}
