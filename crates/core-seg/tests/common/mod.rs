//! Shared helpers of the parity and gradient-check tests: fixture loading, comparisons, and an f64
//! central-difference gradient checker.
#![allow(dead_code)]

use std::collections::HashMap;

use anyhow::{anyhow, Context, Result};
use candle_core::{DType, Device, Tensor, Var};

/// Directory of the committed PyTorch fixtures (`tools/parity/make_fixtures.py`).
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/parity");

/// The parity fixture folder: the committed one, or `$SEMISEG_PARITY_FIXTURES` for fixtures too large to commit
/// (e.g. `tools/parity/make_mobilenet_fixtures.py --imagenet`, the width-1 model on the ImageNet encoder).
pub fn fixtures() -> String {
    std::env::var("SEMISEG_PARITY_FIXTURES").unwrap_or_else(|_| FIXTURES.to_string())
}

/// All tensors of one safetensors fixture, by name.
pub fn load(file: &str) -> Result<HashMap<String, Tensor>> {
    let path = format!("{}/{file}", fixtures());
    candle_core::safetensors::load(&path, &Device::Cpu).with_context(|| format!("loading {path}"))
}

/// A JSON fixture.
pub fn load_json(file: &str) -> Result<serde_json::Value> {
    let path = format!("{}/{file}", fixtures());
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    Ok(serde_json::from_str(&text)?)
}

/// `t[name]` or an error naming the missing key.
pub fn get<'a>(t: &'a HashMap<String, Tensor>, name: &str) -> Result<&'a Tensor> {
    t.get(name).ok_or_else(|| anyhow!("fixture tensor `{name}` missing"))
}

/// Max-abs difference of two tensors of the same shape (compared in f64).
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    if a.dims() != b.dims() {
        return Err(anyhow!("shape {:?} vs {:?}", a.dims(), b.dims()));
    }
    let d = (a.to_dtype(DType::F64)? - b.to_dtype(DType::F64)?)?.abs()?;
    Ok(d.flatten_all()?.max(0)?.to_scalar::<f64>()?)
}

/// Max |t|.
pub fn max_abs(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>()?)
}

/// `Σ f(x)·r`, as f64.
fn loss_of(f: &dyn Fn(&Tensor) -> Result<Tensor>, x: &Tensor, r: &Tensor) -> Result<f64> {
    let y = f(x)?;
    Ok((y * r)?.sum_all()?.to_scalar::<f64>()?)
}

/// Analytic gradient of `Σ f(x)·r` with respect to `x` (f64), via Candle's backward.
pub fn analytic_grad(f: &dyn Fn(&Tensor) -> Result<Tensor>, x: &Tensor, r: &Tensor) -> Result<Tensor> {
    let v = Var::from_tensor(&x.copy()?)?;
    let loss = (f(v.as_tensor())? * r)?.sum_all()?;
    let grads = loss.backward()?;
    match grads.get(v.as_tensor()) {
        Some(g) => Ok(g.clone()),
        None => Ok(x.zeros_like()?),
    }
}

/// Central-difference check (h = 1e-6) of the gradient of `Σ f(x)·r` at up to `probes` elements of `x`
/// (evenly spread, plus the largest-|g| element). Returns the max relative error
/// `|fd − g| / max(|g|, |fd|, 1e-1·max|g|)` (the floor keeps zero-gradient elements, e.g. non-argmax
/// max-pool inputs, or tiny ones of a mean loss, from dividing the loss's rounding noise ε·|L|/h by ≈ 0).
pub fn fd_check(f: &dyn Fn(&Tensor) -> Result<Tensor>, x: &Tensor, r: &Tensor, probes: usize) -> Result<f64> {
    let h = 1e-6;
    let x = x.to_dtype(DType::F64)?;
    let g: Vec<f64> = analytic_grad(f, &x, r)?.flatten_all()?.to_vec1()?;
    let base: Vec<f64> = x.flatten_all()?.to_vec1()?;
    let n = base.len();
    let gmax = g.iter().fold(0f64, |m, v| m.max(v.abs()));
    if gmax == 0.0 {
        return Err(anyhow!("gradient is identically zero: nothing to check"));
    }
    let mut idx: Vec<usize> = (0..probes.min(n)).map(|k| k * n / probes.min(n)).collect();
    let argmax = (0..n).max_by(|&a, &b| g[a].abs().total_cmp(&g[b].abs())).unwrap_or(0);
    if !idx.contains(&argmax) {
        idx.push(argmax);
    }
    let mut worst = 0f64;
    for i in idx {
        let eval = |delta: f64| -> Result<f64> {
            let mut v = base.clone();
            v[i] += delta;
            let t = Tensor::from_vec(v, x.shape(), x.device())?;
            loss_of(f, &t, r)
        };
        let fd = (eval(h)? - eval(-h)?) / (2.0 * h);
        let denom = g[i].abs().max(fd.abs()).max(1e-1 * gmax);
        worst = worst.max((fd - g[i]).abs() / denom);
    }
    Ok(worst)
}

/// A deterministic pseudo-random f64 tensor (project RNG), standard normal entries.
pub fn randn(seed: u64, shape: &[usize]) -> Result<Tensor> {
    let mut rng = core_seg::rng::SegRng::new(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
    Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
}
