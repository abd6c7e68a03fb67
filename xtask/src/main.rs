//! `cargo xtask <command>`: the project's command line (model checks, data tools, training, reproduction).

mod bench;
mod config;
mod data_cmd;
mod datasets;
mod diagnose;
mod fetch_weights;
mod forward;
mod gpus;
mod plots;
mod pretrain;
mod reproduce;
mod runtime;
mod train_cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "semiseg-rs: semi-supervised semantic segmentation on Candle", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Eval-mode forward of a safetensors `input` (N×3×H×W) through DeepLabV3+ into `logits` (N×K×H×W).
    Forward(forward::ForwardArgs),
    /// Generate a dataset on disk (e.g. `gen-data synthetic --out DIR --num N`).
    GenData(data_cmd::GenDataArgs),
    /// Validate a dataset: every listed file, sizes, label values, split ids.
    CheckData(data_cmd::CheckDataArgs),
    /// Train a model as a run config says (checkpoints, metrics, `--resume`).
    Train(train_cmd::TrainArgs),
    /// Evaluate a checkpoint on the config's validation set (per-class IoU table).
    Eval(train_cmd::EvalArgs),
    /// Predict masks (dataset palette) and overlays for images.
    Predict(train_cmd::PredictArgs),
    /// Download, check and convert ImageNet encoder weights into the cache (`fetch-weights mobilenet_v2`).
    FetchWeights(fetch_weights::FetchWeightsArgs),
    /// Pretrain the shipped encoder of the synthetic recipes on a disjoint synthetic pretext set.
    PretrainSynthetic(pretrain::PretrainArgs),
    /// List the reproduction recipes.
    List,
    /// Run a recipe: every row × seed, results table, results.json, report.md with figures.
    Reproduce(reproduce::ReproduceArgs),
    /// Diagnostics of trained checkpoints (`diagnose recon-channels --checkpoint FILE`).
    Diagnose(diagnose::DiagnoseArgs),
    /// Whole-step benchmarks (ms/step, peak RSS), optionally against PyTorch on the same CPU.
    Bench(bench::BenchArgs),
    /// Runs one benchmark case in this process (used by `bench`).
    #[command(hide = true)]
    BenchCase(bench::BenchCaseArgs),
}

fn main() -> anyhow::Result<()> {
    core_seg::kernels::configure_cpu_pools();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Forward(a) => forward::run(a),
        Command::GenData(a) => data_cmd::gen_data(a),
        Command::CheckData(a) => data_cmd::check_data(a),
        Command::Train(a) => train_cmd::train(a),
        Command::Eval(a) => train_cmd::eval(a),
        Command::Predict(a) => train_cmd::predict(a),
        Command::FetchWeights(a) => fetch_weights::run(a),
        Command::PretrainSynthetic(a) => pretrain::run(a),
        Command::List => reproduce::list(),
        Command::Reproduce(a) => reproduce::reproduce(a),
        Command::Diagnose(a) => diagnose::run(a),
        Command::Bench(a) => bench::run(a),
        Command::BenchCase(a) => bench::run_case(a),
    }
}
