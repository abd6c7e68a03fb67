//! `cargo xtask diagnose recon-channels`: on a 2-iteration checkpoint with the reconstruction branch, scores are
//! written for the trained decoder and both controls, the PNG grids render, `eval` still loads the checkpoint
//! (training-only `recon.*` ignored), and a config whose decoder does not match the checkpoint is refused.

mod common;
use common::xtask;

const CONFIG: &str = r#"
[data]
dataset = "synthetic"
[data.synthetic]
num_train = 16
num_labeled = 4
num_val = 3
[aug]
crop_size = 32
resize_range = [1.0, 1.2]
[loader]
batch_size = 2
batch_size_u = 2
[model]
backbone = "resnet18"
base_width = 8
output_stride = 8
dilations = [1, 2, 3]
aspp_channels = 8
reduce_channels = 8
fuse_channels = 8
nclass = 6
[train]
iters = 2
[semi]
method = "fixmatch"
conf_thresh = 0.0
[recon]
enabled = true
mode = "fgbg"
widths = [16, 8, 8, 8]
"#;

#[test]
fn recon_channels_scores_trained_and_control_decoders() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("tiny.toml");
    std::fs::write(&cfg, CONFIG)?;
    let run = dir.path().join("run");
    let t = xtask().arg("train").arg("--config").arg(&cfg).arg("--out").arg(&run).arg("--quiet").output()?;
    assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
    let ck = run.join("latest.safetensors");
    let out = dir.path().join("diag");
    let d = xtask()
        .args(["diagnose", "recon-channels", "--top", "3", "--checkpoint"])
        .arg(&ck)
        .arg("--out")
        .arg(&out)
        .output()?;
    let stdout = String::from_utf8_lossy(&d.stdout);
    assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stderr));
    assert!(stdout.contains("recon (random init)") && stdout.contains("background"), "{stdout}");
    let scores: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("scores.json"))?)?;
    let subjects = scores["subjects"].as_array().expect("subjects");
    assert_eq!(subjects.len(), 3);
    assert_eq!(subjects[0]["channels"], 8, "layer u2 of widths [16, 8, 8, 8]");
    assert_eq!(subjects[2]["channels"], 8, "fuse_channels");
    let iou = subjects[0]["iou"].as_array().expect("iou");
    assert_eq!(iou.len(), 8 * 6);
    assert!(iou.iter().all(|v| v.as_f64().is_some_and(|x| (0.0..=1.0).contains(&x))));
    for png in ["recon-channels.png", "recon-channels-random.png"] {
        let bytes = std::fs::read(out.join(png))?;
        assert_eq!(&bytes[1..4], b"PNG", "{png}");
    }
    let e = xtask().arg("eval").arg("--config").arg(&cfg).arg("--checkpoint").arg(&ck).output()?;
    assert!(e.status.success(), "eval: {}", String::from_utf8_lossy(&e.stderr));
    let other = dir.path().join("other.toml");
    std::fs::write(&other, CONFIG.replace("widths = [16, 8, 8, 8]", "widths = [32, 8, 8, 8]"))?;
    let bad =
        xtask().args(["diagnose", "recon-channels", "--checkpoint"]).arg(&ck).arg("--config").arg(&other).output()?;
    assert!(!bad.status.success());
    let msg = String::from_utf8_lossy(&bad.stderr);
    assert!(msg.contains("recon"), "{msg}");
    Ok(())
}
