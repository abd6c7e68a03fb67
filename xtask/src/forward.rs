//! `cargo xtask forward`: check a converted checkpoint by running it on a given input.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use candle_core::{DType, Device};
use core_seg::model::{weights, Backbone, DeepLabConfig, DeepLabV3Plus, Stem};
use core_seg::nn::{Mode, ParamStore};

#[derive(clap::Args)]
pub struct ForwardArgs {
    /// resnet18 | resnet34 | resnet50 | resnet101 | mobilenet_v2
    #[arg(long, default_value = "resnet101", value_parser = parse_backbone)]
    backbone: Backbone,
    /// 8 or 16.
    #[arg(long, default_value_t = 16)]
    output_stride: usize,
    #[arg(long, default_value_t = 21)]
    classes: usize,
    /// First-stage width of a ResNet (64 for the standard nets).
    #[arg(long, default_value_t = 64)]
    width: usize,
    /// MobileNetV2 width multiplier.
    #[arg(long, default_value_t = 1.0)]
    width_mult: f64,
    /// deep (UniMatch) | torchvision
    #[arg(long, default_value = "deep", value_parser = parse_stem)]
    stem: Stem,
    /// ASPP width (default: c4 channels / 8).
    #[arg(long)]
    aspp_channels: Option<usize>,
    #[arg(long, default_value_t = 48)]
    reduce_channels: usize,
    #[arg(long, default_value_t = 256)]
    fuse_channels: usize,
    /// Full-model weights (UniMatch names; a `module.` prefix is stripped). Every model variable must be present.
    #[arg(long)]
    weights: PathBuf,
    /// safetensors file with a tensor named `input` (N×3×H×W, f32, normalised).
    #[arg(long)]
    input: PathBuf,
    /// Output safetensors file; gets `logits` (N×K×H×W, f32).
    #[arg(long)]
    output: PathBuf,
}

fn parse_backbone(s: &str) -> Result<Backbone, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("unknown backbone `{s}` (resnet18|resnet34|resnet50|resnet101|mobilenet_v2)"))
}

fn parse_stem(s: &str) -> Result<Stem, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("unknown stem `{s}` (deep|torchvision|v1c)"))
}

pub fn run(a: ForwardArgs) -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let cfg = DeepLabConfig {
        backbone: a.backbone,
        stem: a.stem,
        base_width: a.width,
        width_mult: a.width_mult,
        output_stride: a.output_stride,
        dilations: None,
        aspp_channels: a.aspp_channels,
        reduce_channels: a.reduce_channels,
        fuse_channels: a.fuse_channels,
        nclass: a.classes,
        ..DeepLabConfig::default()
    };
    let store = ParamStore::new(0);
    let model = DeepLabV3Plus::new(&cfg, store.var_builder(DType::F32, &dev))?;
    let report = weights::load_safetensors(&store, &a.weights, true)?;
    tracing::info!(
        loaded = report.loaded.len(),
        ignored = report.ignored.len(),
        "weights loaded from {}",
        a.weights.display()
    );
    let inputs = weights::read_safetensors(&a.input, &dev)?;
    let Some(x) = inputs.get("input") else {
        bail!("{}: no tensor named `input` (found: {:?})", a.input.display(), inputs.keys().collect::<Vec<_>>());
    };
    if x.rank() != 4 || x.dim(1)? != 3 {
        bail!("{}: `input` must be N×3×H×W, got {:?}", a.input.display(), x.dims());
    }
    let logits = model.forward_t(&x.to_dtype(DType::F32)?, Mode::Eval)?;
    let out = HashMap::from([("logits".to_string(), logits)]);
    weights::save_tensors_atomic(&out, &a.output).with_context(|| format!("writing {}", a.output.display()))?;
    tracing::info!("wrote logits {:?} to {}", out["logits"].dims(), a.output.display());
    Ok(())
}
