//! GuidedMix-Net in a hand-written loop on the synthetic scenes: labelled and unlabelled images are paired, their
//! ASPP features mixed, and a second (mixed) head learns the unlabelled part of the mixture from the plain
//! prediction. The official code's losses on a tiny DeepLabV3+ (ResNet-18 at width 8), a few iterations, the
//! losses printed per step.
//!
//! `cargo run --release -p guidedmix --example guidedmix_synthetic`; `cargo test` runs it too.

use candle_core::{DType, Device};
use core_seg::optim::OptimConfig;
use core_seg::testing::tiny_model;
use core_seg::train::{TrainConfig, Trainer};
use data::synthetic::{SynthConfig, SyntheticDataset};
use data::{AugConfig, Dataset, Loader, LoaderConfig};
use guidedmix::GuidedMixConfig;

const ITERS: usize = 4;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Device::Cpu;
    // 32 procedural 64² scenes (6 classes); the first 8 are labelled, all 32 serve as unlabelled images.
    let scenes = |n| SyntheticDataset::new(SynthConfig::default(), 1, n).map(Dataset::Synthetic);
    let aug = AugConfig { crop_size: 64, resize_range: [1.0, 1.5], ..Default::default() };
    let batches = LoaderConfig { batch_size: 4, batch_size_u: 4, ..Default::default() };
    let loader = Loader::new(scenes(8)?, Some(scenes(32)?), aug, batches, device.clone())?;

    // A CPU-sized DeepLabV3+: ResNet-18 (deep stem) at width 8, output stride 8, 6 classes.
    let model = tiny_model(6);
    let adamw = OptimConfig::Adamw { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-4 };
    let train = TrainConfig { iters: ITERS, lr: 0.002, lr_multi: 1.0, optim: adamw, seed: 0, ..Default::default() };
    // GuidedMix-Net is the framework: its mixed head is built on the model's store, so it is trained (at the head
    // learning rate) and checkpointed with the model. Defaults = the official code.
    let gm = GuidedMixConfig::default();
    let framework = |vb| guidedmix::build(&gm, &model, vb);
    let mut trainer = Trainer::with_framework(&model, train, framework, DType::F32, &device)?;

    for batch in loader.epoch(0)?.take(ITERS) {
        let mut batch = batch?;
        let rec = trainer.step(&mut batch)?;
        let terms: Vec<String> = rec.terms.iter().map(|(n, v)| format!("{n} {v:.4}")).collect();
        println!("iter {}  loss {:.4}  {}", rec.iter + 1, rec.loss, terms.join("  "));
        let unsup = rec.terms.iter().find(|(n, _)| n == "loss_uns").map(|t| t.1);
        if !rec.loss.is_finite() || !unsup.is_some_and(|v| v > 0.0) {
            return Err(format!("iteration {}: no positive unlabelled loss in {:?}", rec.iter + 1, rec.terms).into());
        }
    }
    Ok(())
}
