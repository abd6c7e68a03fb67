//! `reproduce --jobs N`: a recipe's runs trained by N processes at once, one run each, sharing the cores (and a
//! GPU): on an H200, four small-model runs sharing the GPU gave 1.5× the throughput of one. Each child is this
//! command again, told its one run through [`RUN_ENV`]; it trains and scores that run and writes no report.
//! The parent then writes the report over the finished runs, as `--resume` would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::error::{bail, Error};
use crate::Result;

/// Set in a child: `ROW\tSEED`, the one run it trains.
pub const RUN_ENV: &str = "SEMISEG_REPRODUCE_RUN";

/// The run this process was started for by [`train_all`], if any.
pub fn assigned_run() -> Result<Option<(String, u64)>> {
    let Some(v) = std::env::var_os(RUN_ENV) else { return Ok(None) };
    let v = v.to_string_lossy().to_string();
    match v.split_once('\t').map(|(r, s)| (r.to_string(), s.parse::<u64>())) {
        Some((row, Ok(seed))) => Ok(Some((row, seed))),
        _ => bail!("{RUN_ENV}={v:?}: expected `ROW<tab>SEED`"),
    }
}

/// One pending run: its row, seed and log file.
pub struct Job {
    pub row: String,
    pub seed: u64,
    pub log: PathBuf,
}

/// This process's compute threads: `RAYON_NUM_THREADS` when set, else the machine's.
fn total_threads() -> usize {
    let env = std::env::var("RAYON_NUM_THREADS").ok().and_then(|v| v.parse::<usize>().ok()).filter(|&n| n > 0);
    env.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Trains `jobs` in at most `parallel` child processes with an equal share of the compute threads each
/// (`RAYON_NUM_THREADS`, at least 1); each child's output goes to its job's log. Every job runs; an error
/// afterwards names those that failed.
pub fn train_all(jobs: Vec<Job>, parallel: usize) -> Result<()> {
    let threads = (total_threads() / parallel.max(1)).max(1);
    let exe = std::env::current_exe().map_err(|e| Error::Process(format!("--jobs: locating this executable: {e}")))?;
    let args = crate::gpus::args_without("--jobs");
    let mut queue = jobs.into_iter();
    let mut running: Vec<(Job, Child)> = Vec::new();
    let mut failed = Vec::new();
    loop {
        while running.len() < parallel.max(1) {
            let Some(job) = queue.next() else { break };
            let child = spawn(&exe, &args, &job, threads)?;
            running.push((job, child));
        }
        if running.is_empty() {
            break;
        }
        let mut i = 0;
        while i < running.len() {
            let status = running[i].1.try_wait().map_err(|e| Error::Process(format!("--jobs: waiting: {e}")))?;
            match status {
                Some(st) => {
                    let (job, _) = running.remove(i);
                    if !st.success() {
                        failed.push(format!("{} seed {} ({st}; log {})", job.row, job.seed, job.log.display()));
                    }
                }
                None => i += 1,
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    if !failed.is_empty() {
        bail!("--jobs: {} run(s) failed: {}", failed.len(), failed.join("; "));
    }
    Ok(())
}

fn spawn(exe: &Path, args: &[String], job: &Job, threads: usize) -> Result<Child> {
    if let Some(dir) = job.log.parent() {
        crate::error::fs::create_dir_all(dir)?;
    }
    let log = std::fs::File::create(&job.log)
        .map_err(|e| Error::Process(format!("--jobs: creating {}: {e}", job.log.display())))?;
    let err = log.try_clone().map_err(|e| Error::Process(format!("--jobs: {}: {e}", job.log.display())))?;
    eprintln!("[jobs] {} seed {} → {}", job.row, job.seed, job.log.display());
    Command::new(exe)
        .args(args)
        .env(RUN_ENV, format!("{}\t{}", job.row, job.seed))
        .env("RAYON_NUM_THREADS", threads.max(1).to_string())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .map_err(|e| Error::Process(format!("--jobs: starting {} seed {}: {e}", job.row, job.seed)))
}
