//! `cargo xtask list` and `cargo xtask reproduce <recipe>`.

use std::path::PathBuf;

use semiseg::reproduce::{self, ReproduceOptions};

#[derive(clap::Args)]
pub struct ReproduceArgs {
    /// Recipe name (`cargo xtask list`).
    pub recipe: String,
    /// Dataset root for VOC/Cityscapes recipes (else $SEMISEG_DATA).
    #[arg(long)]
    pub data_root: Option<PathBuf>,
    #[arg(long, default_value = "runs/reproduce")]
    pub out: PathBuf,
    /// Number of seeds (default: the recipe's).
    #[arg(long)]
    pub seeds: Option<usize>,
    /// Reuse finished runs and continue interrupted ones.
    #[arg(long)]
    pub resume: bool,
    /// Backbone weights to start every run from (UniMatch deep-stem, timm or torchvision names).
    #[arg(long)]
    pub pretrained: Option<PathBuf>,
    /// Exit non-zero if any method's mean mIoU falls more than --tolerance points below this results.json.
    #[arg(long)]
    pub check: Option<PathBuf>,
    #[arg(long, default_value_t = 3.0)]
    pub tolerance: f64,
    #[arg(long)]
    pub quiet: bool,
    /// Run only these rows (comma-separated row names; an unknown name lists them); the report lists the rest
    /// as not run.
    #[arg(long)]
    pub rows: Option<String>,
    /// Train only these seeds (comma-separated, each below the seed count), e.g. to split a recipe over cores or
    /// machines sharing `--out`. Seeds not listed enter the table only when a finished run exists (`--resume`).
    #[arg(long, value_delimiter = ',')]
    pub only_seeds: Option<Vec<u64>>,
    /// Override every run's iteration budget (the recipe's otherwise).
    #[arg(long)]
    pub iters: Option<usize>,
    /// Training device: cpu, cuda or cuda:N (cuda needs a `--features cuda` build).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Train every run data-parallel on N GPUs (N processes over NCCL; `--features nccl` build). Rank 0
    /// writes the results and the report.
    #[arg(long)]
    pub gpus: Option<usize>,
    /// Config override for every run, KEY=VALUE over the recipe's settings (repeatable), e.g.
    /// `--set model.aspp_channels=256 --set unimatch.conf_thresh=0.9`; give a variant its own --out.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Train N runs at once, each in its own process with 1/N of the threads (`RAYON_NUM_THREADS`); logs in
    /// OUT/RECIPE/logs/ (e.g. several small-model runs sharing one GPU).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: u16,
    /// Train nothing: build the table and report from the finished runs in --out (and --carry) alone; seeds
    /// without a finished run are left out of the table.
    #[arg(long)]
    pub no_train: bool,
    /// An earlier results.json of this recipe (e.g. the committed `results/<recipe>/results.json`): rows with no
    /// finished run in --out enter the table as that file has them, and the report names them.
    #[arg(long)]
    pub carry: Option<PathBuf>,
    /// Write each run's latest.safetensors every N iterations besides its evaluations, so a killed run loses at
    /// most N; it does not change the runs (resuming is bit-exact), so it is not an override and --resume does
    /// not check it.
    #[arg(long)]
    pub checkpoint_every: Option<usize>,
}

pub fn reproduce(a: ReproduceArgs) -> anyhow::Result<()> {
    if let Some(n) = a.gpus {
        return Ok(semiseg::gpus::launch(n)?);
    }
    Ok(reproduce::reproduce(ReproduceOptions {
        recipe: a.recipe,
        data_root: a.data_root,
        out: a.out,
        seeds: a.seeds,
        resume: a.resume,
        pretrained: a.pretrained,
        check: a.check,
        tolerance: a.tolerance,
        quiet: a.quiet,
        rows: a.rows,
        only_seeds: a.only_seeds,
        iters: a.iters,
        device: a.device,
        set: a.set,
        jobs: a.jobs.into(),
        no_train: a.no_train,
        carry: a.carry,
        checkpoint_every: a.checkpoint_every,
    })?)
}

pub fn list() -> anyhow::Result<()> {
    print!("{}", reproduce::list());
    Ok(())
}
