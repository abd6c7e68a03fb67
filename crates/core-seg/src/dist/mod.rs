//! Data-parallel training, one process per GPU, on one machine or several.
//!
//! A launcher starts one process per GPU: `cargo xtask train --gpus N` on one machine, or torchrun / Slurm's
//! `srun` across machines ([`launch`] reads their variables). Each process trains on its local GPU, calls
//! [`init`] once, which meets the other ranks ([`rendezvous`]: rank 0 hands out the NCCL unique id over TCP
//! or through a shared file) and creates the NCCL communicator; the training loop then
//!
//! - broadcasts the model from rank 0 ([`broadcast_vars`]) so every replica starts identical;
//! - averages the gradients over the ranks after `backward` ([`all_reduce_grads`], one NCCL call per step);
//! - runs SyncBN: the CUDA batch-norm op all-reduces its per-channel sums (forward) and gradient sums
//!   (backward) when a communicator is set ([`set_sync_bn`] turns it off);
//! - evaluates, logs and writes checkpoints on rank 0 only ([`is_primary`]);
//! - checks that every rank resumes from the same checkpoint ([`agree_on_resume`]).
//!
//! Without the `nccl` feature only world size 1 exists and every function here is a no-op. With it, world
//! size 1 still runs the NCCL code path (a communicator of one rank).
//!
//! Collectives must be issued in the same order on every rank: a data-dependent branch that skips a
//! train-mode forward on one rank only (e.g. an auxiliary term with no eligible sample) desynchronises
//! SyncBN and hangs; such terms must run their forward on every rank or SyncBN must be off.

pub mod launch;
#[cfg(feature = "nccl")]
mod nccl;
pub mod rendezvous;
mod wire;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};

pub use launch::{Launch, LaunchSource, Meeting};
pub use rendezvous::Group;
pub use wire::{DistError, MAGIC, PROTOCOL_VERSION};

use crate::{Error, Result};

/// Whether this build can train on several GPUs (the `nccl` feature).
pub const NCCL_BUILD: bool = cfg!(feature = "nccl");

static RANK: AtomicUsize = AtomicUsize::new(0);
static WORLD: AtomicUsize = AtomicUsize::new(1);
static SYNC_BN: AtomicBool = AtomicBool::new(true);
/// The TCP group of this process's launch (none for a single process or a file rendezvous).
static GROUP: Mutex<Option<Group>> = Mutex::new(None);

/// Rank and world size of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DistEnv {
    pub rank: usize,
    pub world_size: usize,
}

impl DistEnv {
    /// Rank and world size of the launch this process belongs to ([`Launch::from_env`]); `None` outside one.
    pub fn from_env() -> Result<Option<Self>> {
        Ok(Launch::from_env()?.map(|l| l.env()))
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

/// Joins the launch: meets the other ranks ([`Launch::rendezvous`]; rank 0 creates the NCCL id), creates the
/// communicator on `device` (blocks until every rank has joined) and keeps the TCP group for [`agree`].
/// Without the `nccl` feature only world size 1 is accepted.
pub fn init(device: &Device, launch: &Launch) -> Result<()> {
    #[cfg(feature = "nccl")]
    {
        let (id, group) = launch.rendezvous(nccl::new_id)?;
        nccl::init(device, launch.env(), &id)?;
        if let (Meeting::File(path), 0) = (&launch.meeting, launch.rank) {
            // Every rank has read the id once the communicator exists.
            let _ = std::fs::remove_file(path);
        }
        *GROUP.lock().unwrap_or_else(|p| p.into_inner()) = group;
    }
    #[cfg(not(feature = "nccl"))]
    {
        let _ = device;
        if launch.world_size > 1 {
            return Err(Error::Config(format!(
                "world size {} needs a build with the `nccl` feature (cargo build --features nccl)",
                launch.world_size
            )));
        }
    }
    RANK.store(launch.rank, Ordering::Relaxed);
    WORLD.store(launch.world_size, Ordering::Relaxed);
    Ok(())
}

/// Checks that every rank of the launch reached `what` with the same `value` ([`Group::agree`]); a no-op in a
/// single process or after a file rendezvous (no connections between the ranks).
pub fn agree(what: &str, value: &str) -> Result<()> {
    match GROUP.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
        Some(g) => Ok(g.agree(what, value)?),
        None => Ok(()),
    }
}

/// Checks that every rank continues the run in `run_dir` from the same checkpoint: `resumed` is the checkpoint
/// this rank resumed from and its iteration, or `None` for a fresh start. Ranks that see different files (a run
/// directory that is not on a filesystem every rank shares, a stale local copy, a fallback to the previous
/// checkpoint on one rank only) get an error naming each rank's view.
pub fn agree_on_resume(run_dir: &Path, resumed: Option<(&Path, usize)>) -> Result<()> {
    if world_size() == 1 {
        return Ok(());
    }
    let view = match resumed {
        Some((checkpoint, iter)) => format!("iteration {iter} of {}", checkpoint_fingerprint(checkpoint)?),
        None => "a fresh start".to_string(),
    };
    let what = format!("the start of the run in {}", run_dir.display());
    agree(&what, &view).map_err(|e| match e {
        Error::Dist(DistError::Mismatch { at, msg }) => Error::Dist(DistError::Mismatch {
            at,
            msg: format!(
                "{msg}. Every rank must resume from the same checkpoint: put the run directory on a filesystem \
                 every machine shares, or remove stale copies"
            ),
        }),
        e => e,
    })
}

/// Size and CRC-32C of a file (a checkpoint: tensors and training state), e.g. `PATH (123 bytes, crc32c 89abcdef)`.
pub fn checkpoint_fingerprint(path: &Path) -> Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let (mut crc, mut len, mut buf) = (0u32, 0u64, vec![0u8; 1 << 20]);
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        len += n as u64;
    }
    Ok(format!("{} ({len} bytes, crc32c {crc:08x})", path.display()))
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
