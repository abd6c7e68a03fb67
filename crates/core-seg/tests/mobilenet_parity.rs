//! Parity with PyTorch of MobileNetV2 (torchvision's `mobilenet_v2().features`) and DeepLabV3+ on it
//! (`tools/parity/make_mobilenet_fixtures.py`): width 0.1, OS 16 eval logits in f32 and three f64 SGD steps;
//! OS 8 and the undilated network (OS 32) in f32 from the same weights; torchvision's names and shapes, the
//! parameter count at width 1 and the `_make_divisible` channel rounding.

mod common;

use std::collections::HashMap;

use anyhow::{anyhow, Result};
use candle_core::{DType, Device, Tensor};
use common::{get, load, load_json, max_abs_diff};
use core_seg::model::mobilenet::make_divisible;
use core_seg::model::{DeepLabConfig, DeepLabV3Plus, MobileNetConfig, MobileNetV2};
use core_seg::nn::{count_parameters, Mode, ParamStore};
use core_seg::ops::cross_entropy_ignore;
use core_seg::optim::{backbone_head_groups, OptimConfig, Optimizer};

const PARAMS: &str = "deeplab_mnv2.safetensors";

/// Sets every variable of `store` from `t["{prefix}{name}"]` (after `strip` is removed from the name); the name
/// sets must be equal.
fn set_all(store: &ParamStore, t: &HashMap<String, Tensor>, prefix: &str, strip: &str, dtype: DType) -> Result<()> {
    let vars = store.named_vars();
    let ours: Vec<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
    let mut theirs: Vec<String> = t
        .keys()
        .filter_map(|k| k.strip_prefix(prefix))
        .filter_map(|k| k.strip_prefix(strip))
        .map(str::to_string)
        .collect();
    theirs.sort();
    assert_eq!(ours, theirs, "Rust and PyTorch variable names differ");
    for (name, var) in &vars {
        let src = get(t, &format!("{prefix}{strip}{name}"))?;
        if src.dims() != var.dims() {
            return Err(anyhow!("{name}: fixture {:?} vs model {:?}", src.dims(), var.dims()));
        }
        var.set(&src.to_dtype(dtype)?)?;
    }
    Ok(())
}

/// The model of `config_json`'s config in `dtype`, with the parameters of `deeplab_mnv2.safetensors`.
fn build_loaded(config_json: &str, dtype: DType) -> Result<(ParamStore, DeepLabV3Plus)> {
    let cfg: DeepLabConfig = serde_json::from_value(load_json(config_json)?["config"].clone())?;
    let store = ParamStore::new(0);
    let model = DeepLabV3Plus::new(&cfg, store.var_builder(dtype, &Device::Cpu))?;
    set_all(&store, &load(PARAMS)?, "param.", "", dtype)?;
    Ok((store, model))
}

#[test]
fn deeplab_mnv2_eval_logits_f32_match_pytorch() -> Result<()> {
    let (store, model) = build_loaded("deeplab_mnv2.json", DType::F32)?;
    let t = load(PARAMS)?;
    let x = get(&t, "input")?.to_dtype(DType::F32)?;
    let logits = model.forward_t(&x, Mode::Eval)?;
    let reference = get(&t, "eval_logits")?;
    let d = max_abs_diff(&logits, reference)?;
    println!("MNV2 OS16 eval logits f32: max-abs diff {d:.3e} (max |logit| {:.3})", common::max_abs(reference)?);
    assert_eq!(logits.dims(), [2, 5, 29, 23]);
    assert!(d <= 1e-4, "eval logits differ by {d:e}");
    let n = load_json("deeplab_mnv2.json")?["trainable_parameters"].as_u64().unwrap_or(0) as usize;
    assert_eq!(count_parameters(&store), n);
    Ok(())
}

/// `(Σ v, Σ v², Σ (i+1)/n·v_i)` of the flattened tensor and the scale `1 + Σ |v| + Σ v²` for the tolerance.
fn moments(v: &Tensor) -> Result<([f64; 3], f64)> {
    let f: Vec<f64> = v.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
    let n = f.len() as f64;
    let mut m = [0f64; 3];
    let mut scale = 1.0;
    for (i, x) in f.iter().enumerate() {
        m[0] += x;
        m[1] += x * x;
        m[2] += (i + 1) as f64 / n * x;
        scale += x.abs() + x * x;
    }
    Ok((m, scale))
}

#[test]
fn deeplab_mnv2_train_three_sgd_steps_f64_match_pytorch() -> Result<()> {
    let (store, model) = build_loaded("deeplab_mnv2.json", DType::F64)?;
    let t = load(PARAMS)?;
    let sgd = OptimConfig::Sgd { momentum: 0.9, weight_decay: 1e-4 };
    let mut opt = Optimizer::new(sgd, backbone_head_groups(&store.named_vars(), 10.0), 0.01);
    let mut worst_loss = 0f64;
    for i in 0..3 {
        let img = get(&t, &format!("batch{i}.image"))?.to_dtype(DType::F64)?;
        let mask = get(&t, &format!("batch{i}.mask"))?;
        let loss = cross_entropy_ignore(&model.forward_t(&img, Mode::Train)?, mask)?;
        let (ours, theirs) = (loss.to_scalar::<f64>()?, get(&t, &format!("train.loss{i}"))?.to_vec1::<f64>()?[0]);
        println!("step {i}: loss {ours:.15} torch {theirs:.15} diff {:.2e}", (ours - theirs).abs());
        assert!((ours - theirs).abs() <= 1e-10, "loss {i}: {ours} vs {theirs}");
        worst_loss = worst_loss.max((ours - theirs).abs());
        opt.step(&loss.backward()?)?;
    }
    // Every parameter and BN buffer after three steps: its moments; the listed tensors element by element.
    let (mut worst_moment, mut worst_full, mut moved, mut full) = (0f64, 0f64, 0usize, 0usize);
    for (name, var) in store.named_vars() {
        let (ours, scale) = moments(var.as_tensor())?;
        let theirs = get(&t, &format!("after3_moments.{name}"))?.to_vec1::<f64>()?;
        for k in 0..3 {
            let d = (ours[k] - theirs[k]).abs() / scale;
            worst_moment = worst_moment.max(d);
            assert!(d <= 1e-11, "{name}: moment {k} {} vs torch {} after 3 steps", ours[k], theirs[k]);
        }
        if max_abs_diff(var.as_tensor(), get(&t, &format!("param.{name}"))?)? > 1e-9 {
            moved += 1;
        }
        if let Some(after) = t.get(&format!("after3.{name}")) {
            let d = max_abs_diff(var.as_tensor(), after)?;
            assert!(d <= 1e-10, "{name}: differs from PyTorch after 3 steps by {d:e}");
            worst_full = worst_full.max(d);
            full += 1;
        }
    }
    println!(
        "max loss diff {worst_loss:.2e}; after 3 steps: moments rel. diff ≤ {worst_moment:.2e}, \
         {full} full tensors max diff {worst_full:.2e}; {moved} tensors moved"
    );
    assert_eq!(full, 7, "every fully stored tensor is a model variable");
    assert!(moved > 200, "the steps must change the weights ({moved} tensors moved)");
    Ok(())
}

/// OS 8 (blocks 7–17 dilated, ASPP 12/24/36) from the same weights, f32: eval logits, the train-mode loss and the
/// running statistics after one train-mode forward; and the undilated encoder (torchvision's `features[:18]`).
#[test]
fn deeplab_mnv2_os8_and_undilated_encoder_f32_match_pytorch() -> Result<()> {
    let (store, model) = build_loaded("deeplab_mnv2_os8.json", DType::F32)?;
    let t = load("deeplab_mnv2_os8.safetensors")?;
    let x = &get(&t, "input")?.to_dtype(DType::F32)?;
    let d = max_abs_diff(&model.forward_t(x, Mode::Eval)?, get(&t, "eval_logits")?)?;
    println!("MNV2 OS8 eval logits f32: max-abs diff {d:.3e}");
    assert!(d <= 1e-4, "eval logits differ by {d:e}");
    let enc = model.backbone.forward_t(x, Mode::Eval)?;
    let [c1, c2, c3, c4] = [&enc.c1, &enc.c2, &enc.c3, &enc.c4].map(|c| c.dims().to_vec());
    assert_eq!((c1, c2, c3, c4), (vec![2, 8, 7, 8], vec![2, 8, 4, 4], vec![2, 16, 4, 4], vec![2, 32, 4, 4]));
    let loss = cross_entropy_ignore(&model.forward_t(x, Mode::Train)?, get(&t, "train.mask")?)?.to_scalar::<f32>()?;
    let theirs = get(&t, "train.loss")?.to_vec1::<f32>()?[0];
    println!("MNV2 OS8 train loss {loss} torch {theirs}");
    assert!((loss - theirs).abs() <= 1e-4, "train loss {loss} vs {theirs}");
    let (mut worst, mut n) = (0f64, 0);
    for (name, var) in store.named_vars().into_iter().filter(|(n, _)| n.contains("running")) {
        worst = worst.max(max_abs_diff(var.as_tensor(), get(&t, &format!("after_fwd.{name}"))?)?);
        n += 1;
    }
    println!("MNV2 OS8 running stats after one train forward ({n} buffers): max diff {worst:.3e}");
    assert!(worst <= 1e-4 && n > 100, "{worst} over {n}");

    let plain_store = ParamStore::new(0);
    let cfg = MobileNetConfig { width_mult: 0.1, output_stride: 32, last_conv: false };
    let plain = MobileNetV2::new(cfg, plain_store.var_builder(DType::F32, &Device::Cpu))?;
    set_all(&plain_store, &load(PARAMS)?, "param.", "backbone.", DType::F32)?;
    let c4 = plain.forward_t(x, Mode::Eval)?.c4;
    let d = max_abs_diff(&c4, get(&t, "os32_c4")?)?;
    println!("MNV2 OS32 c4 f32: max-abs diff {d:.3e}");
    assert_eq!(c4.dims(), [2, 32, 1, 1]);
    assert!(d <= 1e-4, "undilated c4 differs by {d:e}");
    Ok(())
}

/// Width 1: the encoder's `features.*` (with `features.18`) are torchvision's names and shapes; DeepLabV3+ MNV2
/// (ASPP 256) has PyTorch's names, shapes and parameter count; the channel rounding is torchvision's.
#[test]
fn mobilenet_v2_names_shapes_count_and_rounding_match_torchvision() -> Result<()> {
    let j = load_json("deeplab_mnv2_names.json")?;
    let listing = |s: &ParamStore| -> Vec<(String, Vec<usize>)> {
        let mut v: Vec<_> = s.named_vars().into_iter().map(|(n, v)| (n, v.dims().to_vec())).collect();
        v.sort();
        v
    };
    let store = ParamStore::new(0);
    let cfg = MobileNetConfig { width_mult: 1.0, output_stride: 32, last_conv: true };
    let _m = MobileNetV2::new(cfg, store.var_builder(DType::F32, &Device::Cpu))?;
    let theirs: Vec<(String, Vec<usize>)> = serde_json::from_value(j["torchvision_features"].clone())?;
    assert_eq!(listing(&store), theirs);
    assert_eq!(theirs.len(), 260, "312 state_dict entries less 52 num_batches_tracked");
    assert_eq!(count_parameters(&store) as u64, j["torchvision_features_parameters"].as_u64().unwrap_or(0));

    let mut cfg: DeepLabConfig = serde_json::from_value(j["config"].clone())?;
    assert_eq!((cfg.width_mult, cfg.output_stride), (1.0, 16), "defaults");
    let store = ParamStore::new(0);
    let _m = DeepLabV3Plus::new(&cfg, store.var_builder(DType::F32, &Device::Cpu))?;
    let theirs: Vec<(String, Vec<usize>)> = serde_json::from_value(j["names"].clone())?;
    let ours = listing(&store);
    let missing: Vec<_> = theirs.iter().filter(|e| !ours.contains(e)).collect();
    let extra: Vec<_> = ours.iter().filter(|e| !theirs.contains(e)).collect();
    assert!(missing.is_empty() && extra.is_empty(), "missing in Rust {missing:?}; extra in Rust {extra:?}");
    let (n, torch_n) = (count_parameters(&store), j["trainable_parameters"].as_u64().unwrap_or(0) as usize);
    println!("DeepLabV3+ MobileNetV2 (width 1, ASPP 256, 21 classes): {n} trainable parameters (torch {torch_n})");
    assert_eq!(n, torch_n);
    cfg.aspp_channels = None;
    assert_eq!(cfg.encoder_channels()?, [24, 32, 96, 320]);

    let table: Vec<(f64, usize)> = serde_json::from_value(j["make_divisible"].clone())?;
    assert!(table.len() >= 70);
    for (v, expect) in table {
        assert_eq!(make_divisible(v, 8), expect, "_make_divisible({v}, 8)");
    }
    Ok(())
}
