//! One short sanity run in a test-sized setting (not the 3-seed study): with 5% sparse pixel labels, training
//! with the TV term gives predictions with a lower TV on held-out images than the same run without it.

mod toy;

use candle_core::{DType, Device};
use core_seg::frameworks::Supervised;
use core_seg::nn::Mode;
use core_seg::train::{TrainConfig, Trainer};
use core_seg::Result;
use toy::{tiny_model, toy_batch, SparseSource, ToySource};
use tv_loss::{build, mrf_labels, tv_loss, MrfConfig, TvConfig};

/// Trains `iters` supervised steps (λ = `weight`, or no term) and returns `(TV of eval-mode predictions,
/// pixel accuracy, pixel accuracy after mean-field MRF with β = 1)` on 4 held-out toy images.
fn run(weight: Option<f64>, iters: usize) -> Result<(f64, f64, f64)> {
    let cfg = TrainConfig { iters, lr: 0.01, seed: 11, ..Default::default() };
    let fw = Box::new(Supervised { criterion: Default::default() });
    let mut t = Trainer::new(&tiny_model(3), cfg, fw, DType::F32, &Device::Cpu)?;
    if let Some(w) = weight {
        t.add_aux_term(|_vb| build(&TvConfig { weight: w, ..Default::default() }))?;
    }
    let mut src =
        SparseSource { inner: ToySource { n_train: 16, batch: 4, size: 32, dtype: DType::F32 }, fraction: 0.05 };
    for _ in 0..iters {
        t.step(&mut src)?;
    }
    let val = toy_batch(&[1000, 1001, 1002, 1003], 32, DType::F32, &Device::Cpu)?;
    let logits = t.model.forward_t(&val.image, Mode::Eval)?;
    let tv = tv_loss(&logits, Some(&val.valid), &TvConfig::default())?.to_scalar::<f32>()? as f64;
    let labelled = val.mask.ne(255u32)?.to_dtype(DType::F64)?;
    let acc = |pred: &candle_core::Tensor| -> Result<f64> {
        let correct = (pred.eq(&val.mask)?.to_dtype(DType::F64)? * &labelled)?.sum_all()?.to_scalar::<f64>()?;
        Ok(correct / labelled.sum_all()?.to_scalar::<f64>()?)
    };
    let probs = candle_nn::ops::softmax(&logits, 1)?;
    // The toy images are not ImageNet-normalised RGB; the contrast weights only use relative differences.
    let mrf = MrfConfig { beta: 1.0, ..Default::default() };
    let smoothed = mrf_labels(&probs, Some(&val.image), &mrf)?;
    Ok((tv, acc(&logits.argmax(1)?)?, acc(&smoothed)?))
}

#[test]
fn tv_term_lowers_the_tv_of_predictions() -> Result<()> {
    let iters = 40;
    let (tv0, acc0, mrf0) = run(None, iters)?;
    let (tv1, acc1, _) = run(Some(1.0), iters)?;
    println!(
        "{iters} steps, 5% labels: supervised TV {tv0:.5} acc {acc0:.4} (+MRF acc {mrf0:.4}); \
         supervised + TV(λ=1) TV {tv1:.5} acc {acc1:.4}"
    );
    assert!(tv0.is_finite() && tv1.is_finite() && (0.0..=1.0).contains(&mrf0));
    assert!(tv1 < tv0, "TV term did not lower the prediction TV: {tv1} vs {tv0}");
    Ok(())
}
