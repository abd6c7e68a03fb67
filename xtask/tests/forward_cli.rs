//! `cargo xtask forward` reproduces the in-process eval forward from files, and rejects bad input clearly.

use std::collections::HashMap;
use std::process::Command;

use candle_core::{DType, Device, Tensor};
use core_seg::model::{weights, Backbone, DeepLabConfig, DeepLabV3Plus, Stem};
use core_seg::nn::{Mode, ParamStore};

fn tiny() -> DeepLabConfig {
    DeepLabConfig {
        backbone: Backbone::Resnet18,
        stem: Stem::Torchvision,
        base_width: 8,
        output_stride: 16,
        dilations: None,
        aspp_channels: None,
        reduce_channels: 12,
        fuse_channels: 16,
        nclass: 4,
        ..DeepLabConfig::default()
    }
}

#[test]
fn forward_command_matches_in_process_logits() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let dev = Device::Cpu;
    let store = ParamStore::new(11);
    let model = DeepLabV3Plus::new(&tiny(), store.var_builder(DType::F32, &dev))?;
    let w = dir.path().join("w.safetensors");
    weights::save_safetensors(&store, &w)?;
    let x = Tensor::randn(0f32, 1.0, (2, 3, 40, 48), &dev)?;
    let xin = dir.path().join("x.safetensors");
    weights::save_tensors_atomic(&HashMap::from([("input".to_string(), x.clone())]), &xin)?;
    let out = dir.path().join("y.safetensors");
    let status = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["forward", "--backbone", "resnet18", "--stem", "torchvision", "--width", "8", "--classes", "4"])
        .args(["--reduce-channels", "12", "--fuse-channels", "16", "--output-stride", "16"])
        .arg("--weights")
        .arg(&w)
        .arg("--input")
        .arg(&xin)
        .arg("--output")
        .arg(&out)
        .status()?;
    assert!(status.success());
    let y = weights::read_safetensors(&out, &dev)?;
    let expect = model.forward_t(&x, Mode::Eval)?;
    assert_eq!(y["logits"].dims(), &[2, 4, 40, 48]);
    let d = (&y["logits"] - &expect)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
    assert!(d < 1e-6, "max diff {d}");

    // Wrong width: the strict load must fail and name the mismatching key.
    let bad = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["forward", "--backbone", "resnet18", "--stem", "torchvision", "--width", "16", "--classes", "4"])
        .arg("--weights")
        .arg(&w)
        .arg("--input")
        .arg(&xin)
        .arg("--output")
        .arg(dir.path().join("z.safetensors"))
        .output()?;
    assert!(!bad.status.success());
    let msg = String::from_utf8_lossy(&bad.stderr);
    assert!(msg.contains("w.safetensors") && msg.contains("shape"), "{msg}");
    Ok(())
}
