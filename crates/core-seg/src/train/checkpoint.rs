//! Checkpoints: one safetensors file holding the model variables (under their PyTorch names, so the file
//! loads as plain weights too), the optimiser state (`optim.*`) and a JSON state record in the header
//! metadata (iteration, RNG state, best mIoU, config), with a CRC32C of the tensor data. Written atomically:
//! temp file, fsync, rename.
//!
//! A run directory keeps two: [`save_rotating`] moves `latest.safetensors` to `previous.safetensors` before
//! the new one takes its place, and [`load_resumable`] falls back to `previous` (with a warning naming the
//! file and the error) when `latest` is missing, truncated or corrupt.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Prefix of optimiser tensors inside a checkpoint.
pub const OPTIM_PREFIX: &str = "optim.";
/// Prefix of framework state (e.g. an EMA teacher) inside a checkpoint.
pub const FRAMEWORK_PREFIX: &str = "framework.";
const STATE_KEY: &str = "semiseg_state";
/// CRC32C (hex) of everything after the header; checked on load when present.
const CRC_KEY: &str = "semiseg_crc32c";
const CRC_PLACEHOLDER: &str = "00000000";
/// The newest checkpoint of a run directory.
pub const LATEST: &str = "latest.safetensors";
/// The checkpoint before [`LATEST`], kept as a fallback.
pub const PREVIOUS: &str = "previous.safetensors";

/// Everything besides tensors that a bit-identical resume needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Number of completed iterations.
    pub iter: usize,
    pub rng: [u64; 4],
    pub optim_steps: usize,
    pub best_miou: Option<f64>,
    pub best_iter: Option<usize>,
    /// The run's configuration, as given (TOML/JSON value), for reproducibility.
    pub config: serde_json::Value,
    /// Training wall time up to this checkpoint, over every process of a resumed run (0 in checkpoints that
    /// predate this field).
    #[serde(default)]
    pub train_secs: f64,
}

/// A loaded checkpoint.
pub struct Checkpoint {
    pub model: HashMap<String, Tensor>,
    pub optim: BTreeMap<String, Tensor>,
    pub framework: HashMap<String, Tensor>,
    pub state: TrainState,
}

/// The tensors of a checkpoint, under their names in the file.
pub struct CheckpointParts<'a> {
    pub model: &'a [(String, Tensor)],
    pub optim: &'a BTreeMap<String, Tensor>,
    pub framework: &'a [(String, Tensor)],
    pub state: &'a TrainState,
}

/// Writes a checkpoint atomically to `path`.
pub fn save_checkpoint(
    path: &Path,
    model: &[(String, Tensor)],
    optim: &BTreeMap<String, Tensor>,
    framework: &[(String, Tensor)],
    state: &TrainState,
) -> Result<()> {
    let tmp = write_temp(path, &CheckpointParts { model, optim, framework, state })?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Writes `dir/latest.safetensors` atomically, first moving the file there to `dir/previous.safetensors`
/// (`rotate = false` overwrites `latest` and leaves `previous` alone, e.g. when `latest` is known to be bad).
/// The new checkpoint is complete on disk before either rename; a crash between the two renames leaves
/// `previous` only, which [`load_resumable`] then uses.
pub fn save_rotating(dir: &Path, parts: &CheckpointParts, rotate: bool) -> Result<()> {
    let (latest, previous) = (dir.join(LATEST), dir.join(PREVIOUS));
    let tmp = write_temp(&latest, parts)?;
    if rotate && latest.exists() {
        std::fs::rename(&latest, &previous).map_err(|e| Error::io(&previous, e))?;
    }
    std::fs::rename(&tmp, &latest).map_err(|e| Error::io(&latest, e))?;
    // Make the renames durable (best effort: not every platform can open a directory).
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Serialises `parts` next to `path` (a hidden temp file, fsynced) and returns the temp file's path.
fn write_temp(path: &Path, parts: &CheckpointParts) -> Result<PathBuf> {
    let mut tensors: Vec<(String, Tensor)> = parts.model.iter().map(|(n, t)| (n.clone(), t.detach())).collect();
    tensors.extend(parts.framework.iter().map(|(n, t)| (format!("{FRAMEWORK_PREFIX}{n}"), t.detach())));
    tensors.extend(parts.optim.iter().map(|(n, t)| (format!("{OPTIM_PREFIX}{n}"), t.detach())));
    let json =
        serde_json::to_string(parts.state).map_err(|e| Error::file(path, format!("state serialisation: {e}")))?;
    let meta = HashMap::from([(STATE_KEY.to_string(), json), (CRC_KEY.to_string(), CRC_PLACEHOLDER.to_string())]);
    let mut bytes = safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), Some(meta))
        .map_err(|e| Error::file(path, format!("safetensors serialisation: {e}")))?;
    fill_crc(&mut bytes).map_err(|m| Error::file(path, m))?;
    crate::files::stage(path, &bytes, true).map_err(|e| Error::io(path, e))
}

/// Header length and the end of the header in a safetensors buffer.
fn header_end(bytes: &[u8]) -> Option<usize> {
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?) as usize;
    8usize.checked_add(n).filter(|&e| e <= bytes.len())
}

/// Replaces the CRC placeholder in the header (same length, so no offset moves) by the data's CRC32C.
fn fill_crc(bytes: &mut [u8]) -> std::result::Result<(), String> {
    let end = header_end(bytes).ok_or("bad header length")?;
    let crc = format!("{:08x}", crc32c::crc32c(&bytes[end..]));
    let pattern = format!("\"{CRC_KEY}\":\"{CRC_PLACEHOLDER}\"");
    let at = bytes[..end]
        .windows(pattern.len())
        .position(|w| w == pattern.as_bytes())
        .ok_or("CRC placeholder missing from the header")?;
    let value_at = at + pattern.len() - 1 - CRC_PLACEHOLDER.len();
    bytes[value_at..value_at + CRC_PLACEHOLDER.len()].copy_from_slice(crc.as_bytes());
    Ok(())
}

/// A checkpoint found in a run directory by [`load_resumable`].
pub struct Resumable {
    pub checkpoint: Checkpoint,
    /// The file it came from (`latest`, or `previous` after a fallback).
    pub path: PathBuf,
    /// Set when `latest` was missing or unreadable: names the file and the error.
    pub warning: Option<String>,
}

/// The checkpoint to resume a run directory from: `latest.safetensors`, or `previous.safetensors` when
/// `latest` is missing, truncated or corrupt. `None` when the directory holds neither; an error when no
/// readable checkpoint is left (it names each file and its problem).
pub fn load_resumable(dir: &Path, device: &Device) -> Result<Option<Resumable>> {
    let (latest, previous) = (dir.join(LATEST), dir.join(PREVIOUS));
    let first = match latest.exists() {
        true => match load_checkpoint(&latest, device) {
            Ok(ck) => return Ok(Some(Resumable { checkpoint: ck, path: latest, warning: None })),
            Err(e) => Some(e),
        },
        false => None,
    };
    if !previous.exists() {
        return first.map_or(Ok(None), Err);
    }
    let problem = match &first {
        Some(e) => e.to_string(),
        None => format!("{}: missing", latest.display()),
    };
    match load_checkpoint(&previous, device) {
        Ok(ck) => {
            let warning =
                Some(format!("{problem}; resuming from {} (iteration {}) instead", previous.display(), ck.state.iter));
            Ok(Some(Resumable { checkpoint: ck, path: previous, warning }))
        }
        Err(e) => Err(Error::file(dir, format!("no readable checkpoint: {problem}; {e}"))),
    }
}

/// Reads a checkpoint written by [`save_checkpoint`] or [`save_rotating`].
pub fn load_checkpoint(path: &Path, device: &Device) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| Error::file(path, format!("not a safetensors file (truncated or corrupt?): {e}")))?;
    let meta = meta.metadata().as_ref();
    let json = meta
        .and_then(|m| m.get(STATE_KEY))
        .ok_or_else(|| Error::file(path, "no training state in the header: a weights file, not a checkpoint"))?;
    if let Some(want) = meta.and_then(|m| m.get(CRC_KEY)) {
        let end = header_end(&bytes).ok_or_else(|| Error::file(path, "bad header length"))?;
        let got = format!("{:08x}", crc32c::crc32c(&bytes[end..]));
        if &got != want {
            return Err(Error::file(path, format!("corrupt: tensor data CRC32C {got}, header says {want}")));
        }
    }
    let state: TrainState =
        serde_json::from_str(json).map_err(|e| Error::file(path, format!("bad training state: {e}")))?;
    let all = candle_core::safetensors::load_buffer(&bytes, device).map_err(|e| Error::file(path, e.to_string()))?;
    let (mut model, mut optim, mut framework) = (HashMap::new(), BTreeMap::new(), HashMap::new());
    for (k, t) in all {
        if let Some(rest) = k.strip_prefix(OPTIM_PREFIX) {
            optim.insert(rest.to_string(), t);
        } else if let Some(rest) = k.strip_prefix(FRAMEWORK_PREFIX) {
            framework.insert(rest.to_string(), t);
        } else {
            model.insert(k, t);
        }
    }
    Ok(Checkpoint { model, optim, framework, state })
}
