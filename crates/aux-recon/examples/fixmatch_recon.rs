//! FixMatch with image reconstruction as an auxiliary task, in a hand-written loop on the synthetic scenes: the
//! decoder R reconstructs the clean labelled and weak views from the encoder's deepest features; a tiny DeepLabV3+
//! (ResNet-18 at width 8), a few iterations, the losses and the reconstruction's PSNR printed per step.
//!
//! `cargo run --release -p aux-recon --example fixmatch_recon`; `cargo test` runs it too.

use aux_recon::ReconConfig;
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
    let semi = SemiConfig { method: Method::Fixmatch, conf_thresh: 0.8, ..Default::default() };
    let adamw = OptimConfig::Adamw { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-4 };
    let train = TrainConfig { iters: ITERS, lr: 0.002, lr_multi: 1.0, optim: adamw, seed: 0, ..Default::default() };
    let mut trainer = Trainer::new(&model, train, frameworks::build(&semi)?, DType::F32, &device)?;

    // Plain MSE reconstruction from c4, λ_rec 0.1; output stride 8 → 3 upsampling stages, widths cut to fit.
    // R draws its initial weights from its own stream of the seed, so the segmentation model's are unchanged.
    let recon = ReconConfig { enabled: true, weight: 0.1, widths: Some(vec![64, 32, 16, 16]), ..Default::default() };
    let (store, seed) = (trainer.store.clone(), trainer.cfg.seed);
    trainer.add_aux_term(|vb| {
        let vb = aux_recon::var_builder(&store, seed, vb.dtype(), vb.device());
        aux_recon::build(&recon, Some(&semi), &model, vb)
    })?;

    for batch in loader.epoch(0)?.take(ITERS) {
        let mut batch = batch?;
        let rec = trainer.step(&mut batch)?;
        let shown = rec.terms.iter().chain(&rec.stats);
        let terms: Vec<String> = shown.map(|(n, v)| format!("{n} {v:.4}")).collect();
        println!("iter {}  loss {:.4}  {}", rec.iter + 1, rec.loss, terms.join("  "));
        let rec_loss = rec.terms.iter().find(|(n, _)| n == "loss_recon").map(|t| t.1);
        if !rec.loss.is_finite() || !rec_loss.is_some_and(|v| v > 0.0) {
            return Err(
                format!("iteration {}: no positive reconstruction loss in {:?}", rec.iter + 1, rec.terms).into()
            );
        }
    }
    Ok(())
}
