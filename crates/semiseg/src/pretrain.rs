//! `cargo xtask pretrain-synthetic`: the shipped encoder for the synthetic recipes.
//!
//! The paper recipes start from ImageNet weights; a from-scratch CPU model trained for minutes is too weak a
//! teacher for FixMatch/UniMatch (`docs/data.md`). The synthetic recipes therefore start
//! from an encoder pretrained once on a **pretext task that shares no images with the benchmark**: supervised
//! segmentation of a disjoint synthetic set (its own seed, `PRETEXT_SEED`), all labels. Only `backbone.*`
//! is kept, as with ImageNet weights; the decoder starts fresh in every run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{bail, fs};
use crate::Result;
use candle_core::Tensor;

use crate::config::RunConfig;
use crate::train::{Runner, TrainOptions};

/// Seed of the pretext scenes (the benchmark uses seed 1 for train and another stream for val).
pub const PRETEXT_SEED: u64 = 7_700_001;

/// Where the shipped encoder lives (committed; see `assets/pretrained/README.md`).
pub fn shipped_encoder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/pretrained/synthetic-encoder.safetensors")
}

/// Resolves `@synthetic-encoder` (the shipped file), `@mobilenet_v2` (the cache of `fetch-weights`) and `@none`
/// (random initialisation, e.g. a recipe row overriding its config's encoder) in a config's `pretrained`.
pub fn resolve(cfg: &mut RunConfig) -> Result<()> {
    if cfg.pretrained.as_deref() == Some(Path::new("@none")) {
        cfg.pretrained = None;
    } else if cfg.pretrained.as_deref() == Some(Path::new("@synthetic-encoder")) {
        let p = shipped_encoder();
        if !p.exists() {
            bail!("{} is missing: run `cargo xtask pretrain-synthetic` to make it", p.display());
        }
        cfg.pretrained = Some(p);
    } else if cfg.pretrained.as_deref() == Some(Path::new("@mobilenet_v2")) {
        let p = crate::fetch_weights::cached_weights("mobilenet_v2")?;
        if !p.exists() {
            bail!("{} is missing: run `cargo xtask fetch-weights mobilenet_v2` to make it", p.display());
        }
        cfg.pretrained = Some(p);
    }
    Ok(())
}

/// What `cargo xtask pretrain-synthetic` takes: output file, iterations, pretext scenes, seed.
#[derive(Debug, Clone)]
pub struct PretrainOptions {
    pub out: PathBuf,
    pub iters: usize,
    pub num: usize,
    pub seed: u64,
    pub quiet: bool,
}

const SYNTHETIC: &str = include_str!("../../../configs/synthetic.toml");

/// Trains the pretext run and writes its `backbone.*` tensors to `a.out` with a JSON note beside them.
pub fn run(a: PretrainOptions) -> Result<()> {
    let mut cfg: RunConfig = toml::from_str(SYNTHETIC)?;
    cfg.semi.method = core_seg::frameworks::Method::Supervised;
    cfg.pretrained = None;
    cfg.data.synthetic.seed = PRETEXT_SEED;
    cfg.data.synthetic.num_train = a.num;
    cfg.data.synthetic.num_labeled = a.num;
    cfg.data.synthetic.num_val = 200;
    cfg.train.iters = a.iters;
    cfg.train.eval_every = 0;
    let run_dir = std::env::temp_dir().join(format!("semiseg-pretrain-{}", std::process::id()));
    let args = TrainOptions {
        out: run_dir.clone(),
        resume: false,
        data_root: None,
        seed: Some(a.seed),
        iters: None,
        quiet: a.quiet,
        skip_bad: false,
        device: "cpu".into(),
    };
    let r = Runner::from_config(cfg.clone())?.options(args).train()?;
    let ck = core_seg::train::load_checkpoint(&run_dir.join("latest.safetensors"), &candle_core::Device::Cpu)?;
    let backbone: HashMap<String, Tensor> = ck.model.into_iter().filter(|(k, _)| k.starts_with("backbone.")).collect();
    core_seg::model::weights::save_tensors_atomic(&backbone, &a.out)?;
    let rev = crate::reproduce::report::git_revision();
    let note = serde_json::json!({
        "command": format!("cargo xtask pretrain-synthetic --iters {} --num {} --seed {}", a.iters, a.num, a.seed),
        "seed": a.seed,
        "pretext": format!("supervised segmentation of {} synthetic scenes with seed {PRETEXT_SEED} (disjoint from the benchmark)", a.num),
        "pretext_val_miou": r.final_report.miou,
        "git_revision": rev,
        "model": cfg.model,
        "tensors": backbone.len(),
    });
    let note_path = a.out.with_extension("json");
    fs::write_atomic(&note_path, serde_json::to_string_pretty(&note)?)?;
    let _ = std::fs::remove_dir_all(&run_dir);
    println!(
        "pretext val mIoU {:.2}; wrote {} ({} tensors) and {}",
        r.final_report.miou,
        a.out.display(),
        backbone.len(),
        note_path.display()
    );
    Ok(())
}
