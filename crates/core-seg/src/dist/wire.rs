//! The framed protocol of the rendezvous and its error type.
//!
//! Every message is one frame, integers big-endian:
//!
//! | field      | bytes  | meaning                                    |
//! |------------|--------|--------------------------------------------|
//! | magic      | 8      | [`MAGIC`]                                  |
//! | version    | 2      | [`PROTOCOL_VERSION`]                       |
//! | kind       | 1      | [`Kind`]                                   |
//! | world size | 4      | the sender's world size                    |
//! | rank       | 4      | the sender's rank                          |
//! | length     | 4      | payload bytes (at most [`MAX_PAYLOAD`])    |
//! | payload    | length | host name, blob, message or agreement      |

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

/// First bytes of every frame.
pub const MAGIC: [u8; 8] = *b"SSEGRDZV";
/// Version of the frame layout and message sequence.
pub const PROTOCOL_VERSION: u16 = 1;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 8 + 2 + 1 + 4 + 4 + 4;
/// Largest payload accepted (the NCCL id is 128 bytes; agreement values are short texts).
pub const MAX_PAYLOAD: usize = 1 << 20;

/// Errors of the launch environment, the rendezvous and the agreement between ranks.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    /// A launch variable is malformed, inconsistent or missing.
    #[error("{var}: {msg}")]
    Env { var: String, msg: String },
    /// A socket or file operation failed.
    #[error("{at}: {what}: {source}")]
    Io {
        at: String,
        what: String,
        #[source]
        source: io::Error,
    },
    /// A peer or the launch is inconsistent (protocol, world size, ranks), or the ranks disagree.
    #[error("{at}: {msg}")]
    Mismatch { at: String, msg: String },
    /// Not every rank arrived before the deadline.
    #[error("{at}: {msg} (timeout {secs:.1} s)")]
    Timeout { at: String, msg: String, secs: f64 },
}

pub(crate) type DResult<T> = std::result::Result<T, DistError>;

/// Message kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Peer → rank 0: the peer's rank; payload: its host name.
    Hello = 1,
    /// Rank 0 → peer: the blob.
    Welcome = 2,
    /// Rank 0 → peer: the rendezvous failed; payload: why.
    Reject = 3,
    /// Peer → rank 0: payload: what is agreed on (length-prefixed) and this rank's value.
    Agree = 4,
    /// Rank 0 → peer: every rank had the same value.
    AgreeOk = 5,
    /// Rank 0 → peer: the ranks disagree; payload: the message.
    AgreeFail = 6,
}

impl Kind {
    fn from_u8(k: u8) -> Option<Self> {
        [Kind::Hello, Kind::Welcome, Kind::Reject, Kind::Agree, Kind::AgreeOk, Kind::AgreeFail]
            .into_iter()
            .find(|x| *x as u8 == k)
    }
}

/// One decoded frame.
#[derive(Debug)]
pub(crate) struct Frame {
    pub kind: Kind,
    pub world: u32,
    pub rank: u32,
    pub payload: Vec<u8>,
}

/// Why a frame could not be read.
#[derive(Debug)]
pub(crate) enum FrameError {
    Io(io::Error),
    /// Another program: the first bytes received.
    BadMagic(Vec<u8>),
    Version(u16),
    BadKind(u8),
    TooLong(u32),
}

impl FrameError {
    /// Whether the read ran into its timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, FrameError::Io(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
    }

    /// A description naming `peer` (e.g. "the peer at 10.0.0.2:40112").
    pub fn describe(&self, peer: &str) -> String {
        match self {
            FrameError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => format!("{peer} closed the connection"),
            FrameError::Io(e) => format!("{peer}: {e}"),
            FrameError::BadMagic(got) => format!(
                "{peer} does not speak the semiseg rendezvous protocol (it sent {:?}); is the port another service's?",
                String::from_utf8_lossy(got)
            ),
            FrameError::Version(v) => format!(
                "{peer} speaks rendezvous protocol version {v}, this binary version {PROTOCOL_VERSION}: run the same \
                 build on every rank"
            ),
            FrameError::BadKind(k) => format!("{peer} sent an unknown message kind {k}"),
            FrameError::TooLong(n) => format!("{peer} announced a {n}-byte message (at most {MAX_PAYLOAD})"),
        }
    }
}

/// Encodes one frame.
pub(crate) fn encode(kind: Kind, world: usize, rank: usize, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER_LEN + payload.len());
    b.extend_from_slice(&MAGIC);
    b.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    b.push(kind as u8);
    b.extend_from_slice(&(world as u32).to_be_bytes());
    b.extend_from_slice(&(rank as u32).to_be_bytes());
    b.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    b.extend_from_slice(payload);
    b
}

/// Decodes one frame from `r`. The magic is checked on the first 8 bytes, before anything else is read.
pub(crate) fn read_frame(r: &mut impl Read) -> Result<Frame, FrameError> {
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).map_err(FrameError::Io)?;
    if magic != MAGIC {
        return Err(FrameError::BadMagic(magic.to_vec()));
    }
    let mut h = [0u8; HEADER_LEN - 8];
    r.read_exact(&mut h).map_err(FrameError::Io)?;
    let version = u16::from_be_bytes([h[0], h[1]]);
    if version != PROTOCOL_VERSION {
        return Err(FrameError::Version(version));
    }
    let kind = Kind::from_u8(h[2]).ok_or(FrameError::BadKind(h[2]))?;
    let be = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    let (world, rank, len) = (be(3), be(7), be(11));
    if len as usize > MAX_PAYLOAD {
        return Err(FrameError::TooLong(len));
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload).map_err(FrameError::Io)?;
    Ok(Frame { kind, world, rank, payload })
}

/// Writes one frame.
pub(crate) fn write_frame(w: &mut impl Write, kind: Kind, world: usize, rank: usize, payload: &[u8]) -> io::Result<()> {
    w.write_all(&encode(kind, world, rank, payload))?;
    w.flush()
}

/// Time left until `deadline` (at least 1 ms, as a zero socket timeout means "none"), or `None` once passed.
pub(crate) fn remaining(deadline: Instant) -> Option<Duration> {
    deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()).map(|d| d.max(Duration::from_millis(1)))
}

/// Agreement payload: `what` length-prefixed, then `value`.
pub(crate) fn encode_agreement(what: &str, value: &str) -> Vec<u8> {
    let mut b = (what.len() as u32).to_be_bytes().to_vec();
    b.extend_from_slice(what.as_bytes());
    b.extend_from_slice(value.as_bytes());
    b
}

/// Inverse of [`encode_agreement`]; `None` when malformed.
pub(crate) fn decode_agreement(b: &[u8]) -> Option<(String, String)> {
    let n = u32::from_be_bytes(b.get(..4)?.try_into().ok()?) as usize;
    let what = std::str::from_utf8(b.get(4..4 + n)?).ok()?;
    let value = std::str::from_utf8(b.get(4 + n..)?).ok()?;
    Some((what.to_string(), value.to_string()))
}

/// This machine's host name (for messages), empty if unknown.
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
