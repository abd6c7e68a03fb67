//! Detects a data-parallel launch from the environment: torchrun's variables, Slurm's, or `--gpus N`'s (which
//! sets torchrun's), and where the ranks meet.
//!
//! | launcher | rank | world size | local rank (picks the GPU) | rank 0's address |
//! |---|---|---|---|---|
//! | torchrun, `--gpus N`, any launcher | `RANK` | `WORLD_SIZE` | `LOCAL_RANK` (default `RANK`) | `MASTER_ADDR`:`MASTER_PORT` |
//! | Slurm (`srun`) | `SLURM_PROCID` | `SLURM_NTASKS` | `SLURM_LOCALID` | `MASTER_ADDR`, else the first host of `SLURM_STEP_NODELIST` / `SLURM_NODELIST`; `MASTER_PORT` |
//!
//! - `RANK`/`WORLD_SIZE` win when both sets are present (torchrun started by `srun`, one task per node).
//! - A Slurm job with one task (`SLURM_NTASKS=1`, or unset as in a plain batch script) is not a launch.
//! - `MASTER_PORT` defaults to [`DEFAULT_PORT`]. Under torchrun (`TORCHELASTIC_USE_AGENT_STORE=True`) its own
//!   store already listens on `MASTER_PORT`, so the rendezvous uses the next port, `MASTER_PORT + 1`.
//! - `SEMISEG_NCCL_ID=FILE` replaces the TCP rendezvous by a file on a filesystem every rank shares: rank 0
//!   writes it (it must not exist yet), the others wait for it.
//! - `SEMISEG_RDZV_TIMEOUT` (seconds, default [`DEFAULT_TIMEOUT_S`]) bounds the wait for the other ranks.
//! - The GPU is `cuda:LOCAL_RANK`, or `cuda:0` when `CUDA_VISIBLE_DEVICES` leaves one device to the process
//!   (Slurm's `--gpus-per-task=1`, torchrun's `--virtual-local-rank`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use super::rendezvous::{self, Group};
use super::wire::{DResult, DistError};
use super::DistEnv;

pub const RANK: &str = "RANK";
pub const WORLD_SIZE: &str = "WORLD_SIZE";
pub const LOCAL_RANK: &str = "LOCAL_RANK";
pub const MASTER_ADDR: &str = "MASTER_ADDR";
pub const MASTER_PORT: &str = "MASTER_PORT";
/// Set to `True` by torchrun when its agent's store occupies `MASTER_PORT`.
pub const TORCHELASTIC_USE_AGENT_STORE: &str = "TORCHELASTIC_USE_AGENT_STORE";
pub const SLURM_PROCID: &str = "SLURM_PROCID";
pub const SLURM_NTASKS: &str = "SLURM_NTASKS";
pub const SLURM_LOCALID: &str = "SLURM_LOCALID";
pub const SLURM_STEP_NODELIST: &str = "SLURM_STEP_NODELIST";
pub const SLURM_NODELIST: &str = "SLURM_NODELIST";
pub const CUDA_VISIBLE_DEVICES: &str = "CUDA_VISIBLE_DEVICES";
/// A file on a shared filesystem for the NCCL id, instead of the TCP rendezvous.
pub const SEMISEG_NCCL_ID: &str = "SEMISEG_NCCL_ID";
/// Seconds to wait for the other ranks.
pub const SEMISEG_RDZV_TIMEOUT: &str = "SEMISEG_RDZV_TIMEOUT";
/// `MASTER_PORT` when unset (torchrun's default too).
pub const DEFAULT_PORT: u16 = 29500;
pub const DEFAULT_TIMEOUT_S: f64 = 300.0;

/// Which set of variables described the launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchSource {
    /// `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT` (torchrun, `--gpus N`, others).
    Torchrun,
    /// `SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`, `SLURM_NODELIST` (`srun`).
    Slurm,
}

/// Where the ranks meet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Meeting {
    /// Rank 0 listens on `port` (all interfaces, or only loopback when `host` is a loopback name); the others
    /// connect to `host:port`.
    Tcp { host: String, port: u16 },
    /// Rank 0 writes the id to this file; the others read it.
    File(PathBuf),
    /// World size 1: nobody to meet.
    Alone,
}

/// One rank of a data-parallel launch.
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    pub rank: usize,
    pub world_size: usize,
    pub local_rank: usize,
    /// The CUDA device of this rank.
    pub device_ordinal: usize,
    pub source: LaunchSource,
    pub meeting: Meeting,
    /// Longest wait for the other ranks.
    pub timeout: Duration,
}

fn env_err(var: &str, msg: impl Into<String>) -> DistError {
    DistError::Env { var: var.to_string(), msg: msg.into() }
}

impl Launch {
    /// The launch this process belongs to, from its environment; `None` outside a data-parallel launch.
    pub fn from_env() -> DResult<Option<Self>> {
        Self::from_vars(|k| std::env::var_os(k).map(|v| v.to_string_lossy().into_owned()))
    }

    /// As [`Launch::from_env`], with the variables from `get`. Empty values count as unset.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> DResult<Option<Self>> {
        let get = |k: &str| get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let number = |k: &str| -> DResult<Option<usize>> {
            get(k)
                .map(|v| v.parse::<usize>().map_err(|_| env_err(k, format!("{v:?} is not a non-negative integer"))))
                .transpose()
        };
        let required = |k: &str, why: &str| -> DResult<usize> {
            number(k)?.ok_or_else(|| env_err(k, format!("not set, while {why} is")))
        };
        let (source, rank, world, local, rank_var, world_var) = if get(RANK).is_some() || get(WORLD_SIZE).is_some() {
            let world = required(WORLD_SIZE, RANK)?;
            let rank = required(RANK, WORLD_SIZE)?;
            let local = number(LOCAL_RANK)?.unwrap_or(rank);
            (LaunchSource::Torchrun, rank, world, local, RANK, WORLD_SIZE)
        } else if get(SLURM_PROCID).is_some() {
            let world = match number(SLURM_NTASKS)? {
                None | Some(1) => return Ok(None),
                Some(n) => n,
            };
            let rank = required(SLURM_PROCID, SLURM_NTASKS)?;
            let local = required(SLURM_LOCALID, SLURM_PROCID)?;
            (LaunchSource::Slurm, rank, world, local, SLURM_PROCID, SLURM_NTASKS)
        } else {
            return Ok(None);
        };
        if world == 0 {
            return Err(env_err(world_var, "must be at least 1"));
        }
        if rank >= world {
            return Err(env_err(rank_var, format!("{rank} is not below {world_var}={world}")));
        }
        let timeout = match get(SEMISEG_RDZV_TIMEOUT) {
            None => Duration::from_secs_f64(DEFAULT_TIMEOUT_S),
            Some(v) => match v.parse::<f64>() {
                Ok(s) if s.is_finite() && s > 0.0 && s < 1e9 => Duration::from_secs_f64(s),
                _ => return Err(env_err(SEMISEG_RDZV_TIMEOUT, format!("{v:?} is not a positive number of seconds"))),
            },
        };
        let meeting = if world == 1 {
            Meeting::Alone
        } else if let Some(file) = get(SEMISEG_NCCL_ID) {
            Meeting::File(PathBuf::from(file))
        } else {
            let host = match (get(MASTER_ADDR), source) {
                (Some(h), _) => h,
                (None, LaunchSource::Slurm) => {
                    let (var, list) = match get(SLURM_STEP_NODELIST) {
                        Some(l) => (SLURM_STEP_NODELIST, l),
                        None => (
                            SLURM_NODELIST,
                            get(SLURM_NODELIST).ok_or_else(|| {
                                env_err(SLURM_NODELIST, format!("not set, and neither is {MASTER_ADDR}"))
                            })?,
                        ),
                    };
                    first_host(&list).map_err(|e| env_err(var, format!("{list:?}: {e}")))?
                }
                (None, LaunchSource::Torchrun) => {
                    let msg = format!("not set (rank 0's host; or set {SEMISEG_NCCL_ID} to a file every rank shares)");
                    return Err(env_err(MASTER_ADDR, msg));
                }
            };
            let port = match get(MASTER_PORT) {
                None => DEFAULT_PORT,
                Some(v) => v
                    .parse::<u16>()
                    .ok()
                    .filter(|&p| p > 0)
                    .ok_or_else(|| env_err(MASTER_PORT, format!("{v:?} is not a port (1..=65535)")))?,
            };
            let agent_store = get(TORCHELASTIC_USE_AGENT_STORE).is_some_and(|v| v.eq_ignore_ascii_case("true"));
            let port = match agent_store {
                false => port,
                true => port.checked_add(1).ok_or_else(|| {
                    env_err(MASTER_PORT, format!("{port}: torchrun's store holds it and there is no next port"))
                })?,
            };
            Meeting::Tcp { host, port }
        };
        let visible = get(CUDA_VISIBLE_DEVICES).map(|v| v.split(',').filter(|d| !d.trim().is_empty()).count());
        let device_ordinal = if visible == Some(1) { 0 } else { local };
        Ok(Some(Launch { rank, world_size: world, local_rank: local, device_ordinal, source, meeting, timeout }))
    }

    /// Rank and world size.
    pub fn env(&self) -> DistEnv {
        DistEnv { rank: self.rank, world_size: self.world_size }
    }

    /// The address rank 0 listens on for `host:port`: that address for `localhost` or a loopback address; else
    /// every interface (as torchrun's store does: the name may resolve to another interface's address on rank 0's
    /// own machine, e.g. 127.0.1.1 through /etc/hosts), IPv6 only for an IPv6 address or name.
    pub fn listen_addr(host: &str, port: u16) -> DResult<SocketAddr> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let v6_any = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
        let v4_any = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(match ip {
                ip if ip.is_loopback() => SocketAddr::new(ip, port),
                IpAddr::V4(_) => v4_any,
                IpAddr::V6(_) => v6_any,
            });
        }
        let resolved: Vec<SocketAddr> =
            tcp_target(bare, port).to_socket_addrs().map(|a| a.collect()).unwrap_or_default();
        if bare.eq_ignore_ascii_case("localhost") {
            return resolved
                .into_iter()
                .find(|a| a.ip().is_loopback())
                .ok_or_else(|| env_err(MASTER_ADDR, format!("{host:?} resolves to no loopback address")));
        }
        Ok(if !resolved.is_empty() && resolved.iter().all(|a| a.is_ipv6()) { v6_any } else { v4_any })
    }

    /// Meets the other ranks: rank 0 makes the blob with `make` and hands it out; every rank returns it, with the
    /// TCP group (`None` for a file rendezvous or world size 1) through which the ranks can later agree on values.
    pub fn rendezvous(&self, make: impl FnOnce() -> crate::Result<Vec<u8>>) -> crate::Result<(Vec<u8>, Option<Group>)> {
        let (rank, world) = (self.rank, self.world_size);
        Ok(match &self.meeting {
            Meeting::Alone => (make()?, None),
            Meeting::File(path) if rank == 0 => {
                let blob = make()?;
                rendezvous::publish_file(path, world, &blob)?;
                (blob, None)
            }
            Meeting::File(path) => (rendezvous::read_file(path, world, self.timeout)?, None),
            Meeting::Tcp { host, port } if rank == 0 => {
                let bind = Self::listen_addr(host, *port)?;
                let listener = TcpListener::bind(bind).map_err(|e| DistError::Io {
                    at: format!("rendezvous ({MASTER_ADDR}={host}, port {port})"),
                    what: format!("rank 0 cannot listen on {bind} (another job on this port? set {MASTER_PORT})"),
                    source: e,
                })?;
                let blob = make()?;
                let group = rendezvous::serve(listener, world, &blob, self.timeout)?;
                (blob, Some(group))
            }
            Meeting::Tcp { host, port } => {
                let (group, blob) = rendezvous::join(&tcp_target(host, *port), rank, world, self.timeout)?;
                (blob, Some(group))
            }
        })
    }
}

/// `host:port`, with IPv6 literals in brackets.
fn tcp_target(host: &str, port: u16) -> String {
    match host.parse::<Ipv6Addr>() {
        Ok(_) => format!("[{host}]:{port}"),
        Err(_) => format!("{}:{port}", host.trim_start_matches('[').trim_end_matches(']')),
    }
}

/// The first host of a Slurm node list (`node[01-04,07],gpu3` → `node01`; `rack[1-2]-n[3-4]` → `rack1-n3`).
pub fn first_host(list: &str) -> Result<String, String> {
    let list = list.trim();
    let mut depth = 0usize;
    let mut end = list.len();
    for (i, c) in list.char_indices() {
        match c {
            '[' if depth > 0 => return Err("nested '['".into()),
            '[' => depth += 1,
            ']' if depth == 0 => return Err("']' without '['".into()),
            ']' => depth -= 1,
            ',' if depth == 0 => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    if depth > 0 {
        return Err("'[' without ']'".into());
    }
    let entry = &list[..end];
    if entry.is_empty() {
        return Err("no host before the first ','".into());
    }
    let mut host = String::new();
    let mut rest = entry;
    while let Some(open) = rest.find('[') {
        let close = open + rest[open..].find(']').ok_or("'[' without ']'")?;
        host.push_str(&rest[..open]);
        let inner = &rest[open + 1..close];
        let first = inner.split(',').next().unwrap_or("").trim();
        let lo = match first.split_once('-') {
            Some((lo, hi)) if is_digits(lo) && is_digits(hi) => lo,
            None if is_digits(first) => first,
            _ => return Err(format!("[{inner}]: expected numbers and ranges such as [01-04,07]")),
        };
        host.push_str(lo);
        rest = &rest[close + 1..];
    }
    host.push_str(rest);
    Ok(host)
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}
