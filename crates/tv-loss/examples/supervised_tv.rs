//! The TV loss's setting in a hand-written loop: every training image labelled at only 1% of its pixels (the
//! synthetic scenes' sparse labels), supervised cross-entropy on those pixels plus the unsupervised total-variation
//! term on all pixels; a tiny DeepLabV3+ (ResNet-18 at width 8), a few iterations, the losses printed per step.
//!
//! `cargo run --release -p tv-loss --example supervised_tv`; `cargo test` runs it too.

use candle_core::{DType, Device};
use core_seg::frameworks::{self, Method, SemiConfig};
use core_seg::optim::OptimConfig;
use core_seg::testing::tiny_model;
use core_seg::train::{TrainConfig, Trainer};
use data::synthetic::{SynthConfig, SyntheticDataset};
use data::{AugConfig, Dataset, Loader, LoaderConfig};
use tv_loss::TvConfig;

const ITERS: usize = 4;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Device::Cpu;
    // 32 procedural 64² scenes (6 classes), each keeping max(1, round(1%·n)) of its n labelled pixels.
    let sparse = SynthConfig { label_fraction: 0.01, ..Default::default() };
    let scenes = Dataset::Synthetic(SyntheticDataset::new(sparse, 1, 32)?);
    let aug = AugConfig { crop_size: 64, resize_range: [1.0, 1.5], ..Default::default() };
    let batches = LoaderConfig { batch_size: 4, ..Default::default() };
    let loader = Loader::new(scenes, None, aug, batches, device.clone())?;

    // A CPU-sized DeepLabV3+: ResNet-18 (deep stem) at width 8, output stride 8, 6 classes.
    let model = tiny_model(6);
    let semi = SemiConfig { method: Method::Supervised, ..Default::default() };
    let adamw = OptimConfig::Adamw { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-4 };
    let train = TrainConfig { iters: ITERS, lr: 0.002, lr_multi: 1.0, optim: adamw, seed: 0, ..Default::default() };
    let mut trainer = Trainer::new(&model, train, frameworks::build(&semi)?, DType::F32, &device)?;

    // Variant A (anisotropic, per class) on the softmax at output resolution, λ = 0.1.
    let tv = TvConfig { enabled: true, weight: 0.1, ..Default::default() };
    trainer.add_aux_term(|_| tv_loss::build(&tv))?;

    for batch in loader.supervised_epoch(0).take(ITERS) {
        let mut batch = batch?;
        let rec = trainer.step(&mut batch)?;
        let terms: Vec<String> = rec.terms.iter().map(|(n, v)| format!("{n} {v:.5}")).collect();
        println!("iter {}  loss {:.4}  {}", rec.iter + 1, rec.loss, terms.join("  "));
        let tv_loss = rec.terms.iter().find(|(n, _)| n == "loss_tv").map(|t| t.1);
        if !rec.loss.is_finite() || !tv_loss.is_some_and(|v| v > 0.0) {
            return Err(format!("iteration {}: no positive TV loss in {:?}", rec.iter + 1, rec.terms).into());
        }
    }
    Ok(())
}
