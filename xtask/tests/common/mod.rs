//! Shared helpers of the CLI tests.

use std::process::Command;

/// The built `xtask` binary, with `SEMISEG_DATA` unset and short backtraces.
pub fn xtask() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.env_remove("SEMISEG_DATA").env("RUST_BACKTRACE", "0");
    c
}
