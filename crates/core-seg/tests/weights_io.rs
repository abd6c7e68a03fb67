//! Weight loading: full checkpoints (with a DDP `module.` prefix), backbone-only files with torchvision names,
//! missing/unexpected keys reported by name, `num_batches_tracked` ignored, shape mismatches rejected.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use core_seg::model::{weights, Backbone, DeepLabConfig, DeepLabV3Plus, Stem};
use core_seg::nn::{Mode, ParamStore};
use core_seg::{Error, Result};

fn cfg(stem: Stem) -> DeepLabConfig {
    DeepLabConfig {
        backbone: Backbone::Resnet18,
        stem,
        base_width: 8,
        output_stride: 16,
        dilations: None,
        aspp_channels: Some(8),
        reduce_channels: 8,
        fuse_channels: 8,
        nclass: 3,
        ..DeepLabConfig::default()
    }
}

fn build(seed: u64, stem: Stem) -> Result<(ParamStore, DeepLabV3Plus)> {
    let store = ParamStore::new(seed);
    let m = DeepLabV3Plus::new(&cfg(stem), store.var_builder(DType::F32, &Device::Cpu))?;
    Ok((store, m))
}

fn all_tensors(store: &ParamStore) -> HashMap<String, Tensor> {
    store.named_vars().into_iter().map(|(n, v)| (n, v.as_tensor().copy().expect("copy"))).collect()
}

#[test]
fn full_checkpoint_with_module_prefix_round_trips() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
    let (a, ma) = build(1, Stem::Deep)?;
    let mut t: HashMap<String, Tensor> = all_tensors(&a).into_iter().map(|(k, v)| (format!("module.{k}"), v)).collect();
    t.insert("module.backbone.bn1.num_batches_tracked".into(), Tensor::new(3i64, &Device::Cpu)?);
    let path = dir.path().join("ddp.safetensors");
    weights::save_tensors_atomic(&t, &path)?;
    let (b, mb) = build(2, Stem::Deep)?;
    let rep = weights::load_safetensors(&b, &path, true)?;
    assert!(rep.missing.is_empty() && rep.unexpected.is_empty(), "{rep:?}");
    assert_eq!(rep.ignored, vec!["module.backbone.bn1.num_batches_tracked".to_string()]);
    let x = Tensor::randn(0f32, 1.0, (1, 3, 32, 32), &Device::Cpu)?;
    let d = (ma.forward_t(&x, Mode::Eval)? - mb.forward_t(&x, Mode::Eval)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
    assert_eq!(d, 0.0);
    Ok(())
}

#[test]
fn torchvision_backbone_loads_under_backbone_prefix_with_report() -> Result<()> {
    let (src, _) = build(3, Stem::Torchvision)?;
    // A bare torchvision ResNet file: backbone names without prefix, plus a classifier `fc`.
    let mut t: HashMap<String, Tensor> = all_tensors(&src)
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix("backbone.").map(|s| (s.to_string(), v)))
        .collect();
    t.insert("fc.weight".into(), Tensor::zeros((10, 64), DType::F32, &Device::Cpu)?);
    t.insert("bn1.num_batches_tracked".into(), Tensor::new(0i64, &Device::Cpu)?);
    let (dst, _) = build(4, Stem::Torchvision)?;
    let rep = weights::load_tensors(&dst, &t, false)?;
    assert_eq!(rep.unexpected, vec!["fc.weight".to_string()]);
    assert!(rep.missing.is_empty(), "backbone-only load reports only backbone vars as missing: {:?}", rep.missing);
    assert!(rep.loaded.iter().all(|n| n.starts_with("backbone.")) && rep.loaded.len() + 1 == t.len() - 1);
    let w = |s: &ParamStore, n: &str| s.named_vars().into_iter().find(|(k, _)| k == n).expect(n).1;
    let d = (w(&src, "backbone.layer4.1.conv2.weight").as_tensor()
        - w(&dst, "backbone.layer4.1.conv2.weight").as_tensor())?
    .abs()?
    .max_all()?
    .to_scalar::<f32>()?;
    assert_eq!(d, 0.0);
    // Strict mode refuses the same file (the decoder is missing, `fc` unexpected), naming the keys.
    let err = weights::load_tensors(&dst, &t, true).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("fc.weight"), "{err}");
    // A deep-stem model cannot take a torchvision stem (UniMatch issue #38): the load fails naming the key.
    let (deep, _) = build(5, Stem::Deep)?;
    let err = weights::load_tensors(&deep, &t, false).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("bn1") && err.contains("stem"), "{err}");
    Ok(())
}

#[test]
fn shape_mismatch_is_an_error_naming_the_key() -> Result<()> {
    let (a, _) = build(1, Stem::Deep)?;
    let mut t = all_tensors(&a);
    t.insert("classifier.weight".into(), Tensor::zeros((5, 8, 1, 1), DType::F32, &Device::Cpu)?);
    let err = weights::load_tensors(&a, &t, false).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("classifier.weight") && err.contains("shape"), "{err}");
    let missing = weights::load_safetensors(&a, std::path::Path::new("/nonexistent/w.safetensors"), false);
    assert!(missing.err().map(|e| e.to_string()).unwrap_or_default().contains("/nonexistent/w.safetensors"));
    Ok(())
}
