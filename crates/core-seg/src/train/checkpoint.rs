//! Checkpoints: one safetensors file holding the model variables (under their PyTorch names, so the file
//! loads as plain weights too), the optimiser state (`optim.*`) and a JSON state record in the header
//! metadata (iteration, RNG state, best mIoU, config). Written atomically: temp file, fsync, rename.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Prefix of optimiser tensors inside a checkpoint.
pub const OPTIM_PREFIX: &str = "optim.";
/// Prefix of framework state (e.g. an EMA teacher) inside a checkpoint.
pub const FRAMEWORK_PREFIX: &str = "framework.";
const STATE_KEY: &str = "semiseg_state";

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
}

/// A loaded checkpoint.
pub struct Checkpoint {
    pub model: HashMap<String, Tensor>,
    pub optim: BTreeMap<String, Tensor>,
    pub framework: HashMap<String, Tensor>,
    pub state: TrainState,
}

/// Writes a checkpoint atomically to `path`.
pub fn save_checkpoint(
    path: &Path,
    model: &[(String, Tensor)],
    optim: &BTreeMap<String, Tensor>,
    framework: &[(String, Tensor)],
    state: &TrainState,
) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> = model.iter().map(|(n, t)| (n.clone(), t.detach())).collect();
    tensors.extend(framework.iter().map(|(n, t)| (format!("{FRAMEWORK_PREFIX}{n}"), t.detach())));
    tensors.extend(optim.iter().map(|(n, t)| (format!("{OPTIM_PREFIX}{n}"), t.detach())));
    let json = serde_json::to_string(state).map_err(|e| Error::file(path, format!("state serialisation: {e}")))?;
    let meta = HashMap::from([(STATE_KEY.to_string(), json)]);
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = path.file_name().and_then(|s| s.to_str()).unwrap_or("checkpoint");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let bytes = safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), Some(meta))
        .map_err(|e| Error::file(&tmp, format!("safetensors serialisation: {e}")))?;
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(&bytes).and_then(|_| f.sync_all()).map_err(|e| Error::io(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Reads a checkpoint written by [`save_checkpoint`].
pub fn load_checkpoint(path: &Path, device: &Device) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| Error::file(path, format!("not a safetensors file: {e}")))?;
    let json = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(STATE_KEY))
        .ok_or_else(|| Error::file(path, "no training state in the header: a weights file, not a checkpoint"))?;
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
