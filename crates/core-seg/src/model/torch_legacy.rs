//! Reading PyTorch checkpoints without PyTorch, in both of `torch.save`'s formats:
//!
//! - **legacy** (before PyTorch 1.6, or `_use_new_zipfile_serialization=False`): one stream of five pickles — the
//!   magic number, the protocol version (1001), system info, the object (a state dict), the list of storage
//!   keys — then, for each key in that order, an 8-byte little-endian element count and the raw little-endian
//!   data;
//! - **zip** (today's default): `<name>/data.pkl` plus one record `<name>/data/<key>` per storage.
//!
//! In both, tensors are `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, …)` with the storage a
//! persistent id `('storage', <dtype>Storage, key, location, numel[, view])`. Offsets, strides (non-contiguous
//! views), shared storages and old storage views are honoured; tensors come back contiguous, in file order.
//! [`load_torch_file`] sniffs the format.

mod objects;
mod pickle;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use objects::{TensorRef, Value};
use pickle::PickleError;

/// PyTorch's legacy magic number `0x1950a86a20f9469cfc6c`, little-endian.
const MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
/// The legacy format's protocol version.
const PROTOCOL_VERSION: i64 = 1001;
/// Wrapper keys under which training scripts nest a state dict.
const WRAPPERS: [&str; 3] = ["state_dict", "model", "model_state_dict"];

/// What was wrong with a checkpoint file; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum TorchFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: truncated: the file ends (at byte {at}) while reading {what}")]
    Truncated { path: PathBuf, at: usize, what: String },
    #[error("{path}: not a PyTorch checkpoint: {why}")]
    BadMagic { path: PathBuf, why: String },
    #[error("{path}: {part}, byte {at}: {msg}")]
    Malformed { path: PathBuf, part: String, at: usize, msg: String },
    #[error(
        "{path}: unsupported storage type `{class}` (Float, Double, Half, BFloat16, Long, Int, Short, Byte and Bool \
         storages are read)"
    )]
    UnsupportedStorage { path: PathBuf, class: String },
    #[error("{path}: storage `{key}`: {msg}")]
    Storage { path: PathBuf, key: String, msg: String },
    #[error("{path}: not a state dict: {msg}")]
    NotAStateDict { path: PathBuf, msg: String },
    #[error("{path}: zip archive: {source}")]
    Zip {
        path: PathBuf,
        #[source]
        source: zip::result::ZipError,
    },
    #[error("{path}: tensor `{name}`: {source}")]
    Tensor {
        path: PathBuf,
        name: String,
        /// Boxed: candle's error is large and would make every `Result` in this module carry it.
        #[source]
        source: Box<candle_core::Error>,
    },
}

type Result<T> = std::result::Result<T, TorchFileError>;

/// Reads every tensor of a PyTorch checkpoint (legacy or zip format) in file order, on the CPU. The object may be
/// a state dict or a dict wrapping one under `state_dict`, `model` or `model_state_dict`.
pub fn load_torch_file(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let io = |source| TorchFileError::Io { path: path.to_path_buf(), source };
    let data = std::fs::read(path).map_err(io)?;
    if data.starts_with(b"PK\x03\x04") {
        read_zip(path, &data)
    } else if data.first() == Some(&0x80) {
        read_legacy(path, &data)
    } else if data.get(257..262) == Some(b"ustar") {
        Err(bad_magic(path, "a tar-format checkpoint (PyTorch before 0.1.10) is not supported"))
    } else {
        Err(bad_magic(path, "neither a zip archive nor a pickle stream"))
    }
}

fn bad_magic(path: &Path, why: impl Into<String>) -> TorchFileError {
    TorchFileError::BadMagic { path: path.to_path_buf(), why: why.into() }
}

/// Runs the pickle at `data[*pos..]`, advancing `pos`; errors carry the absolute byte offset.
fn next_pickle(path: &Path, data: &[u8], pos: &mut usize, part: &str) -> Result<Value> {
    let base = *pos;
    match pickle::load(&data[base..]) {
        Ok((v, used)) => {
            *pos += used;
            Ok(v)
        }
        Err(e) => Err(pickle_error(path, part, base, e)),
    }
}

fn pickle_error(path: &Path, part: &str, base: usize, e: PickleError) -> TorchFileError {
    let path = path.to_path_buf();
    match e {
        PickleError::Truncated { offset, what } => {
            TorchFileError::Truncated { path, at: base + offset, what: format!("{what} in the {part}") }
        }
        PickleError::Malformed { offset, msg } => {
            TorchFileError::Malformed { path, part: part.to_string(), at: base + offset, msg }
        }
        PickleError::UnsupportedStorage { class, .. } => TorchFileError::UnsupportedStorage { path, class },
    }
}

fn read_legacy(path: &Path, data: &[u8]) -> Result<Vec<(String, Tensor)>> {
    let mut pos = 0;
    match next_pickle(path, data, &mut pos, "magic number") {
        Ok(Value::BigInt(b)) if b == MAGIC => {}
        Ok(_) | Err(TorchFileError::Malformed { .. }) => {
            return Err(bad_magic(path, "a pickle stream without PyTorch's magic number"))
        }
        Err(e) => return Err(e),
    }
    let malformed = |part: &str, at, msg: String| TorchFileError::Malformed {
        path: path.to_path_buf(),
        part: part.to_string(),
        at,
        msg,
    };
    let at = pos;
    match next_pickle(path, data, &mut pos, "protocol version")? {
        Value::Int(PROTOCOL_VERSION) => {}
        v => return Err(malformed("protocol version", at, format!("{v:?}, expected {PROTOCOL_VERSION}"))),
    }
    let at = pos;
    let Value::Dict(sys) = next_pickle(path, data, &mut pos, "system info")? else {
        return Err(malformed("system info", at, "not a dict".into()));
    };
    let little =
        sys.borrow().iter().any(|(k, v)| matches!((k, v), (Value::Str(k), Value::Bool(true)) if k == "little_endian"));
    if !little {
        return Err(malformed("system info", at, "saved on a big-endian machine (not supported)".into()));
    }
    let obj = next_pickle(path, data, &mut pos, "state dict")?;
    let entries = state_dict(path, obj)?;
    let at = pos;
    let Value::List(keys) = next_pickle(path, data, &mut pos, "storage key list")? else {
        return Err(malformed("storage key list", at, "not a list".into()));
    };
    // Element type and count of each root storage, from the tensors that refer to it.
    let mut kinds: HashMap<&str, (DType, usize)> = HashMap::new();
    for (name, t) in &entries {
        let s = &t.storage;
        if let Some(&(d, n)) = kinds.get(s.key.as_str()) {
            if d != s.dtype || n != s.root_numel {
                let msg = format!("`{name}` sees it as {:?}×{}, another tensor as {d:?}×{n}", s.dtype, s.root_numel);
                return Err(TorchFileError::Storage { path: path.to_path_buf(), key: s.key.clone(), msg });
            }
        }
        kinds.insert(&s.key, (s.dtype, s.root_numel));
    }
    let mut storages: HashMap<String, &[u8]> = HashMap::new();
    for key in keys.borrow().iter() {
        let Value::Str(key) = key else {
            return Err(malformed("storage key list", at, format!("a key is a {key:?}")));
        };
        let storage_err = |msg: String| TorchFileError::Storage { path: path.to_path_buf(), key: key.clone(), msg };
        let Some(&(dtype, numel)) = kinds.get(key.as_str()) else {
            return Err(storage_err("listed but no tensor refers to it (its element size is unknown)".into()));
        };
        let truncated = |what: String| TorchFileError::Truncated { path: path.to_path_buf(), at: data.len(), what };
        let head = data.get(pos..pos + 8).ok_or_else(|| truncated(format!("the element count of storage `{key}`")))?;
        let count = u64::from_le_bytes(head.try_into().unwrap_or([0; 8]));
        if count != numel as u64 {
            return Err(storage_err(format!("the file holds {count} elements, the tensors expect {numel}")));
        }
        pos += 8;
        let nbytes = numel * dtype.size_in_bytes();
        let bytes = data.get(pos..pos + nbytes).ok_or_else(|| truncated(format!("the data of storage `{key}`")))?;
        storages.insert(key.clone(), bytes);
        pos += nbytes;
    }
    if pos != data.len() {
        let msg = format!("{} unexpected bytes after the last storage", data.len() - pos);
        return Err(malformed("storage data", pos, msg));
    }
    materialize(path, entries, |key| Ok(storages.get(key).copied()))
}

/// Opens a zip archive that starts at byte 0 (no self-extractor prefix). The zip crate's offset detection
/// would otherwise misread archives with a ZIP64 end record (PyTorch writes one) when the first central directory
/// entry is exactly as long as that record and its locator (76 bytes: a 30-character name, as in
/// `mobilenet_v2-b0353104/data.pkl`).
pub(crate) fn open_zip<R: Read + std::io::Seek>(reader: R) -> zip::result::ZipResult<zip::ZipArchive<R>> {
    let config = zip::read::Config { archive_offset: zip::read::ArchiveOffset::Known(0) };
    zip::ZipArchive::with_config(config, reader)
}

fn read_zip(path: &Path, data: &[u8]) -> Result<Vec<(String, Tensor)>> {
    let zerr = |source| TorchFileError::Zip { path: path.to_path_buf(), source };
    let mut zip = open_zip(std::io::Cursor::new(data)).map_err(zerr)?;
    let names: Vec<String> =
        zip.file_names().map(|n| n.map(|n| n.into_owned())).collect::<std::result::Result<_, _>>().map_err(zerr)?;
    let pkl: Vec<&String> = names.iter().filter(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1).collect();
    let [pkl] = pkl.as_slice() else {
        return Err(bad_magic(
            path,
            format!("a zip archive with {} `<name>/data.pkl` records (expected one)", pkl.len()),
        ));
    };
    let prefix = pkl.trim_end_matches("data.pkl").to_string();
    let mut read = |name: &str| -> Result<Vec<u8>> {
        let mut f = zip.by_name(name).map_err(zerr)?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).map_err(|source| TorchFileError::Io { path: path.to_path_buf(), source })?;
        Ok(buf)
    };
    if names.contains(&format!("{prefix}byteorder")) && read(&format!("{prefix}byteorder"))? != b"little" {
        return Err(bad_magic(path, "saved with big-endian byte order (not supported)"));
    }
    let pickled = read(pkl.as_str())?;
    let part = format!("`{pkl}`");
    let mut pos = 0;
    let obj = next_pickle(path, &pickled, &mut pos, &part)?;
    if pos != pickled.len() {
        let msg = format!("{} bytes after the pickle's STOP", pickled.len() - pos);
        return Err(TorchFileError::Malformed { path: path.to_path_buf(), part, at: pos, msg });
    }
    let entries = state_dict(path, obj)?;
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    for (_, t) in &entries {
        let key = &t.storage.key;
        if !storages.contains_key(key) {
            let record = format!("{prefix}data/{key}");
            if !names.contains(&record) {
                let msg = format!("record `{record}` is missing from the archive");
                return Err(TorchFileError::Storage { path: path.to_path_buf(), key: key.clone(), msg });
            }
            storages.insert(key.clone(), read(&record)?);
        }
    }
    materialize(path, entries, |key| Ok(storages.get(key).map(Vec::as_slice)))
}

/// Finds the state dict (possibly under a wrapper key) and checks that it maps names to tensors.
fn state_dict(path: &Path, obj: Value) -> Result<Vec<(String, TensorRef)>> {
    let not_sd = |msg: String| TorchFileError::NotAStateDict { path: path.to_path_buf(), msg };
    let Value::Dict(mut dict) = obj else { return Err(not_sd("the saved object is not a dict".into())) };
    loop {
        let inner = dict.borrow().iter().find_map(|(k, v)| match (k, v) {
            (Value::Str(k), Value::Dict(d)) if WRAPPERS.contains(&k.as_str()) => Some(d.clone()),
            _ => None,
        });
        match inner {
            Some(d) => dict = d,
            None => break,
        }
    }
    let mut out = Vec::new();
    for (k, v) in dict.borrow().iter() {
        match (k, v) {
            (Value::Str(k), Value::Tensor(t)) => out.push((k.clone(), (**t).clone())),
            (Value::Str(k), v) => return Err(not_sd(format!("entry `{k}` holds {}, not a tensor", v.describe()))),
            (k, _) => return Err(not_sd(format!("a key is {}, not a string", k.describe()))),
        }
    }
    if out.is_empty() {
        return Err(not_sd("no tensors".into()));
    }
    Ok(out)
}

/// Turns tensor references into contiguous CPU tensors, reading each view's elements from its root storage.
fn materialize<'a>(
    path: &Path,
    entries: Vec<(String, TensorRef)>,
    storage: impl Fn(&str) -> Result<Option<&'a [u8]>>,
) -> Result<Vec<(String, Tensor)>> {
    let mut out = Vec::with_capacity(entries.len());
    for (name, t) in entries {
        let s = &t.storage;
        let serr = |msg: String| TorchFileError::Storage { path: path.to_path_buf(), key: s.key.clone(), msg };
        let bytes = storage(&s.key)?.ok_or_else(|| serr(format!("`{name}` refers to it but the file has no data")))?;
        let esize = s.dtype.size_in_bytes();
        if bytes.len() != s.root_numel * esize {
            return Err(serr(format!("{} bytes for {} {:?} elements", bytes.len(), s.root_numel, s.dtype)));
        }
        let numel: usize = t.size.iter().product();
        let span = t.size.iter().zip(&t.stride).map(|(&n, &st)| n.saturating_sub(1) * st).sum::<usize>();
        if numel > 0 && t.offset + span >= s.numel {
            let msg = format!(
                "`{name}` (offset {}, size {:?}, stride {:?}) reads past its {} elements",
                t.offset, t.size, t.stride, s.numel
            );
            return Err(serr(msg));
        }
        let base = s.view_offset + t.offset;
        let buf = gather(&bytes[base * esize..], esize, &t.size, &t.stride, numel);
        let tensor = Tensor::from_raw_buffer(&buf, s.dtype, &t.size, &Device::Cpu).map_err(|source| {
            TorchFileError::Tensor { path: path.to_path_buf(), name: name.clone(), source: Box::new(source) }
        })?;
        out.push((name, tensor));
    }
    Ok(out)
}

/// Copies the strided elements starting at `src[0]` into a contiguous row-major buffer.
fn gather(src: &[u8], esize: usize, size: &[usize], stride: &[usize], numel: usize) -> Vec<u8> {
    let mut contiguous = true;
    let mut expect = 1;
    for (&n, &st) in size.iter().zip(stride).rev() {
        contiguous &= n == 1 || st == expect;
        expect *= n;
    }
    if contiguous || numel == 0 {
        return src[..numel * esize].to_vec();
    }
    let mut out = Vec::with_capacity(numel * esize);
    let mut idx = vec![0usize; size.len()];
    for _ in 0..numel {
        let at: usize = idx.iter().zip(stride).map(|(i, s)| i * s).sum();
        out.extend_from_slice(&src[at * esize..(at + 1) * esize]);
        for d in (0..size.len()).rev() {
            idx[d] += 1;
            if idx[d] < size[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    out
}
