//! `cargo xtask train`, `eval` and `predict`.

use std::path::PathBuf;

use semiseg::runtime::iou_table;
use semiseg::{RunConfig, Runner, TrainOptions};

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Run configuration (TOML); see configs/.
    #[arg(long)]
    pub config: PathBuf,
    /// Run directory (checkpoints, metrics.csv, TensorBoard events).
    #[arg(long, default_value = "runs/train")]
    pub out: PathBuf,
    /// Continue from OUT/latest.safetensors.
    #[arg(long)]
    pub resume: bool,
    #[arg(long)]
    pub data_root: Option<PathBuf>,
    /// Override train.seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Override the number of iterations.
    #[arg(long)]
    pub iters: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Skip (and list) unreadable or invalid samples instead of refusing to start (= `data.skip_bad`).
    #[arg(long)]
    pub skip_bad: bool,
    /// Training device: cpu, cuda or cuda:N (cuda needs a `--features cuda` build).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Data-parallel training on N GPUs: N processes, one per GPU, over NCCL (`--features nccl` build).
    #[arg(long)]
    pub gpus: Option<usize>,
}

pub fn train(a: TrainArgs) -> anyhow::Result<()> {
    let cfg = RunConfig::load(&a.config)?;
    if let Some(n) = a.gpus {
        return Ok(semiseg::gpus::launch(n)?);
    }
    let opts = TrainOptions {
        out: a.out.clone(),
        resume: a.resume,
        data_root: a.data_root,
        seed: a.seed,
        iters: a.iters,
        quiet: a.quiet,
        skip_bad: a.skip_bad,
        device: a.device,
    };
    let r = Runner::from_config(cfg)?.options(opts).train()?;
    if !core_seg::dist::is_primary() {
        return Ok(());
    }
    println!("{}", iou_table(&r.final_report, &r.class_names));
    println!("best mIoU {:.2} — checkpoints in {}", r.best_miou, a.out.display());
    Ok(())
}

#[derive(clap::Args)]
pub struct EvalArgs {
    #[arg(long)]
    config: PathBuf,
    /// A checkpoint or weights file (full model).
    #[arg(long)]
    checkpoint: PathBuf,
    #[arg(long)]
    data_root: Option<PathBuf>,
    /// `mrf`: Potts-MRF smoothing of the predicted probabilities (the TV paper's baseline; config `[mrf]`).
    /// Without `--mrf-beta`, β is chosen from `mrf.beta_grid` by validation mIoU.
    #[arg(long, value_parser = ["none", "mrf"], default_value = "none")]
    postprocess: String,
    #[arg(long)]
    mrf_beta: Option<f64>,
}

pub fn eval(a: EvalArgs) -> anyhow::Result<()> {
    let mut runner = Runner::from_config(RunConfig::load(&a.config)?)?;
    if let Some(root) = a.data_root {
        runner = runner.data_root(root);
    }
    let mrf = (a.postprocess == "mrf").then_some(a.mrf_beta);
    let e = runner.evaluate(&a.checkpoint, mrf)?;
    if let Some(beta) = e.mrf_beta {
        println!("MRF post-processing, β = {beta}");
    }
    println!("{}", iou_table(&e.report, &e.class_names));
    Ok(())
}

#[derive(clap::Args)]
pub struct PredictArgs {
    /// A checkpoint written by `train` (its stored config gives the model), or weights with --config.
    #[arg(long)]
    checkpoint: PathBuf,
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long, num_args = 1.., required = true)]
    input: Vec<PathBuf>,
    #[arg(long)]
    out: PathBuf,
}

pub fn predict(a: PredictArgs) -> anyhow::Result<()> {
    let cfg = semiseg::eval::config_of(a.config.as_deref(), &a.checkpoint, &candle_core::Device::Cpu)?;
    let written = semiseg::predict::predict_files(&cfg, &a.checkpoint, &a.input, &a.out)?;
    for (input, (mask, overlay)) in a.input.iter().zip(written) {
        let overlay = overlay.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        println!("{} → {}, {overlay}", input.display(), mask.display());
    }
    Ok(())
}
