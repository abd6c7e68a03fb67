//! Records the git commit the binary is built from (`SEMISEG_BUILD_REV`), so reports name the code that trained
//! their runs rather than whatever is checked out when the report is written. A build from a tree with uncommitted
//! changes to tracked files is marked `<commit>+dirty`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok().filter(|o| o.status.success())?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    // The code the binary is made of: `+dirty` means uncommitted changes here, and editing it re-runs this script
    // (so the mark appears and clears); edits elsewhere (README, results) neither mark nor re-run.
    const CODE: [&str; 6] = [
        "../../crates",
        "../../xtask/src",
        "../../xtask/Cargo.toml",
        "../../third_party",
        "../../Cargo.toml",
        "../../Cargo.lock",
    ];
    let mut rev = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let status = [&["status", "--porcelain", "--untracked-files=no", "--"][..], &CODE[..]].concat();
    if git(&status).is_some_and(|s| !s.is_empty()) {
        rev.push_str("+dirty");
    }
    println!("cargo:rustc-env=SEMISEG_BUILD_REV={rev}");
    for path in CODE {
        println!("cargo:rerun-if-changed={path}");
    }
    // Also when HEAD moves (a commit, a checkout); paths from git so worktrees work too.
    for what in ["HEAD", "logs/HEAD"] {
        if let Some(p) = git(&["rev-parse", "--git-path", what]) {
            if std::path::Path::new(&p).exists() {
                println!("cargo:rerun-if-changed={p}");
            }
        }
    }
}
