//! `cargo xtask <command>`: the project's command line (model checks, data tools, training, reproduction).

mod data_cmd;
mod forward;
mod reproduce_cmd;
mod run_cmd;
mod tools_cmd;

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
    Train(run_cmd::TrainArgs),
    /// Evaluate a checkpoint on the config's validation set (per-class IoU table).
    Eval(run_cmd::EvalArgs),
    /// Predict masks (dataset palette) and overlays for images.
    Predict(run_cmd::PredictArgs),
    /// Pretrain the shipped encoder of the synthetic recipes on a disjoint synthetic pretext set.
    PretrainSynthetic(tools_cmd::PretrainArgs),
    /// List the reproduction recipes.
    List,
    /// Run a recipe: every row × seed, results table, results.json, report.md with figures.
    Reproduce(reproduce_cmd::ReproduceArgs),
    /// Diagnostics of trained checkpoints (`diagnose recon-channels --checkpoint FILE`).
    Diagnose(tools_cmd::DiagnoseArgs),
    /// Whole-step benchmarks (ms/step, peak RSS), optionally against PyTorch on the same CPU.
    Bench(tools_cmd::BenchArgs),
    /// Runs one benchmark case in this process (used by `bench`).
    #[command(hide = true)]
    BenchCase(tools_cmd::BenchCaseArgs),
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
        Command::Train(a) => run_cmd::train(a),
        Command::Eval(a) => run_cmd::eval(a),
        Command::Predict(a) => run_cmd::predict(a),
        Command::PretrainSynthetic(a) => tools_cmd::pretrain(a),
        Command::List => reproduce_cmd::list(),
        Command::Reproduce(a) => reproduce_cmd::reproduce(a),
        Command::Diagnose(a) => tools_cmd::diagnose(a),
        Command::Bench(a) => tools_cmd::bench(a),
        Command::BenchCase(a) => tools_cmd::bench_case(a),
    }
}
