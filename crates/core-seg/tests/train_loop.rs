//! The training loop end to end on a tiny in-test dataset: learning, resume, non-finite loss.

use core_seg::testing as toy;

use candle_core::{DType, Device, Tensor};
use core_seg::batch::{BatchSource, TrainBatch};
use core_seg::eval::{evaluate, EvalConfig};
use core_seg::frameworks::{self, Method, SemiConfig};
use core_seg::frameworks::{Criterion, Supervised};
use core_seg::model::DeepLabV3Plus;
use core_seg::nn::Mode;
use core_seg::optim::OptimConfig;
use core_seg::plugin::{Framework, StepCtx, StepLosses};
use core_seg::train::{NoObserver, TrainConfig, Trainer};
use core_seg::{Error, Result};
use toy::{tiny_model, toy_batch, ToySemiSource, ToySource};

const SIZE: usize = 32;

fn val_eval(model: &DeepLabV3Plus) -> Result<core_seg::eval::EvalReport> {
    let samples = (1000..1012u64).map(|i| {
        let b = toy_batch(&[i], SIZE, DType::F32, &Device::Cpu)?;
        Ok((b.image, b.mask))
    });
    evaluate(samples, 3, &EvalConfig::default(), &|x: &Tensor| model.forward_t(x, Mode::Eval))
}

fn config(iters: usize, seed: u64) -> TrainConfig {
    TrainConfig {
        iters,
        lr: 0.01,
        lr_multi: 1.0,
        optim: OptimConfig::Adamw { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-4 },
        seed,
        ..Default::default()
    }
}

/// Supervised training learns: loss falls and val mIoU rises well above chance (1/3 of pixels right ≈ 11–20 mIoU).
#[test]
fn supervised_run_learns() -> Result<()> {
    let fw = Box::new(Supervised { criterion: Criterion::Ce });
    let mut t = Trainer::new(&tiny_model(3), config(80, 1), fw, DType::F32, &Device::Cpu)?;
    let before = val_eval(&t.model)?.miou;
    let mut src = ToySource { n_train: 64, batch: 4, size: SIZE, dtype: DType::F32 };
    let mut losses = Vec::new();
    while t.iter < 80 {
        losses.push(t.step(&mut src)?.loss);
    }
    let after = val_eval(&t.model)?;
    let first: f64 = losses[..10].iter().sum::<f64>() / 10.0;
    let last: f64 = losses[70..].iter().sum::<f64>() / 10.0;
    assert!(last < 0.6 * first, "loss did not fall: {first} -> {last}");
    assert!(after.miou > 50.0 && after.miou > before + 20.0, "mIoU {before:.1} -> {:.1}", after.miou);
    Ok(())
}

/// Runs 6 steps straight, and 3 + checkpoint + resume in a fresh trainer + 3; weights, framework state and
/// RNG must be bit-identical, and the resumed trainer's wall-time count continues the checkpoint's.
fn check_resume(method: Method, src: &dyn Fn() -> Box<dyn BatchSource>) -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let semi = SemiConfig { method: method.clone(), conf_thresh: 0.5, ..Default::default() };
    let mk = || {
        let cfg = TrainConfig { optim: OptimConfig::default(), lr: 0.01, ..config(6, 3) };
        Trainer::new(&tiny_model(3), cfg, frameworks::build(&semi)?, DType::F32, &Device::Cpu)
    };
    let mut full = mk()?;
    let mut s = src();
    for _ in 0..6 {
        full.step(s.as_mut())?;
    }
    let mut a = mk()?;
    let mut s = src();
    for _ in 0..3 {
        a.step(s.as_mut())?;
    }
    let ck = dir.path().join("latest.safetensors");
    a.save_checkpoint(&ck)?;
    let secs_a = core_seg::train::load_checkpoint(&ck, &Device::Cpu)?.state.train_secs;
    assert!(secs_a > 0.0 && secs_a <= a.train_secs(), "{method:?}: checkpoint train_secs {secs_a}");
    drop(a);
    let mut b = mk()?;
    b.resume_from(&ck)?;
    assert_eq!(b.iter, 3);
    assert_eq!(b.train_secs(), secs_a, "{method:?}: a resumed trainer starts from the checkpoint's time");
    let mut s = src();
    while b.iter < 6 {
        b.step(s.as_mut())?;
    }
    assert!(b.train_secs() > secs_a);
    let (x, y) = (full.store.named_vars(), b.store.named_vars());
    assert_eq!(x.len(), y.len());
    for ((n1, v1), (n2, v2)) in x.iter().zip(&y) {
        assert_eq!(n1, n2);
        let d = (v1.as_tensor() - v2.as_tensor())?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert_eq!(d, 0.0, "{method:?}: {n1} differs by {d}");
    }
    let (fa, fb) = (full.framework.state_tensors(), b.framework.state_tensors());
    assert_eq!(fa.len(), fb.len());
    for ((n1, t1), (_, t2)) in fa.iter().zip(&fb) {
        let d = (t1 - t2)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert_eq!(d, 0.0, "{method:?}: framework state {n1} differs by {d}");
    }
    assert_eq!(full.rng, b.rng);
    Ok(())
}

#[test]
fn resume_is_bit_identical_for_every_framework() -> Result<()> {
    check_resume(Method::Supervised, &|| Box::new(ToySource { n_train: 16, batch: 2, size: 32, dtype: DType::F32 }))?;
    for m in [Method::Fixmatch, Method::Unimatch, Method::MeanTeacher] {
        check_resume(m, &|| Box::new(ToySemiSource { batch: 2, size: 32 }))?;
    }
    Ok(())
}

/// A framework whose loss becomes NaN at iteration 2.
struct NanAt2(Supervised);
impl Framework for NanAt2 {
    fn name(&self) -> &str {
        "nan"
    }
    fn losses(&mut self, m: &DeepLabV3Plus, b: &TrainBatch, ctx: &mut StepCtx) -> Result<StepLosses> {
        let mut l = self.0.losses(m, b, ctx)?;
        if ctx.iter == 2 {
            l.total = (l.total * f64::NAN)?;
        }
        Ok(l)
    }
}

/// A non-finite loss stops the run with an error and leaves the last checkpoint untouched.
#[test]
fn non_finite_loss_stops_and_keeps_checkpoint() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let fw = Box::new(NanAt2(Supervised { criterion: Criterion::Ce }));
    let cfg = TrainConfig { checkpoint_every: 1, ..config(5, 4) };
    let mut t = Trainer::new(&tiny_model(3), cfg, fw, DType::F32, &Device::Cpu)?;
    t.out_dir = Some(dir.path().to_path_buf());
    let mut src = ToySource { n_train: 8, batch: 2, size: 32, dtype: DType::F32 };
    let err = t.run(&mut src, &mut |m| val_eval(m), &mut NoObserver).err();
    assert!(matches!(err, Some(Error::NonFiniteLoss { iter: 2, .. })), "{err:?}");
    let ck = core_seg::train::load_checkpoint(&dir.path().join("latest.safetensors"), &Device::Cpu)?;
    assert_eq!(ck.state.iter, 2);
    // Parameters are untouched by the failed step (BN running stats did move in its forward, as in PyTorch,
    // but the checkpoint on disk is the one written after iteration 2).
    for (name, v) in t.store.named_vars().into_iter().filter(|(n, _)| !n.contains("running_")) {
        let d = (v.as_tensor() - &ck.model[&name])?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert_eq!(d, 0.0, "{name} changed after the NaN step");
    }
    let _ = src.batch(0)?;
    Ok(())
}
