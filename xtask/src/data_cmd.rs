//! `gen-data` and `check-data`: thin wrappers over `data::synthetic` and `data::check`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use data::check::{check_dataset, CheckOptions};
use data::synthetic::{write_voc_layout, SynthConfig, WriteOptions};
use data::DatasetKind;

/// Which generator to run.
#[derive(Clone, Copy, ValueEnum)]
pub enum Generator {
    /// Procedural synthetic scenes in VOC layout.
    Synthetic,
}

/// Arguments of `gen-data`.
#[derive(Args)]
pub struct GenDataArgs {
    /// Generator.
    pub generator: Generator,
    /// Output directory (created).
    #[arg(long)]
    pub out: PathBuf,
    /// Number of training images.
    #[arg(long, default_value_t = 2000)]
    pub num: usize,
    /// Number of validation images (default: num / 4).
    #[arg(long)]
    pub num_val: Option<usize>,
    /// Image side in pixels.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Seed (train = seed, val = seed + 1).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// TOML file with `SynthConfig` knobs (overrides defaults; `--size` wins).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Fraction of labelled pixels kept per mask (sparse-label mode).
    #[arg(long)]
    pub label_fraction: Option<f64>,
}

/// Arguments of `check-data`.
#[derive(Args)]
pub struct CheckDataArgs {
    /// Dataset kind.
    #[arg(long, value_enum)]
    pub dataset: Kind,
    /// Dataset root.
    #[arg(long)]
    pub root: PathBuf,
    /// Split directory (default: VOC ImageSets or the built-in UniMatch lists; synthetic ROOT/splits).
    #[arg(long)]
    pub splits: Option<PathBuf>,
    /// Class count (default 21 / 19 / 6).
    #[arg(long)]
    pub num_classes: Option<usize>,
}

/// Dataset kind on the command line.
#[derive(Clone, Copy, ValueEnum)]
pub enum Kind {
    /// PASCAL VOC 2012.
    Voc,
    /// Cityscapes.
    Cityscapes,
    /// Synthetic scenes in VOC layout.
    Synthetic,
}

/// Runs `gen-data`.
pub fn gen_data(a: GenDataArgs) -> anyhow::Result<()> {
    let mut cfg = match &a.config {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            toml::from_str::<SynthConfig>(&text).with_context(|| format!("parsing {}", p.display()))?
        }
        None => SynthConfig::default(),
    };
    cfg.size = a.size;
    if let Some(f) = a.label_fraction {
        cfg.label_fraction = f;
    }
    let Generator::Synthetic = a.generator;
    let opts = WriteOptions {
        cfg,
        seed: a.seed,
        num_train: a.num,
        num_val: a.num_val.unwrap_or(a.num / 4),
        ..Default::default()
    };
    write_voc_layout(&a.out, &opts)?;
    println!("wrote {} train + {} val images to {}", opts.num_train, opts.num_val, a.out.display());
    Ok(())
}

/// Runs `check-data`; exits non-zero (via the error) when anything is wrong.
pub fn check_data(a: CheckDataArgs) -> anyhow::Result<()> {
    let kind = match a.dataset {
        Kind::Voc => DatasetKind::Voc,
        Kind::Cityscapes => DatasetKind::Cityscapes,
        Kind::Synthetic => DatasetKind::Synthetic,
    };
    let report = check_dataset(&CheckOptions { kind, root: a.root, splits: a.splits, num_classes: a.num_classes })?;
    for p in &report.problems {
        println!("{p}");
    }
    let hist: Vec<String> =
        report.histogram.iter().enumerate().filter(|(_, n)| **n > 0).map(|(v, n)| format!("{v}:{n}")).collect();
    println!("label histogram: {}", hist.join(" "));
    println!("{}", report.summary());
    if !report.is_ok() {
        // The problems and the summary are printed above; exit non-zero without an extra backtrace.
        eprintln!("check-data: FAILED: {}", report.summary());
        std::process::exit(1);
    }
    Ok(())
}
