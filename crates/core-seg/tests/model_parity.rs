//! Whole-model parity with PyTorch: DeepLabV3+ ResNet-18 (deep stem, OS 16, tiny widths) loaded from
//! `tests/fixtures/parity/deeplab_r18.safetensors`; eval logits in f32, train-mode loss and three SGD steps
//! (momentum 0.9, wd 1e-4, backbone lr 0.01, head lr 0.1) in f64. Plus the R-101 name/shape list, and
//! GuidedMix's DeepLabV3 on ResNetV1c (forward, f32).

mod common;

use std::collections::{BTreeMap, HashMap};

use anyhow::{anyhow, Result};
use candle_core::{DType, Device, Tensor};
use common::{get, load, load_json, max_abs_diff};
use core_seg::model::{DeepLabConfig, DeepLabV3Plus};
use core_seg::nn::{count_parameters, Mode, ParamStore};
use core_seg::ops::cross_entropy_ignore;
use core_seg::optim::{backbone_head_groups, OptimConfig, Optimizer};

/// Builds the model in `dtype` and sets every variable from `param.<name>`; the name sets must be equal.
fn build_loaded(fixture: &str, dtype: DType) -> Result<(ParamStore, DeepLabV3Plus, HashMap<String, Tensor>)> {
    let j = load_json(&format!("{fixture}.json"))?;
    let cfg: DeepLabConfig = serde_json::from_value(j["config"].clone())?;
    let t = load(&format!("{fixture}.safetensors"))?;
    let store = ParamStore::new(0);
    let model = DeepLabV3Plus::new(&cfg, store.var_builder(dtype, &Device::Cpu))?;
    let vars = store.named_vars();
    let ours: Vec<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
    let mut theirs: Vec<&str> = t.keys().filter_map(|k| k.strip_prefix("param.")).collect();
    theirs.sort();
    assert_eq!(ours, theirs, "Rust and PyTorch variable names differ");
    for (name, var) in &vars {
        let src = get(&t, &format!("param.{name}"))?;
        if src.dims() != var.dims() {
            return Err(anyhow!("{name}: fixture {:?} vs model {:?}", src.dims(), var.dims()));
        }
        var.set(&src.to_dtype(dtype)?)?;
    }
    Ok((store, model, t))
}

#[test]
fn deeplab_r18_eval_logits_f32_match_pytorch() -> Result<()> {
    let (_, model, t) = build_loaded("deeplab_r18", DType::F32)?;
    let x = get(&t, "input")?.to_dtype(DType::F32)?;
    let logits = model.forward_t(&x, Mode::Eval)?;
    let reference = get(&t, "eval_logits")?;
    let d = max_abs_diff(&logits, reference)?;
    println!("eval logits f32: max-abs diff {d:.3e} (max |logit| {:.3})", common::max_abs(reference)?);
    assert_eq!(logits.dims(), [2, 5, 32, 32]);
    assert!(d <= 1e-4, "eval logits differ by {d:e}");
    Ok(())
}

#[test]
fn deeplab_r18_train_loss_and_three_sgd_steps_f64_match_pytorch() -> Result<()> {
    let (store, model, t) = build_loaded("deeplab_r18", DType::F64)?;
    let groups = backbone_head_groups(&store.named_vars(), 10.0);
    let n_trainable: usize = groups.iter().flat_map(|g| &g.vars).map(|(_, v)| v.elem_count()).sum();
    let expected = load_json("deeplab_r18.json")?["trainable_parameters"].as_u64().unwrap_or(0) as usize;
    assert_eq!(n_trainable, expected, "optimiser groups vs torch parameters()");
    assert_eq!(count_parameters(&store), expected);
    let sgd = OptimConfig::Sgd { momentum: 0.9, weight_decay: 1e-4 };
    let mut opt = Optimizer::new(sgd, groups, 0.01);
    let mut worst_loss = 0f64;
    for i in 0..3 {
        let img = get(&t, &format!("batch{i}.image"))?;
        let mask = get(&t, &format!("batch{i}.mask"))?;
        let loss = cross_entropy_ignore(&model.forward_t(img, Mode::Train)?, mask)?;
        let ours = loss.to_scalar::<f64>()?;
        let theirs = get(&t, &format!("train.loss{i}"))?.to_vec1::<f64>()?[0];
        if i == 0 {
            let fwd = get(&t, "train.fwd_loss")?.to_vec1::<f64>()?[0];
            assert!((ours - fwd).abs() <= 1e-10, "forward loss {ours} vs {fwd}");
        }
        println!("step {i}: loss {ours:.15} torch {theirs:.15} diff {:.2e}", (ours - theirs).abs());
        assert!((ours - theirs).abs() <= 1e-10, "loss {i}: {ours} vs {theirs}");
        worst_loss = worst_loss.max((ours - theirs).abs());
        let grads = loss.backward()?;
        opt.step(&grads)?;
    }
    // Every parameter and BN buffer after three steps; report the worst per kind.
    let mut worst: BTreeMap<&str, (f64, String)> = BTreeMap::new();
    let mut moved = 0usize;
    for (name, var) in store.named_vars() {
        let after = get(&t, &format!("after3.{name}"))?;
        let d = max_abs_diff(var.as_tensor(), after)?;
        if max_abs_diff(after, get(&t, &format!("param.{name}"))?)? > 1e-9 {
            moved += 1;
        }
        let kind = if name.ends_with("running_mean") || name.ends_with("running_var") { "buffer" } else { "param" };
        let e = worst.entry(kind).or_insert((0.0, String::new()));
        if d > e.0 {
            *e = (d, name.clone());
        }
        assert!(d <= 1e-10, "{name}: differs from PyTorch after 3 steps by {d:e}");
    }
    println!("max loss diff {worst_loss:.2e}; after 3 steps: {worst:?}; {moved} tensors moved");
    assert!(moved > 100, "the steps must change the weights ({moved} tensors moved)");
    Ok(())
}

#[test]
fn resnet101_deeplab_names_shapes_and_count_match_pytorch() -> Result<()> {
    let j = load_json("resnet101_deeplab_names.json")?;
    let cfg: DeepLabConfig = serde_json::from_value(j["config"].clone())?;
    assert_eq!(cfg, DeepLabConfig::default(), "the fixture is UniMatch's VOC model");
    let store = ParamStore::new(0);
    let _model = DeepLabV3Plus::new(&cfg, store.var_builder(DType::F32, &Device::Cpu))?;
    let ours: Vec<(String, Vec<usize>)> = store.named_vars().into_iter().map(|(n, v)| (n, v.dims().to_vec())).collect();
    let theirs: Vec<(String, Vec<usize>)> = serde_json::from_value(j["names"].clone())?;
    let missing: Vec<_> = theirs.iter().filter(|e| !ours.contains(e)).collect();
    let extra: Vec<_> = ours.iter().filter(|e| !theirs.contains(e)).collect();
    assert!(missing.is_empty() && extra.is_empty(), "missing in Rust {missing:?}; extra in Rust {extra:?}");
    assert_eq!(ours, theirs);
    let n = count_parameters(&store);
    let torch_n = j["trainable_parameters"].as_u64().unwrap_or(0) as usize;
    println!("R-101 DeepLabV3+: {} tensors, {n} trainable parameters (torch {torch_n})", ours.len());
    assert_eq!(n, torch_n);
    assert!((n as f64 - 59.5e6).abs() <= 0.05e6, "{n}");
    Ok(())
}

/// Bottleneck blocks, torchvision 7×7 stem and OS 8 (layer 3 and 4 dilated, ASPP 12/24/36), in f32:
/// eval logits, the train-mode loss and the BN running statistics after one train-mode forward.
#[test]
fn deeplab_r50_torchvision_stem_os8_f32_match_pytorch() -> Result<()> {
    let (store, model, t) = build_loaded("deeplab_r50_tv_os8", DType::F32)?;
    let x = get(&t, "input")?;
    let d = max_abs_diff(&model.forward_t(x, Mode::Eval)?, get(&t, "eval_logits")?)?;
    println!("R-50/tv/OS8 eval logits f32: max-abs diff {d:.3e}");
    assert!(d <= 1e-4, "eval logits differ by {d:e}");
    let logits = model.forward_t(x, Mode::Train)?;
    let loss = cross_entropy_ignore(&logits, get(&t, "train.mask")?)?.to_scalar::<f32>()?;
    let theirs = get(&t, "train.loss")?.to_vec1::<f32>()?[0];
    println!("R-50/tv/OS8 train loss {loss} torch {theirs}");
    assert!((loss - theirs).abs() <= 1e-4, "train loss {loss} vs {theirs}");
    let mut worst = 0f64;
    for (name, var) in store.named_vars() {
        if let Some(after) = t.get(&format!("after_fwd.{name}")) {
            worst = worst.max(max_abs_diff(var.as_tensor(), after)?);
        } else {
            assert!(!name.contains("running"), "{name} missing from the fixture");
        }
    }
    println!("R-50/tv/OS8 running stats after one train forward: max diff {worst:.3e}");
    assert!(worst <= 1e-4, "{worst}");
    let n = load_json("deeplab_r50_tv_os8.json")?["trainable_parameters"].as_u64().unwrap_or(0);
    assert_eq!(count_parameters(&store), n as usize);
    Ok(())
}

/// GuidedMix's network, DeepLabV3 (mmseg `ASPPHead`, `decode_head.*`) on ResNetV1c-50 (`backbone.stem.*`) at
/// OS 8, against a PyTorch model written after GuidedMix-Net's mmseg configs (`ConvModule` names, contract_dilation,
/// align_corners = false): equal name sets, f32 eval logits, the train-mode loss (dropout off).
#[test]
fn deeplabv3_v1c_os8_f32_match_pytorch() -> Result<()> {
    let (store, model, t) = build_loaded("deeplabv3_v1c_os8", DType::F32)?;
    let x = get(&t, "input")?;
    let d = max_abs_diff(&model.forward_t(x, Mode::Eval)?, get(&t, "eval_logits")?)?;
    println!("DeepLabV3/V1c/OS8 eval logits f32: max-abs diff {d:.3e}");
    assert!(d <= 1e-4, "eval logits differ by {d:e}");
    let logits = model.forward_t(x, Mode::Train)?;
    let loss = cross_entropy_ignore(&logits, get(&t, "train.mask")?)?.to_scalar::<f32>()?;
    let theirs = get(&t, "train.loss")?.to_vec1::<f32>()?[0];
    assert!((loss - theirs).abs() <= 1e-4, "train loss {loss} vs {theirs}");
    let n = load_json("deeplabv3_v1c_os8.json")?["trainable_parameters"].as_u64().unwrap_or(0);
    assert_eq!(count_parameters(&store), n as usize);
    Ok(())
}
