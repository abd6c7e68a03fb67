//! Run logs: scalars to CSV and to TensorBoard event files (a small writer: TFRecord framing with masked
//! CRC32C around hand-encoded `Event` protobufs), read back by our own reader in tests.
//!
//! Both logs continue a resumed run without repeating iterations. [`CsvLogger::create`] keeps only the rows
//! up to the checkpoint's iteration (the rows a killed run wrote after its last checkpoint are dropped).
//! [`TensorBoardWriter::create`] starts a new event file that opens with a `SessionLog.START` event at the
//! first step to come: TensorBoard then hides every event of the directory's earlier files at that step or
//! later (the same mechanism as PyTorch's `SummaryWriter(purge_step=…)`); [`read_tensorboard_run`] applies
//! the same rule.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::{Error, Result};

/// TFRecord's masked CRC32C: `((c >> 15) | (c << 17)) + 0xa282ead8`.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let c = crc32c::crc32c(data);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(field: u32, wire: u8, out: &mut Vec<u8>) {
    varint(((field as u64) << 3) | wire as u64, out);
}

fn bytes_field(field: u32, data: &[u8], out: &mut Vec<u8>) {
    key(field, 2, out);
    varint(data.len() as u64, out);
    out.extend_from_slice(data);
}

/// `Event { wall_time = 1, step = 2, file_version = 3 | summary = 5 | session_log = 7 }`.
fn event(wall_time: f64, step: u64, body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut e = Vec::new();
    key(1, 1, &mut e);
    e.extend_from_slice(&wall_time.to_le_bytes());
    key(2, 0, &mut e);
    varint(step, &mut e);
    body(&mut e);
    e
}

/// `SessionLog.status` value `START`.
const SESSION_START: u64 = 1;

/// Event files written by this process so far (part of each file's name, so names never collide).
static EVENT_FILES: AtomicUsize = AtomicUsize::new(0);

/// Writes `events.out.tfevents.<s>.<µs>.<host>.<pid>.<n>` scalars readable by TensorBoard.
pub struct TensorBoardWriter {
    file: BufWriter<File>,
    path: PathBuf,
}

impl TensorBoardWriter {
    /// Starts a new event file in `dir` for a run that continues after step `start` (0 for a fresh run):
    /// readers hide the events at steps `> start` of the directory's earlier files.
    pub fn create(dir: &Path, start: u64) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        // Readers take a directory's files in name order: the time (µs) comes first, zero-padded.
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "semiseg".into());
        let n = EVENT_FILES.fetch_add(1, Ordering::Relaxed);
        let (secs, micros, pid) = (t.as_secs(), t.subsec_micros(), std::process::id());
        let path = dir.join(format!("events.out.tfevents.{secs:010}.{micros:06}.{host}.{pid}.{n}"));
        let f =
            std::fs::OpenOptions::new().write(true).create_new(true).open(&path).map_err(|e| Error::io(&path, e))?;
        let mut w = Self { file: BufWriter::new(f), path };
        let purge = start + 1;
        let rec = event(now(), purge, |e| bytes_field(3, b"brain.Event:2", e));
        w.record(&rec)?;
        let mut log = Vec::new();
        key(1, 0, &mut log);
        varint(SESSION_START, &mut log);
        let rec = event(now(), purge, |e| bytes_field(7, &log, e));
        w.record(&rec)?;
        w.flush()?;
        Ok(w)
    }

    fn record(&mut self, data: &[u8]) -> Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        let mut buf = Vec::with_capacity(data.len() + 16);
        buf.extend_from_slice(&len);
        buf.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
        buf.extend_from_slice(data);
        buf.extend_from_slice(&masked_crc32c(data).to_le_bytes());
        self.file.write_all(&buf).map_err(|e| Error::io(&self.path, e))
    }

    /// `Summary { value = 1: Value { tag = 1, simple_value = 2 } }` at `step`.
    pub fn scalar(&mut self, tag: &str, value: f32, step: u64) -> Result<()> {
        let mut v = Vec::new();
        bytes_field(1, tag.as_bytes(), &mut v);
        key(2, 5, &mut v);
        v.extend_from_slice(&value.to_le_bytes());
        let mut summary = Vec::new();
        bytes_field(1, &v, &mut summary);
        let rec = event(now(), step, |e| bytes_field(5, &summary, e));
        self.record(&rec)
    }

    pub fn flush(&mut self) -> Result<()> {
        self.file.flush().map_err(|e| Error::io(&self.path, e))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Reads back `(tag, step, value)` scalars of one event file, verifying both CRCs of every record.
pub fn read_tensorboard_scalars(path: &Path) -> Result<Vec<(String, u64, f32)>> {
    Ok(read_events(path)?
        .into_iter()
        .filter_map(|e| match e {
            TbEvent::Scalar(tag, step, v) => Some((tag, step, v)),
            TbEvent::Start(_) => None,
        })
        .collect())
}

/// The scalars TensorBoard shows for a run directory: every `events.out.tfevents.*` file in name order, where a
/// `SessionLog.START` event at step `s` hides the events at steps `≥ s` read before it.
pub fn read_tensorboard_run(dir: &Path) -> Result<Vec<(String, u64, f32)>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("events.out.tfevents.")))
        .collect();
    files.sort();
    let mut out: Vec<(String, u64, f32)> = Vec::new();
    for f in files {
        for e in read_events(&f)? {
            match e {
                TbEvent::Scalar(tag, step, v) => out.push((tag, step, v)),
                TbEvent::Start(s) => out.retain(|x| x.1 < s),
            }
        }
    }
    Ok(out)
}

enum TbEvent {
    Scalar(String, u64, f32),
    Start(u64),
}

fn read_events(path: &Path) -> Result<Vec<TbEvent>> {
    let mut data = Vec::new();
    File::open(path).and_then(|mut f| f.read_to_end(&mut data)).map_err(|e| Error::io(path, e))?;
    let bad = |m: &str| Error::file(path, m.to_string());
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let hdr = data.get(pos..pos + 12).ok_or_else(|| bad("truncated record header"))?;
        let len = u64::from_le_bytes(hdr[..8].try_into().expect("8 bytes")) as usize;
        if masked_crc32c(&hdr[..8]) != u32::from_le_bytes(hdr[8..12].try_into().expect("4 bytes")) {
            return Err(bad("length CRC mismatch"));
        }
        let body = data.get(pos + 12..pos + 12 + len).ok_or_else(|| bad("truncated record"))?;
        let crc = data.get(pos + 12 + len..pos + 16 + len).ok_or_else(|| bad("truncated CRC"))?;
        if masked_crc32c(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err(bad("data CRC mismatch"));
        }
        if let Some(e) = parse_event(body) {
            out.push(e);
        }
        pos += 16 + len;
    }
    Ok(out)
}

fn read_varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let (mut v, mut shift) = (0u64, 0);
    loop {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= ((byte & 0x7f) as u64) << shift;
        if byte < 0x80 {
            return Some(v);
        }
        shift += 7;
    }
}

/// Iterates `(field, wire, payload)` of a protobuf message (wire types 0, 1, 2, 5).
fn fields(b: &[u8]) -> Vec<(u32, u8, &[u8], u64)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < b.len() {
        let Some(k) = read_varint(b, &mut pos) else { break };
        let (field, wire) = ((k >> 3) as u32, (k & 7) as u8);
        match wire {
            0 => match read_varint(b, &mut pos) {
                Some(v) => out.push((field, wire, &b[pos..pos], v)),
                None => break,
            },
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                let Some(s) = b.get(pos..pos + n) else { break };
                out.push((field, wire, s, 0));
                pos += n;
            }
            2 => {
                let Some(n) = read_varint(b, &mut pos) else { break };
                let Some(s) = b.get(pos..pos + n as usize) else { break };
                out.push((field, wire, s, 0));
                pos += n as usize;
            }
            _ => break,
        }
    }
    out
}

fn parse_event(b: &[u8]) -> Option<TbEvent> {
    let ev = fields(b);
    let step = ev.iter().find(|f| f.0 == 2).map(|f| f.3).unwrap_or(0);
    if let Some(log) = ev.iter().find(|f| f.0 == 7) {
        let status = fields(log.2).into_iter().find(|f| f.0 == 1 && f.1 == 0).map(|f| f.3);
        return (status == Some(SESSION_START)).then_some(TbEvent::Start(step));
    }
    let summary = ev.iter().find(|f| f.0 == 5)?.2;
    let value = fields(summary).into_iter().find(|f| f.0 == 1)?.2;
    let vf = fields(value);
    let tag = String::from_utf8(vf.iter().find(|f| f.0 == 1)?.2.to_vec()).ok()?;
    let val = f32::from_le_bytes(vf.iter().find(|f| f.0 == 2 && f.1 == 5)?.2.try_into().ok()?);
    Some(TbEvent::Scalar(tag, step, val))
}

const CSV_HEADER: &str = "iter,name,value";

/// Appends rows `iter,name,value` to a CSV file.
pub struct CsvLogger {
    file: BufWriter<File>,
    path: PathBuf,
    kept: Vec<(usize, String, f64)>,
    dropped: usize,
}

impl CsvLogger {
    /// Opens the log of a run that continues after iteration `start` (0 for a fresh run): an existing file
    /// keeps its rows with `iter ≤ start` (rewritten atomically); later rows, which a run killed after its
    /// last checkpoint leaves behind, and torn rows are dropped ([`CsvLogger::dropped_rows`] counts them).
    pub fn create(path: &Path, start: usize) -> Result<Self> {
        let mut text = format!("{CSV_HEADER}\n");
        let (mut kept, mut dropped) = (Vec::new(), 0);
        if path.exists() {
            let old = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            for line in old.lines().skip(1).filter(|l| !l.is_empty()) {
                let fields: Vec<&str> = line.split(',').collect();
                let it = fields.first().and_then(|f| f.parse::<usize>().ok());
                let value = fields.get(2).and_then(|f| f.parse::<f64>().ok()).filter(|_| fields.len() == 3);
                match (it, value) {
                    (Some(it), Some(v)) if it <= start => {
                        text.push_str(line);
                        text.push('\n');
                        kept.push((it, fields[1].to_string(), v));
                    }
                    _ => dropped += 1,
                }
            }
        }
        crate::files::write_atomic(path, text.as_bytes()).map_err(|e| Error::io(path, e))?;
        let f = std::fs::OpenOptions::new().append(true).open(path).map_err(|e| Error::io(path, e))?;
        Ok(Self { file: BufWriter::new(f), path: path.to_path_buf(), kept, dropped })
    }

    /// The rows `(iter, name, value)` of an earlier run that [`CsvLogger::create`] kept (empty for a new file).
    pub fn kept_rows(&self) -> &[(usize, String, f64)] {
        &self.kept
    }

    /// Rows of an earlier run past the start iteration (or torn) that [`CsvLogger::create`] removed.
    pub fn dropped_rows(&self) -> usize {
        self.dropped
    }

    pub fn log(&mut self, iter: usize, name: &str, value: f64) -> Result<()> {
        writeln!(self.file, "{iter},{name},{value}").map_err(|e| Error::io(&self.path, e))
    }

    pub fn flush(&mut self) -> Result<()> {
        self.file.flush().map_err(|e| Error::io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_crc_of_check_string() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(masked_crc32c(b"123456789"), 0xC78A_B0E5);
    }

    #[test]
    fn scalars_round_trip_through_event_file() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let mut w = TensorBoardWriter::create(dir.path(), 0)?;
        for i in 0..5u64 {
            w.scalar("train/loss", 1.0 / (i as f32 + 1.0), i)?;
        }
        w.scalar("eval/mIoU", 42.5, 5)?;
        w.flush()?;
        let s = read_tensorboard_scalars(w.path())?;
        assert_eq!(s.len(), 6);
        assert_eq!(s[2], ("train/loss".to_string(), 2, 1.0 / 3.0));
        assert_eq!(s[5], ("eval/mIoU".to_string(), 5, 42.5));
        // A flipped byte is detected.
        let mut bytes = std::fs::read(w.path()).map_err(|e| Error::io(w.path(), e))?;
        let n = bytes.len();
        bytes[n - 6] ^= 0x40;
        let bad = dir.path().join("bad");
        std::fs::write(&bad, bytes).map_err(|e| Error::io(&bad, e))?;
        assert!(read_tensorboard_scalars(&bad).is_err());
        Ok(())
    }
}
