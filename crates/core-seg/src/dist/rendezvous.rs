//! Rendezvous of a data-parallel launch: rank 0 hands a blob (the NCCL unique id) to every other rank over TCP
//! ([`serve`] / [`join`]), or through a file on a shared filesystem ([`publish_file`] / [`read_file`]).
//!
//! Over TCP each peer connects to rank 0 (retrying until its deadline) and sends its rank, world size and host
//! name; once all `world - 1` peers have joined, rank 0 answers each with the blob. A peer with another protocol or
//! version, another world size, a rank outside the world or a rank that already joined fails the rendezvous: the
//! error names the peer and its address, and rank 0 sends it to every connected peer, so that every rank stops
//! with the same reason. A rank missing at the deadline fails it the same way. The connections then stay open as
//! a [`Group`], through which the ranks check that they agree on a value ([`Group::agree`]).

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::{Duration, Instant};

use super::wire::{self, remaining, DResult, DistError, FrameError, Kind};

/// One connection of a [`Group`]: rank 0's link to a peer, or a peer's link to rank 0.
struct Link {
    rank: usize,
    host: String,
    addr: SocketAddr,
    stream: TcpStream,
}

impl Link {
    fn name(&self) -> String {
        let host = if self.host.is_empty() { String::new() } else { format!("{}, ", self.host) };
        format!("rank {} ({host}{})", self.rank, self.addr)
    }
}

/// The ranks of a launch after the rendezvous, connected to rank 0 over TCP.
pub struct Group {
    rank: usize,
    world: usize,
    links: Vec<Link>,
}

impl Group {
    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world_size(&self) -> usize {
        self.world
    }

    /// Checks that every rank reached the same point (`what`) with the same `value`: each rank sends its pair to
    /// rank 0, which compares them and answers; on a difference every rank gets the same error, listing which
    /// ranks hold which value. Waits as long as the slowest rank needs (like a collective); a rank that exits
    /// instead closes its connection, which fails the agreement at once.
    pub fn agree(&mut self, what: &str, value: &str) -> DResult<()> {
        let at = format!("rank {} of {}", self.rank, self.world);
        if self.rank != 0 {
            let link = self.links.first_mut().ok_or_else(|| mismatch(&at, "no connection to rank 0".into()))?;
            let name = link.name();
            let io_err =
                |e| DistError::Io { at: at.clone(), what: format!("agreeing on {what} with {name}"), source: e };
            wire::write_frame(
                &mut link.stream,
                Kind::Agree,
                self.world,
                self.rank,
                &wire::encode_agreement(what, value),
            )
            .map_err(io_err)?;
            let f = wire::read_frame(&mut link.stream).map_err(|e| mismatch(&at, e.describe(&name)))?;
            return match f.kind {
                Kind::AgreeOk => Ok(()),
                Kind::AgreeFail => Err(mismatch(&at, String::from_utf8_lossy(&f.payload).into_owned())),
                k => Err(mismatch(&at, format!("{name} answered {k:?} to an agreement"))),
            };
        }
        let mut failure = None;
        let mut values: Vec<(String, Vec<usize>)> = vec![(value.to_string(), vec![0])];
        for link in &mut self.links {
            let got = wire::read_frame(&mut link.stream).map_err(|e| e.describe(&link.name())).and_then(|f| {
                match (f.kind, wire::decode_agreement(&f.payload)) {
                    (Kind::Agree, Some(pair)) => Ok(pair),
                    _ => Err(format!("{} sent {:?} instead of its value for {what}", link.name(), f.kind)),
                }
            });
            match got {
                Ok((w, _)) if w != what => {
                    failure.get_or_insert(format!("{} is at {w} while rank 0 is at {what}", link.name()));
                }
                Ok((_, v)) => match values.iter_mut().find(|(x, _)| *x == v) {
                    Some((_, ranks)) => ranks.push(link.rank),
                    None => values.push((v, vec![link.rank])),
                },
                Err(e) => {
                    failure.get_or_insert(format!("{e} (while agreeing on {what})"));
                }
            }
        }
        if failure.is_none() && values.len() > 1 {
            let parts: Vec<String> =
                values.iter().map(|(v, ranks)| format!("rank {}: {v}", join_ranks(ranks))).collect();
            failure = Some(format!("the ranks disagree on {what}: {}", parts.join("; ")));
        }
        for link in &mut self.links {
            let _ = match &failure {
                Some(msg) => wire::write_frame(&mut link.stream, Kind::AgreeFail, self.world, 0, msg.as_bytes()),
                None => wire::write_frame(&mut link.stream, Kind::AgreeOk, self.world, 0, &[]),
            };
        }
        match failure {
            Some(msg) => Err(mismatch(&at, msg)),
            None => Ok(()),
        }
    }
}

fn mismatch(at: &str, msg: String) -> DistError {
    DistError::Mismatch { at: at.to_string(), msg }
}

fn join_ranks(ranks: &[usize]) -> String {
    ranks.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", ")
}

/// Sends `msg` as a rejection to every joined peer (best effort: the rendezvous has failed anyway).
fn reject_all(joined: &mut BTreeMap<usize, Link>, world: usize, msg: &str) {
    for link in joined.values_mut() {
        let _ = wire::write_frame(&mut link.stream, Kind::Reject, world, 0, msg.as_bytes());
    }
}

/// Rank 0: waits on `listener` until `world - 1` peers have joined, at most `timeout`, then sends each `payload`.
pub fn serve(listener: TcpListener, world: usize, payload: &[u8], timeout: Duration) -> DResult<Group> {
    let local = listener.local_addr().map_err(|e| io_error("rendezvous", "local address", e))?;
    let at = format!("rendezvous on {local} (rank 0 of {world})");
    let deadline = Instant::now() + timeout;
    listener.set_nonblocking(true).map_err(|e| io_error(&at, "listening", e))?;
    let mut joined: BTreeMap<usize, Link> = BTreeMap::new();
    while joined.len() + 1 < world {
        let (stream, addr) = match listener.accept() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if remaining(deadline).is_none() {
                    let missing: Vec<usize> = (1..world).filter(|r| !joined.contains_key(r)).collect();
                    let msg = format!(
                        "{} of {world} ranks joined; rank {} never came",
                        joined.len() + 1,
                        join_ranks(&missing)
                    );
                    reject_all(&mut joined, world, &format!("{at}: {msg}"));
                    return Err(DistError::Timeout { at, msg, secs: timeout.as_secs_f64() });
                }
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(e) => {
                reject_all(&mut joined, world, &format!("{at}: accept failed: {e}"));
                return Err(io_error(&at, "accepting a peer", e));
            }
        };
        match greet(stream, addr, world, &joined, deadline) {
            Ok(link) => {
                joined.insert(link.rank, link);
            }
            Err((mut stream, err)) => {
                let text = format!("{at}: {err}");
                if let Some(s) = stream.as_mut() {
                    let _ = wire::write_frame(s, Kind::Reject, world, 0, text.as_bytes());
                }
                reject_all(&mut joined, world, &text);
                return Err(match err {
                    Greeting::Timeout(msg) => DistError::Timeout { at, msg, secs: timeout.as_secs_f64() },
                    Greeting::Bad(msg) => mismatch(&at, msg),
                });
            }
        }
    }
    for link in joined.values_mut() {
        let name = link.name();
        wire::write_frame(&mut link.stream, Kind::Welcome, world, 0, payload)
            .map_err(|e| io_error(&at, &format!("sending the id to {name}"), e))?;
    }
    Ok(Group { rank: 0, world, links: joined.into_values().collect() })
}

/// Why a peer's greeting was refused.
enum Greeting {
    Timeout(String),
    Bad(String),
}

impl std::fmt::Display for Greeting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Greeting::Timeout(m) | Greeting::Bad(m) => f.write_str(m),
        }
    }
}

/// Reads and checks a peer's `Hello`; on refusal returns the stream (when the peer speaks the protocol, so that
/// it can be told why) and the reason.
fn greet(
    mut stream: TcpStream,
    addr: SocketAddr,
    world: usize,
    joined: &BTreeMap<usize, Link>,
    deadline: Instant,
) -> Result<Link, (Option<TcpStream>, Greeting)> {
    let peer = format!("the peer at {addr}");
    let timeout = remaining(deadline).unwrap_or(Duration::from_millis(1));
    if let Err(e) = stream.set_nonblocking(false).and_then(|_| stream.set_read_timeout(Some(timeout))) {
        return Err((None, Greeting::Bad(format!("{peer}: {e}"))));
    }
    let f = match wire::read_frame(&mut stream) {
        Ok(f) => f,
        Err(e) if e.is_timeout() => {
            return Err((None, Greeting::Timeout(format!("{peer} connected but sent nothing"))))
        }
        Err(e @ FrameError::Version(_)) => return Err((Some(stream), Greeting::Bad(e.describe(&peer)))),
        Err(e) => return Err((None, Greeting::Bad(e.describe(&peer)))),
    };
    let (rank, host) = (f.rank as usize, String::from_utf8_lossy(&f.payload).into_owned());
    let who = if host.is_empty() { format!("rank {rank} at {addr}") } else { format!("rank {rank} ({host}, {addr})") };
    let bad = |msg: String| Greeting::Bad(msg);
    let refusal = if f.kind != Kind::Hello {
        Some(bad(format!("{peer} sent {:?} instead of a greeting", f.kind)))
    } else if f.world as usize != world {
        Some(bad(format!(
            "{who} was launched with world size {}, rank 0 with {world}: every rank needs the same world size",
            f.world
        )))
    } else if rank == 0 || rank >= world {
        Some(bad(format!("{who} claims rank {rank}, outside 1..={} (rank 0 is this process)", world - 1)))
    } else {
        joined.get(&rank).map(|first| bad(format!("rank {rank} joined twice: as {} and as {who}", first.name())))
    };
    if let Some(r) = refusal {
        return Err((Some(stream), r));
    }
    if let Err(e) = stream.set_read_timeout(None) {
        return Err((None, Greeting::Bad(format!("{who}: {e}"))));
    }
    Ok(Link { rank, host, addr, stream })
}

fn io_error(at: &str, what: &str, source: io::Error) -> DistError {
    DistError::Io { at: at.to_string(), what: what.to_string(), source }
}

/// Rank `rank` > 0: connects to rank 0 at `addr` (`host:port`), retrying until `timeout`, and returns the group
/// and the blob rank 0 sent.
pub fn join(addr: &str, rank: usize, world: usize, timeout: Duration) -> DResult<(Group, Vec<u8>)> {
    let at = format!("rendezvous at {addr} (rank {rank} of {world})");
    let secs = timeout.as_secs_f64();
    let deadline = Instant::now() + timeout;
    let mut backoff = Duration::from_millis(20);
    let (mut stream, peer) = loop {
        let last = match connect_once(addr, deadline) {
            Ok(c) => break c,
            Err(e) => e,
        };
        let Some(left) = remaining(deadline) else {
            let msg = format!("no rank 0 answered at {addr} (last attempt: {last})");
            return Err(DistError::Timeout { at, msg, secs });
        };
        std::thread::sleep(backoff.min(left));
        backoff = (backoff * 2).min(Duration::from_millis(500));
    };
    let name = format!("rank 0 at {peer}");
    let hello = wire::encode(Kind::Hello, world, rank, wire::host_name().as_bytes());
    io::Write::write_all(&mut stream, &hello).map_err(|e| io_error(&at, &format!("greeting {name}"), e))?;
    let timeout_left = remaining(deadline).unwrap_or(Duration::from_millis(1));
    stream.set_read_timeout(Some(timeout_left)).map_err(|e| io_error(&at, "socket timeout", e))?;
    let f = match wire::read_frame(&mut stream) {
        Ok(f) => f,
        Err(e) if e.is_timeout() => {
            let msg = format!("{name} accepted the connection but the other ranks did not all join in time");
            return Err(DistError::Timeout { at, msg, secs });
        }
        Err(e) => return Err(mismatch(&at, e.describe(&name))),
    };
    match f.kind {
        Kind::Welcome if f.world as usize == world => {}
        Kind::Welcome => {
            return Err(mismatch(&at, format!("{name} runs world size {}, this rank {world}", f.world)));
        }
        Kind::Reject => {
            let why = String::from_utf8_lossy(&f.payload);
            return Err(mismatch(&at, format!("{name} ended the rendezvous: {why}")));
        }
        k => return Err(mismatch(&at, format!("{name} sent {k:?} instead of the id"))),
    }
    stream.set_read_timeout(None).map_err(|e| io_error(&at, "socket timeout", e))?;
    let link = Link { rank: 0, host: String::new(), addr: peer, stream };
    Ok((Group { rank, world, links: vec![link] }, f.payload))
}

/// One connection attempt to every address `addr` resolves to.
fn connect_once(addr: &str, deadline: Instant) -> Result<(TcpStream, SocketAddr), String> {
    let addrs = addr.to_socket_addrs().map_err(|e| format!("cannot resolve {addr}: {e}"))?;
    let mut last = format!("{addr} resolves to no address");
    for sa in addrs {
        let t = remaining(deadline).unwrap_or(Duration::from_millis(1)).min(Duration::from_secs(2));
        match TcpStream::connect_timeout(&sa, t) {
            Ok(s) => return Ok((s, sa)),
            Err(e) => last = format!("{sa}: {e}"),
        }
    }
    Err(last)
}

/// Rank 0, file rendezvous: writes `payload` to `path` (atomically: a temporary file, then a rename). The file
/// must not exist yet: a leftover from an earlier launch would hand the other ranks a stale id.
pub fn publish_file(path: &Path, world: usize, payload: &[u8]) -> DResult<()> {
    let at = format!("rendezvous file {}", path.display());
    if path.exists() {
        let msg = "exists already (left by an earlier launch?): remove it, or give each launch its own file".into();
        return Err(mismatch(&at, msg));
    }
    crate::files::write_atomic(path, &wire::encode(Kind::Welcome, world, 0, payload))
        .map_err(|e| io_error(&at, "writing", e))
}

/// Rank > 0, file rendezvous: waits until `path` exists (at most `timeout`) and returns the blob.
pub fn read_file(path: &Path, world: usize, timeout: Duration) -> DResult<Vec<u8>> {
    let at = format!("rendezvous file {}", path.display());
    let deadline = Instant::now() + timeout;
    let bytes = loop {
        match std::fs::read(path) {
            Ok(b) => break b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => match remaining(deadline) {
                Some(left) => std::thread::sleep(left.min(Duration::from_millis(50))),
                None => {
                    let msg = "rank 0 never wrote it (is the path on a filesystem every rank shares?)".into();
                    return Err(DistError::Timeout { at, msg, secs: timeout.as_secs_f64() });
                }
            },
            Err(e) => return Err(io_error(&at, "reading", e)),
        }
    };
    let f = wire::read_frame(&mut bytes.as_slice()).map_err(|e| mismatch(&at, e.describe("the file")))?;
    if f.kind != Kind::Welcome || f.world as usize != world {
        let msg = format!("written for world size {}, this rank has {world}", f.world);
        return Err(mismatch(&at, msg));
    }
    Ok(f.payload)
}
