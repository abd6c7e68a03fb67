//! Data-parallel training, one process per GPU (issue 11).
//!
//! The launcher (`cargo xtask train --gpus N`) starts N copies of the command with `RANK`, `WORLD_SIZE` and
//! `SEMISEG_NCCL_ID` (a file holding the NCCL unique id) in the environment; each process trains on
//! `cuda:RANK`, calls [`init`] once, and the training loop then
//!
//! - broadcasts the model from rank 0 ([`broadcast_vars`]) so every replica starts identical;
//! - averages the gradients over the ranks after `backward` ([`all_reduce_grads`], one NCCL call per step);
//! - runs SyncBN: the CUDA batch-norm op all-reduces its per-channel sums (forward) and gradient sums
//!   (backward) when a communicator is set ([`set_sync_bn`] turns it off);
//! - evaluates, logs and writes checkpoints on rank 0 only ([`is_primary`]).
//!
//! Without the `nccl` feature only world size 1 exists and every function here is a no-op. With it, world
//! size 1 still runs the NCCL code path (a communicator of one rank).
//!
//! Collectives must be issued in the same order on every rank: a data-dependent branch that skips a
//! train-mode forward on one rank only (e.g. an auxiliary term with no eligible sample) desynchronises
//! SyncBN and hangs; such terms must run their forward on every rank or SyncBN must be off.

#[cfg(feature = "nccl")]
mod nccl;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};

use crate::{Error, Result};

/// Environment variables set by the launcher.
pub const ENV_RANK: &str = "RANK";
pub const ENV_WORLD_SIZE: &str = "WORLD_SIZE";
pub const ENV_NCCL_ID: &str = "SEMISEG_NCCL_ID";

static RANK: AtomicUsize = AtomicUsize::new(0);
static WORLD: AtomicUsize = AtomicUsize::new(1);
static SYNC_BN: AtomicBool = AtomicBool::new(true);

/// Rank and world size of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DistEnv {
    pub rank: usize,
    pub world_size: usize,
}

impl DistEnv {
    /// `RANK` / `WORLD_SIZE` from the environment: `None` when neither is set; an error when only one is set,
    /// either is not a number, or `rank ≥ world_size`.
    pub fn from_env() -> Result<Option<Self>> {
        let get = |k: &str| std::env::var(k).ok();
        match (get(ENV_RANK), get(ENV_WORLD_SIZE)) {
            (None, None) => Ok(None),
            (Some(r), Some(w)) => {
                let parse = |k: &str, v: &str| {
                    v.trim().parse::<usize>().map_err(|_| Error::Config(format!("{k}={v:?} is not a number")))
                };
                Self::new(parse(ENV_RANK, &r)?, parse(ENV_WORLD_SIZE, &w)?).map(Some)
            }
            _ => Err(Error::Config(format!("set both {ENV_RANK} and {ENV_WORLD_SIZE}, or neither"))),
        }
    }

    pub fn new(rank: usize, world_size: usize) -> Result<Self> {
        if world_size == 0 || rank >= world_size {
            return Err(Error::Config(format!("rank {rank} outside world size {world_size}")));
        }
        Ok(Self { rank, world_size })
    }
}

/// This process's rank (0 without data parallelism).
pub fn rank() -> usize {
    RANK.load(Ordering::Relaxed)
}

/// Number of processes (1 without data parallelism).
pub fn world_size() -> usize {
    WORLD.load(Ordering::Relaxed)
}

/// Whether this process evaluates, logs and writes checkpoints (rank 0).
pub fn is_primary() -> bool {
    rank() == 0
}

/// Turns SyncBN on or off (on by default; it only acts while a communicator is set).
pub fn set_sync_bn(on: bool) {
    SYNC_BN.store(on, Ordering::Relaxed);
}

/// Whether a NCCL communicator is set on this thread.
pub fn has_comm() -> bool {
    #[cfg(feature = "nccl")]
    return nccl::has_comm();
    #[cfg(not(feature = "nccl"))]
    false
}

/// Whether the batch-norm op all-reduces its statistics (communicator set and SyncBN on).
pub fn sync_bn_active() -> bool {
    SYNC_BN.load(Ordering::Relaxed) && has_comm()
}

/// Factor from this rank's values per channel to the global count of a SyncBN'd batch norm on `x`.
pub fn sync_bn_world(x: &Tensor) -> usize {
    if x.device().is_cuda() && sync_bn_active() {
        world_size()
    } else {
        1
    }
}

/// Joins the process group: reads the NCCL id from `id_file` and creates the communicator on `device`
/// (blocks until every rank has joined). Without the `nccl` feature only world size 1 is accepted.
pub fn init(device: &Device, env: DistEnv, id_file: Option<&Path>) -> Result<()> {
    #[cfg(feature = "nccl")]
    {
        let path = id_file.ok_or_else(|| Error::Config(format!("data parallel: {ENV_NCCL_ID} is not set")))?;
        nccl::init(device, env, path)?;
    }
    #[cfg(not(feature = "nccl"))]
    {
        let _ = (device, id_file);
        if env.world_size > 1 {
            return Err(Error::Config(format!(
                "world size {} needs a build with the `nccl` feature (cargo build --features nccl)",
                env.world_size
            )));
        }
    }
    RANK.store(env.rank, Ordering::Relaxed);
    WORLD.store(env.world_size, Ordering::Relaxed);
    Ok(())
}

/// Writes a fresh NCCL unique id to `path` (the launcher does this once, before starting the ranks).
pub fn write_nccl_id(path: &Path) -> Result<()> {
    #[cfg(feature = "nccl")]
    return nccl::write_id(path);
    #[cfg(not(feature = "nccl"))]
    Err(Error::Config(format!("{}: multi-GPU needs a build with the `nccl` feature", path.display())))
}

/// Averages the gradients of `vars` over the ranks (no-op without a communicator). A variable gets a
/// gradient afterwards iff it had one on some rank (ranks without one contribute zeros), so every replica
/// applies the same update.
pub fn all_reduce_grads(vars: &[Var], grads: &mut GradStore) -> Result<()> {
    if !has_comm() || vars.is_empty() {
        return Ok(());
    }
    #[cfg(feature = "nccl")]
    return nccl::all_reduce_grads(vars, grads);
    #[cfg(not(feature = "nccl"))]
    {
        let _ = grads;
        Ok(())
    }
}

/// Copies every variable from rank 0 to the other ranks (no-op without a communicator).
pub fn broadcast_vars(vars: &[Var]) -> Result<()> {
    if !has_comm() || vars.is_empty() {
        return Ok(());
    }
    #[cfg(feature = "nccl")]
    return nccl::broadcast_vars(vars);
    #[cfg(not(feature = "nccl"))]
    Ok(())
}

/// SyncBN hook of the CUDA batch-norm op: sums `buf` over the ranks in place (no-op when inactive).
#[cfg(feature = "cuda")]
pub(crate) fn sync_bn_all_reduce(
    dev: &candle_core::cuda_backend::CudaDevice,
    buf: &mut candle_core::cuda_backend::cudarc::driver::CudaSlice<f64>,
) -> candle_core::Result<()> {
    if !sync_bn_active() {
        return Ok(());
    }
    #[cfg(feature = "nccl")]
    return nccl::all_reduce_in_place_f64(dev, buf);
    #[cfg(not(feature = "nccl"))]
    {
        let _ = (dev, buf);
        Ok(())
    }
}
