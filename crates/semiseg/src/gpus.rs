//! Devices and the multi-GPU launcher.
//!
//! `--device cpu|cuda|cuda:N` picks where a run trains (`cuda` needs a build with `--features cuda`).
//! `--gpus N` (train, reproduce) re-runs the same command line as N child processes, one per GPU, with
//! `RANK`, `WORLD_SIZE` and `SEMISEG_NCCL_ID` (a file with the NCCL unique id, written here) set; each child
//! trains on `cuda:RANK` and joins the NCCL group ([`core_seg::dist`]). Rank 0 evaluates, logs and writes
//! checkpoints; the other ranks print warnings and errors only. If one child fails, the others are stopped.
//! `--gpus 1` runs one child with a one-rank communicator (the NCCL code path on a single GPU).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use crate::error::{bail, fs, Context};
use crate::{Error, Result};
use candle_core::Device;
use core_seg::dist::{self, DistEnv};

static DEVICE: OnceLock<Device> = OnceLock::new();

/// Parses `cpu`, `cuda` (= `cuda:0`) or `cuda:N`.
pub fn parse_device(s: &str) -> Result<Device> {
    let s = s.trim();
    let ordinal = match s {
        "cpu" => return Ok(Device::Cpu),
        "cuda" | "gpu" => 0,
        _ => match s.strip_prefix("cuda:") {
            Some(n) => n.parse().map_err(|_| Error::Invalid(format!("--device {s}: bad GPU index")))?,
            None => bail!("--device {s}: expected cpu, cuda or cuda:N"),
        },
    };
    Device::new_cuda(ordinal).with_context(|| {
        format!("--device {s}: cannot open CUDA device {ordinal} (is this a `--features cuda` build on a GPU machine?)")
    })
}

/// The device of this process: `cuda:RANK` under the launcher (joining the NCCL group once), else `arg`.
pub fn device(arg: &str) -> Result<Device> {
    if let Some(d) = DEVICE.get() {
        return Ok(d.clone());
    }
    let dev = match DistEnv::from_env()? {
        // Under the launcher `--device` is ignored: rank r trains on cuda:r.
        Some(env) => {
            let dev = parse_device(&format!("cuda:{}", env.rank))?;
            let id = std::env::var_os(dist::ENV_NCCL_ID).map(PathBuf::from);
            dist::init(&dev, env, id.as_deref())
                .with_context(|| format!("rank {} of {}: joining the NCCL group", env.rank, env.world_size))?;
            dev
        }
        None => parse_device(arg)?,
    };
    Ok(DEVICE.get_or_init(|| dev).clone())
}

/// This process's command-line arguments without `--gpus N` / `--gpus=N`.
fn args_without_gpus() -> Vec<String> {
    let mut out = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        if a == "--gpus" {
            it.next();
        } else if !a.starts_with("--gpus=") {
            out.push(a);
        }
    }
    out
}

/// Runs this command as `gpus` ranks and waits for them; an error if any rank fails.
pub fn launch(gpus: usize, scratch: &std::path::Path) -> Result<()> {
    if gpus == 0 {
        bail!("--gpus must be ≥ 1");
    }
    if DistEnv::from_env()?.is_some() {
        bail!("--gpus inside a launched rank (RANK/WORLD_SIZE are already set)");
    }
    fs::create_dir_all(scratch)?;
    let id_file = scratch.join(format!(".nccl-id-{}", std::process::id()));
    dist::write_nccl_id(&id_file).context("--gpus: creating the NCCL id")?;
    let exe = std::env::current_exe().map_err(|e| Error::Process(format!("--gpus: locating this executable: {e}")))?;
    let args = args_without_gpus();
    let mut children: Vec<(usize, Child)> = Vec::new();
    for rank in 0..gpus {
        let mut cmd = Command::new(&exe);
        cmd.args(&args)
            .env(dist::ENV_RANK, rank.to_string())
            .env(dist::ENV_WORLD_SIZE, gpus.to_string())
            .env(dist::ENV_NCCL_ID, &id_file);
        if rank > 0 {
            cmd.env("RUST_LOG", "warn").stdout(Stdio::null());
        }
        match cmd.spawn() {
            Ok(c) => children.push((rank, c)),
            Err(e) => {
                stop(&mut children);
                bail!("--gpus: starting rank {rank}: {e}");
            }
        }
    }
    let result = wait_all(&mut children);
    let _ = std::fs::remove_file(&id_file);
    result
}

/// Waits for every rank; on the first failure stops the others.
fn wait_all(children: &mut Vec<(usize, Child)>) -> Result<()> {
    let mut failed = None;
    while !children.is_empty() {
        let mut i = 0;
        while i < children.len() {
            match children[i].1.try_wait().map_err(|e| Error::Process(format!("--gpus: waiting for a rank: {e}")))? {
                Some(status) => {
                    let (rank, _) = children.remove(i);
                    if !status.success() && failed.is_none() {
                        failed = Some(format!("rank {rank} exited with {status}"));
                        stop(children);
                    }
                }
                None => i += 1,
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    match failed {
        Some(msg) => bail!("--gpus: {msg}; the other ranks were stopped"),
        None => Ok(()),
    }
}

/// Kills the given child processes (the ranks this launcher started) and reaps them.
fn stop(children: &mut Vec<(usize, Child)>) {
    for (_, c) in children.iter_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
    children.clear();
}
