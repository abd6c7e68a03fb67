//! `cargo xtask`: project automation.

mod data_cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "semiseg-rs project tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a dataset on disk (e.g. `gen-data synthetic --out DIR --num N`).
    GenData(data_cmd::GenDataArgs),
    /// Validate a dataset: every listed file, sizes, label values, split ids.
    CheckData(data_cmd::CheckDataArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::GenData(a) => data_cmd::gen_data(a),
        Command::CheckData(a) => data_cmd::check_data(a),
    }
}
