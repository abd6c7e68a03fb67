//! Training with a one-thread global rayon pool (the runs of `reproduce --jobs N`): [`Trainer::step`] moves the
//! step onto the pool's worker. It must neither deadlock against a data source that itself waits for the same
//! pool (a prefetching loader thread) nor change a single bit of the result.
//!
//! Its own test binary: the global pool is sized once per process, before anything uses it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use candle_core::{DType, Device};
use core_seg::batch::{BatchSource, TrainBatch};
use core_seg::frameworks::{self, Method, SemiConfig};
use core_seg::model::DeepLabV3Plus;
use core_seg::plugin::{Framework, StepCtx, StepLosses};
use core_seg::testing::{tiny_model, ToySemiSource};
use core_seg::train::{TrainConfig, Trainer};
use core_seg::Result;
use rayon::prelude::*;

/// Serves the toy batches only after another thread has run a parallel job on the global pool (as the
/// loader's augmentation does on its prefetch thread).
struct PoolWaitingSource {
    inner: ToySemiSource,
}

impl BatchSource for PoolWaitingSource {
    fn batch(&mut self, iter: usize) -> Result<TrainBatch> {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let s: u64 = (0..1000u64).into_par_iter().map(|i| i * i).sum();
            let _ = tx.send(s);
        });
        let s = rx.recv().map_err(|e| core_seg::Error::Config(format!("loader thread: {e}")))?;
        assert_eq!(s, 332_833_500);
        self.inner.batch(iter)
    }
}

/// UniMatch, counting the steps it computed on a worker of the rayon pool.
struct Counting {
    inner: Box<dyn Framework>,
    on_pool: Arc<AtomicUsize>,
}

impl Framework for Counting {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn losses(&mut self, model: &DeepLabV3Plus, batch: &TrainBatch, ctx: &mut StepCtx) -> Result<StepLosses> {
        if rayon::current_thread_index().is_some() {
            self.on_pool.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.losses(model, batch, ctx)
    }
}

fn trainer(on_pool: &Arc<AtomicUsize>) -> Result<Trainer> {
    let inner = frameworks::build(&SemiConfig { method: Method::Unimatch, conf_thresh: 0.0, ..Default::default() })?;
    let fw = Box::new(Counting { inner, on_pool: on_pool.clone() });
    let cfg = TrainConfig { iters: 3, lr: 0.01, seed: 5, ..Default::default() };
    Trainer::new(&tiny_model(3), cfg, fw, DType::F32, &Device::Cpu)
}

#[test]
fn one_thread_steps_run_on_the_pool_and_equal_steps_on_the_caller() -> Result<()> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build_global()
        .map_err(|e| core_seg::Error::Config(e.to_string()))?;
    assert_eq!(rayon::current_num_threads(), 1);
    let toy = || ToySemiSource { batch: 2, size: 32 };
    // Through `step` (on the pool's worker), fed by a source that needs the pool itself.
    let (on_pool_a, on_pool_b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut a = trainer(&on_pool_a)?;
    let mut src = PoolWaitingSource { inner: toy() };
    let losses_a: Vec<f64> = (0..3).map(|_| a.step(&mut src).map(|r| r.loss)).collect::<Result<_>>()?;
    // Through `step_on` on this (outside) thread, the same batches.
    let mut b = trainer(&on_pool_b)?;
    let mut src = toy();
    let mut losses_b = Vec::new();
    for it in 0..3 {
        losses_b.push(b.step_on(&src.batch(it)?)?.loss);
    }
    assert_eq!((on_pool_a.load(Ordering::SeqCst), on_pool_b.load(Ordering::SeqCst)), (3, 0));
    assert_eq!(losses_a, losses_b);
    assert!(losses_a.iter().all(|l| l.is_finite() && *l > 0.0), "{losses_a:?}");
    for ((name, va), (_, vb)) in a.store.named_vars().into_iter().zip(b.store.named_vars()) {
        let d = (va.as_tensor() - vb.as_tensor())?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert_eq!(d, 0.0, "{name} differs by {d}");
    }
    Ok(())
}
