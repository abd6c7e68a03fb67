//! Devices and the multi-GPU launcher.
//!
//! `--device cpu|cuda|cuda:N` picks where a run trains (`cuda` needs a build with `--features cuda`).
//! `--gpus N` (train, reproduce) re-runs the same command line as N child processes, one per GPU, with
//! torchrun's variables set (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR=127.0.0.1`, a free
//! `MASTER_PORT`); each child trains on `cuda:LOCAL_RANK` and joins the NCCL group ([`core_seg::dist`]).
//! Rank 0 evaluates, logs and writes checkpoints; the other ranks print warnings and errors only. If one child
//! fails, the others are stopped. `--gpus 1` runs one child with a one-rank communicator (the NCCL code path
//! on a single GPU). Without `--gpus`, a process started by torchrun or `srun` joins its launch the same way
//! ([`core_seg::dist::Launch::from_env`]).

use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use crate::error::{bail, Context};
use crate::{Error, Result};
use candle_core::Device;
use core_seg::dist::{self, launch as env, Launch};

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

/// The data-parallel launch this process belongs to (torchrun, Slurm or `--gpus`), if any.
fn launch_env() -> Result<Option<Launch>> {
    Ok(Launch::from_env().map_err(core_seg::Error::from)?)
}

/// The device of this process: its local GPU in a data-parallel launch (joining the NCCL group once), else
/// `arg`.
pub fn device(arg: &str) -> Result<Device> {
    if let Some(d) = DEVICE.get() {
        return Ok(d.clone());
    }
    let dev = match launch_env()? {
        // In a launch `--device` is ignored: each rank trains on its local GPU.
        Some(l) => {
            let dev = parse_device(&format!("cuda:{}", l.device_ordinal))?;
            dist::init(&dev, &l)
                .with_context(|| format!("rank {} of {}: joining the NCCL group", l.rank, l.world_size))?;
            dev
        }
        None => parse_device(arg)?,
    };
    Ok(DEVICE.get_or_init(|| dev).clone())
}

/// This process's command-line arguments without `FLAG VALUE` / `FLAG=VALUE` (e.g. `--gpus`).
pub(crate) fn args_without(flag: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = std::env::args().skip(1);
    let with_value = format!("{flag}=");
    while let Some(a) = it.next() {
        if a == flag {
            it.next();
        } else if !a.starts_with(&with_value) {
            out.push(a);
        }
    }
    out
}

/// Runs this command as `gpus` ranks on this machine and waits for them; an error if any rank fails.
pub fn launch(gpus: usize) -> Result<()> {
    if gpus == 0 {
        bail!("--gpus must be ≥ 1");
    }
    if let Some(l) = launch_env()? {
        bail!(
            "--gpus inside a launched rank ({:?} launch, rank {} of {}): drop --gpus",
            l.source,
            l.rank,
            l.world_size
        );
    }
    if !dist::NCCL_BUILD {
        bail!("--gpus needs a build with the `nccl` feature (tools/build-cuda.sh --features nccl)");
    }
    // Rank 0 listens on this port for the others (a free one now; another process could take it in between,
    // which fails rank 0 with an error naming the port).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| Error::Process(format!("--gpus: finding a free port on 127.0.0.1: {e}")))?
        .port();
    let exe = std::env::current_exe().map_err(|e| Error::Process(format!("--gpus: locating this executable: {e}")))?;
    let args = args_without("--gpus");
    let mut children: Vec<(usize, Child)> = Vec::new();
    for rank in 0..gpus {
        let mut cmd = Command::new(&exe);
        cmd.args(&args)
            .env(env::RANK, rank.to_string())
            .env(env::WORLD_SIZE, gpus.to_string())
            .env(env::LOCAL_RANK, rank.to_string())
            .env(env::MASTER_ADDR, "127.0.0.1")
            .env(env::MASTER_PORT, port.to_string())
            .env_remove(env::TORCHELASTIC_USE_AGENT_STORE);
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
    wait_all(&mut children)
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
