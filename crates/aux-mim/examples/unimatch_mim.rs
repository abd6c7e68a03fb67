//! UniMatch with class-wise masked image modelling, in a hand-written loop on the synthetic scenes: a tiny
//! DeepLabV3+, a few iterations, the losses printed per step.
//!
//! `cargo run --release -p aux-mim --example unimatch_mim`; `cargo test` runs it too.

use aux_mim::{FaMode, MimConfig, SemMode};
use candle_core::{DType, Device};
use core_seg::frameworks::{self, Method, SemiConfig};
use core_seg::optim::OptimConfig;
use core_seg::testing::tiny_model;
use core_seg::train::{TrainConfig, Trainer};
use data::synthetic::{SynthConfig, SyntheticDataset};
use data::{AugConfig, Dataset, Loader, LoaderConfig};

const ITERS: usize = 4;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Device::Cpu;
    // 32 procedural 64² scenes (6 classes); the first 8 are labelled, all 32 serve as unlabelled images.
    let scenes = |n| SyntheticDataset::new(SynthConfig::default(), 1, n).map(Dataset::Synthetic);
    let aug = AugConfig { crop_size: 64, resize_range: [1.0, 1.5], blur_sigma: [0.1, 0.4], ..Default::default() };
    let batches = LoaderConfig { batch_size: 4, batch_size_u: 4, ..Default::default() };
    let loader = Loader::new(scenes(8)?, Some(scenes(32)?), aug, batches, device.clone())?;

    // A CPU-sized DeepLabV3+: ResNet-18 (deep stem) at width 8, output stride 8, 6 classes.
    let model = tiny_model(6);
    let semi = SemiConfig { method: Method::Unimatch, conf_thresh: 0.8, ..Default::default() };
    let adamw = OptimConfig::Adamw { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-4 };
    let train = TrainConfig { iters: ITERS, lr: 0.002, lr_multi: 1.0, optim: adamw, seed: 0, ..Default::default() };
    let mut trainer = Trainer::new(&model, train, frameworks::build(&semi)?, DType::F32, &device)?;

    // Class-wise MIM alone: feature aggregation and MIM in semantic space off, 16-px patches, λ_rec 0.1 from
    // the first iteration (no warm-up).
    let mut mim = MimConfig { weight_rec: 0.1, warmup_epochs: 0.0, ..Default::default() };
    mim.mask.patch = 16;
    mim.fa.mode = FaMode::Off;
    mim.sem.mode = SemMode::Off;
    trainer.add_aux_term(|vb| aux_mim::build_with_semi(&mim, &semi, &model, vb))?;

    for batch in loader.epoch(0)?.take(ITERS) {
        let mut batch = batch?;
        let rec = trainer.step(&mut batch)?;
        let terms: Vec<String> = rec.terms.iter().map(|(n, v)| format!("{n} {v:.4}")).collect();
        println!("iter {}  loss {:.4}  {}", rec.iter + 1, rec.loss, terms.join("  "));
        let mim_loss = rec.terms.iter().find(|(n, _)| n == "loss_mim_rec").map(|t| t.1);
        if !rec.loss.is_finite() || !mim_loss.is_some_and(|v| v > 0.0) {
            return Err(format!("iteration {}: no positive MIM loss in {:?}", rec.iter + 1, rec.terms).into());
        }
    }
    Ok(())
}
