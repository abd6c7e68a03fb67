//! `cargo xtask pretrain-synthetic`, `diagnose` and `bench`.

use std::path::PathBuf;

use semiseg::bench::{BenchOptions, CaseSettings};
use semiseg::diagnose::ReconChannelsOptions;
use semiseg::pretrain::{self, PretrainOptions};

#[derive(clap::Args)]
pub struct PretrainArgs {
    #[arg(long, default_value_os_t = pretrain::shipped_encoder())]
    out: PathBuf,
    #[arg(long, default_value_t = 2000)]
    iters: usize,
    #[arg(long, default_value_t = 2000)]
    num: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    quiet: bool,
}

pub fn pretrain(a: PretrainArgs) -> anyhow::Result<()> {
    Ok(pretrain::run(PretrainOptions { out: a.out, iters: a.iters, num: a.num, seed: a.seed, quiet: a.quiet })?)
}

#[derive(clap::Args)]
pub struct DiagnoseArgs {
    #[command(subcommand)]
    pub what: Diagnostic,
}

#[derive(clap::Subcommand)]
pub enum Diagnostic {
    /// Channels of the reconstruction decoder scored against each class's mask (IoU, correlation), PNG grid.
    ReconChannels(ReconChannelsArgs),
}

#[derive(clap::Args)]
pub struct ReconChannelsArgs {
    /// A checkpoint written by `train`/`reproduce` with the reconstruction branch on (holds `recon.*`).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Run configuration (default: the one stored in the checkpoint).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub data_root: Option<PathBuf>,
    #[arg(long, default_value = "runs/diagnose")]
    pub out: PathBuf,
    /// Layer of R: z0, u1 … u<stages> (default: recon.diagnose.layer).
    #[arg(long)]
    pub layer: Option<String>,
    /// Activation quantile that switches a channel on (default: recon.diagnose.quantile).
    #[arg(long)]
    pub quantile: Option<f64>,
    /// Score only the first N validation images.
    #[arg(long)]
    pub max_images: Option<usize>,
    /// Channels in each PNG grid.
    #[arg(long, default_value_t = 8)]
    pub top: usize,
    /// Seed of the random-initialisation control (default: the run's train.seed).
    #[arg(long)]
    pub seed: Option<u64>,
}

pub fn diagnose(a: DiagnoseArgs) -> anyhow::Result<()> {
    let Diagnostic::ReconChannels(a) = a.what;
    Ok(semiseg::diagnose::recon_channels(ReconChannelsOptions {
        checkpoint: a.checkpoint,
        config: a.config,
        data_root: a.data_root,
        out: a.out,
        layer: a.layer,
        quantile: a.quantile,
        max_images: a.max_images,
        top: a.top,
        seed: a.seed,
    })?)
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Also run tools/bench/torch_bench.py (needs `torch`; interpreter from $SEMISEG_PYTHON, else python3).
    #[arg(long)]
    compare_pytorch: bool,
    /// Write the results as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Comma-separated case names (default: all).
    #[arg(long)]
    cases: Option<String>,
    #[command(flatten)]
    run: CaseArgs,
}

#[derive(clap::Args)]
pub struct BenchCaseArgs {
    case: String,
    #[command(flatten)]
    run: CaseArgs,
}

#[derive(clap::Args)]
struct CaseArgs {
    #[arg(long, default_value_t = 5)]
    steps: usize,
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// cpu, cuda or cuda:N (ours and PyTorch on the same device).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// f32 or bf16 (bf16: our convolutions under autocast; PyTorch under `torch.autocast(bfloat16)`).
    #[arg(long, default_value = "f32", value_parser = ["f32", "bf16"])]
    precision: String,
}

impl CaseArgs {
    fn settings(self) -> CaseSettings {
        CaseSettings { steps: self.steps, warmup: self.warmup, device: self.device, precision: self.precision }
    }
}

pub fn bench(a: BenchArgs) -> anyhow::Result<()> {
    let opts = BenchOptions { compare_pytorch: a.compare_pytorch, json: a.json, cases: a.cases, run: a.run.settings() };
    Ok(semiseg::bench::run(opts)?)
}

pub fn bench_case(a: BenchCaseArgs) -> anyhow::Result<()> {
    Ok(semiseg::bench::run_case(&a.case, &a.run.settings())?)
}
