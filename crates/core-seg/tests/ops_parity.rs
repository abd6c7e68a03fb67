//! PyTorch parity of every op in `core_seg::ops`: values and input gradients of `Σ out·R` in f64
//! (≤ 1e-12) and the f32 forward (≤ 1e-4), against `tests/fixtures/parity/ops.safetensors`.

mod common;

use std::collections::HashMap;

use anyhow::{anyhow, Result};
use candle_core::{DType, Tensor};
use common::{get, load, load_json, max_abs_diff};
use core_seg::nn::{BatchNorm2d, BnConfig, Mode, ParamStore};
use core_seg::ops::{self, OhemConfig};
use serde_json::Value;

/// The op of one fixture case applied to its float input `x` (the other inputs from the fixture).
fn apply(case: &Value, t: &HashMap<String, Tensor>, x: &Tensor) -> Result<Tensor> {
    let name = case["name"].as_str().unwrap_or_default();
    let args = &case["args"];
    let target = || get(t, &format!("{name}.target"));
    Ok(match case["op"].as_str().unwrap_or_default() {
        "resize" => {
            let s = &args["size"];
            let size = (s[0].as_u64().unwrap_or(0) as usize, s[1].as_u64().unwrap_or(0) as usize);
            ops::resize_bilinear(x, size, args["align_corners"].as_bool().unwrap_or(false))?
        }
        "maxpool" => ops::max_pool_3x3_s2_p1(x)?,
        "ce" => ops::cross_entropy_ignore(x, target()?)?,
        "ce_pixel" => ops::cross_entropy_per_pixel(x, target()?)?.0,
        "ohem" => {
            let cfg = OhemConfig {
                thresh: args["thresh"].as_f64().unwrap_or(0.0),
                min_kept: args["min_kept"].as_u64().unwrap_or(0) as usize,
            };
            ops::ohem_cross_entropy(x, target()?, cfg)?
        }
        "pixel_shuffle" => ops::pixel_shuffle(x, args["r"].as_u64().unwrap_or(0) as usize)?,
        "pixel_unshuffle" => ops::pixel_unshuffle(x, args["r"].as_u64().unwrap_or(0) as usize)?,
        "dropout2d" => ops::dropout2d_with_mask(x, get(t, &format!("{name}.mask"))?)?,
        op => return Err(anyhow!("unknown op {op}")),
    })
}

/// The float input every case differentiates: `x` or `logits`.
fn input_key(case: &Value) -> &'static str {
    match case["op"].as_str() {
        Some("ce" | "ce_pixel" | "ohem") => "logits",
        _ => "x",
    }
}

fn cases() -> Result<Vec<Value>> {
    let j = load_json("ops.json")?;
    let cases = j["cases"].as_array().cloned().unwrap_or_default();
    let n = cases.iter().filter(|c| c["op"] != "bn_train").count();
    assert!(n >= 25, "expected ≥ 25 op cases, got {n}");
    Ok(cases.into_iter().filter(|c| c["op"] != "bn_train").collect())
}

#[test]
fn ops_match_pytorch_f64_values_and_gradients() -> Result<()> {
    let t = load("ops.safetensors")?;
    let (mut worst_v, mut worst_g) = (0f64, 0f64);
    for case in cases()? {
        let name = case["name"].as_str().unwrap_or_default();
        let key = input_key(&case);
        let x = get(&t, &format!("{name}.{key}"))?;
        let r = get(&t, &format!("{name}.R"))?;
        let out = apply(&case, &t, x)?;
        let dv = max_abs_diff(&out, get(&t, &format!("{name}.out"))?)?;
        let f = |x: &Tensor| -> Result<Tensor> { apply(&case, &t, x) };
        let g = common::analytic_grad(&f, x, r)?;
        let dg = max_abs_diff(&g, get(&t, &format!("{name}.grad_{key}"))?)?;
        println!("{name:28} value {dv:.2e}  grad {dg:.2e}");
        assert!(dv <= 1e-12, "{name}: value differs by {dv:e}");
        assert!(dg <= 1e-12, "{name}: gradient differs by {dg:e}");
        worst_v = worst_v.max(dv);
        worst_g = worst_g.max(dg);
    }
    println!("max value diff {worst_v:.2e}, max gradient diff {worst_g:.2e}");
    Ok(())
}

#[test]
fn ops_match_pytorch_f32_forward() -> Result<()> {
    let t = load("ops.safetensors")?;
    let mut worst = 0f64;
    for case in cases()? {
        let name = case["name"].as_str().unwrap_or_default();
        let x = get(&t, &format!("{name}.{}", input_key(&case)))?.to_dtype(DType::F32)?;
        let out = apply(&case, &t, &x)?;
        assert_eq!(out.dtype(), DType::F32, "{name}: f32 in, f32 out");
        let d = max_abs_diff(&out, get(&t, &format!("{name}.out32"))?)?;
        assert!(d <= 1e-4, "{name}: f32 forward differs by {d:e}");
        worst = worst.max(d);
    }
    println!("max f32 forward diff {worst:.2e}");
    Ok(())
}

#[test]
fn per_pixel_ce_valid_mask_and_ohem_kept_counts() -> Result<()> {
    let t = load("ops.safetensors")?;
    let target = get(&t, "ce_pixel.target")?;
    let (_, valid) = ops::cross_entropy_per_pixel(get(&t, "ce_pixel.logits")?, target)?;
    let expect = target.ne(255i64)?.to_dtype(DType::F64)?;
    assert_eq!(max_abs_diff(&valid, &expect)?, 0.0);
    // OHEM: the number of pixels PyTorch kept is reproduced by the Rust selection rule (q ≤ threshold).
    for (name, min_kept) in [("ohem_thresh", 10usize), ("ohem_kth", 60)] {
        let logits = get(&t, &format!("{name}.logits"))?;
        let target = get(&t, &format!("{name}.target"))?;
        let kept_torch = get(&t, &format!("{name}.kept"))?.to_vec1::<i64>()?[0] as usize;
        let (loss, valid) = ops::cross_entropy_per_pixel(logits, target)?;
        let q: Vec<f64> = loss.neg()?.exp()?.flatten_all()?.to_vec1()?;
        let v: Vec<f64> = valid.flatten_all()?.to_vec1()?;
        let mut qs: Vec<f64> = q.iter().zip(&v).map(|(q, v)| if *v > 0.0 { *q } else { 1.0 }).collect();
        qs.sort_by(f64::total_cmp);
        let thr = 0.7f64.max(qs[min_kept - 1]);
        let kept = q.iter().zip(&v).filter(|(q, v)| **v > 0.0 && **q <= thr).count();
        assert_eq!(kept, kept_torch, "{name}");
        assert!(kept >= min_kept && kept < v.iter().filter(|v| **v > 0.0).count(), "{name}: {kept}");
    }
    Ok(())
}

/// `nn::BatchNorm2d` in training mode vs `F.batch_norm(training=True)`: output, gradients of x, γ, β, and
/// the running statistics after one update (f64).
#[test]
fn batch_norm_train_matches_pytorch_f64() -> Result<()> {
    let t = load("ops.safetensors")?;
    let store = ParamStore::new(1);
    let bn = BatchNorm2d::new(3, BnConfig::default(), store.var_builder(DType::F64, &candle_core::Device::Cpu))?;
    let vars: HashMap<String, candle_core::Var> = store.named_vars().into_iter().collect();
    for (var, key) in
        [("weight", "weight"), ("bias", "bias"), ("running_mean", "running_mean0"), ("running_var", "running_var0")]
    {
        vars[var].set(get(&t, &format!("bn_train.{key}"))?)?;
    }
    let x = candle_core::Var::from_tensor(get(&t, "bn_train.x")?)?;
    let out = bn.forward_t(x.as_tensor(), Mode::Train)?;
    let grads = (&out * get(&t, "bn_train.R")?)?.sum_all()?.backward()?;
    let mut diffs = vec![("out", max_abs_diff(&out, get(&t, "bn_train.out")?)?)];
    diffs.push(("grad_x", max_abs_diff(grads.get(x.as_tensor()).expect("dx"), get(&t, "bn_train.grad_x")?)?));
    for p in ["weight", "bias"] {
        let g = grads.get(vars[p].as_tensor()).expect("param grad");
        diffs.push((p, max_abs_diff(g, get(&t, &format!("bn_train.grad_{p}"))?)?));
    }
    diffs.push(("running_mean", max_abs_diff(vars["running_mean"].as_tensor(), get(&t, "bn_train.running_mean1")?)?));
    diffs.push(("running_var", max_abs_diff(vars["running_var"].as_tensor(), get(&t, "bn_train.running_var1")?)?));
    println!("batch norm train vs PyTorch: {diffs:?}");
    for (what, d) in diffs {
        assert!(d <= 1e-12, "batch norm {what} differs by {d:e}");
    }
    Ok(())
}
