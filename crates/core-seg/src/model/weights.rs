//! Weight I/O: full checkpoints or backbone-only (UniMatch deep-stem, torchvision or timm ResNet names,
//! torchvision MobileNetV2 names), partial loading with a report of missing and unexpected keys, and atomic
//! safetensors saving.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::nn::ParamStore;
use crate::{Error, Result};

/// What a load did: every name is accounted for.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LoadReport {
    /// Model variables set from the file.
    pub loaded: Vec<String>,
    /// Model variables the file does not have (left at their initial values).
    pub missing: Vec<String>,
    /// File tensors the model has no variable for (e.g. a classifier `fc.*`).
    pub unexpected: Vec<String>,
    /// `num_batches_tracked` buffers (PyTorch bookkeeping) and optimiser state, skipped.
    pub ignored: Vec<String>,
}

/// Which part of the model a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadScope {
    /// Names are the model's own (`backbone.*`, `head.*`, …); auto-detected when any key starts `backbone.`.
    Full,
    /// Names are a bare encoder's (ResNet `conv1.*`, `layer1.*`, `fc.*`; MobileNetV2 `features.*`,
    /// `classifier.*`): mapped under `backbone.`.
    Backbone,
}

/// Reads a safetensors file into named tensors on `device`.
pub fn read_safetensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    if !path.exists() {
        return Err(Error::file(path, "no such file"));
    }
    candle_core::safetensors::load(path, device)
        .map_err(|e| Error::file(path, format!("not a readable safetensors file: {e}")))
}

/// Normalises a checkpoint key: strips DDP's `module.` prefix.
fn canonical(name: &str) -> &str {
    name.strip_prefix("module.").unwrap_or(name)
}

/// Loads `tensors` into `store`. Shapes must match exactly (an error names the key); dtypes are converted.
/// With `strict`, any missing or unexpected key is an error listing them.
pub fn load_tensors(store: &ParamStore, tensors: &HashMap<String, Tensor>, strict: bool) -> Result<LoadReport> {
    let scope = if tensors.keys().any(|k| canonical(k).starts_with("backbone.")) {
        LoadScope::Full
    } else {
        LoadScope::Backbone
    };
    let vars: BTreeMap<String, candle_core::Var> = store.named_vars().into_iter().collect();
    let mut report = LoadReport::default();
    let mut seen = std::collections::BTreeSet::new();
    let mut keys: Vec<&String> = tensors.keys().collect();
    keys.sort();
    for key in keys {
        let base = canonical(key);
        let is_state = base.starts_with(crate::train::checkpoint::OPTIM_PREFIX)
            || base.starts_with(crate::train::checkpoint::FRAMEWORK_PREFIX);
        if base.ends_with("num_batches_tracked") || is_state {
            report.ignored.push(key.clone());
            continue;
        }
        let name = match scope {
            LoadScope::Full => base.to_string(),
            LoadScope::Backbone => format!("backbone.{base}"),
        };
        let Some(var) = vars.get(&name) else {
            report.unexpected.push(key.clone());
            continue;
        };
        let t = &tensors[key];
        if t.shape() != var.shape() {
            let stem = ["backbone.conv1", "backbone.bn1", "backbone.stem", "backbone.layer1.0."];
            let hint = if stem.iter().any(|p| name.starts_with(p)) {
                " — a stem mismatch? (deep stem: conv1.{0,3,6}; torchvision stem: one 7×7 conv1; v1c: stem.{0,3,6})"
            } else {
                ""
            };
            return Err(Error::Weights(format!(
                "`{key}`: checkpoint shape {:?} != model shape {:?} (`{name}`){hint}",
                t.dims(),
                var.dims()
            )));
        }
        var.set(&t.to_dtype(var.dtype())?.to_device(var.device())?)?;
        seen.insert(name.clone());
        report.loaded.push(name);
    }
    report.missing = vars
        .keys()
        .filter(|n| !seen.contains(*n))
        .filter(|n| scope == LoadScope::Full || n.starts_with("backbone."))
        .cloned()
        .collect();
    if strict && (!report.missing.is_empty() || !report.unexpected.is_empty()) {
        return Err(Error::Weights(format!(
            "strict load: missing {:?}, unexpected {:?}",
            report.missing, report.unexpected
        )));
    }
    Ok(report)
}

/// Loads a safetensors checkpoint (full model or bare backbone) into `store`.
pub fn load_safetensors(store: &ParamStore, path: &Path, strict: bool) -> Result<LoadReport> {
    let device = store.named_vars().first().map(|(_, v)| v.device().clone()).unwrap_or(Device::Cpu);
    let tensors = read_safetensors(path, &device)?;
    load_tensors(store, &tensors, strict).map_err(|e| match e {
        Error::Weights(m) => Error::file(path, m),
        other => other,
    })
}

/// Writes `tensors` to `path` atomically: a temporary file in the same directory, then a rename.
pub fn save_tensors_atomic(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    let bytes = safetensors::serialize(tensors, None).map_err(|e| Error::file(path, e.to_string()))?;
    crate::files::write_atomic(path, &bytes).map_err(|e| Error::io(path, e))
}

/// Saves every variable of `store` (parameters and BN buffers) under its PyTorch name.
pub fn save_safetensors(store: &ParamStore, path: &Path) -> Result<()> {
    let tensors: HashMap<String, Tensor> =
        store.named_vars().into_iter().map(|(n, v)| (n, v.as_tensor().detach())).collect();
    save_tensors_atomic(&tensors, path)
}
