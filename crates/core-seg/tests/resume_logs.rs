//! Resume hygiene: a run killed after a checkpoint and resumed logs every iteration exactly once (CSV and the
//! TensorBoard view of the run directory); a corrupt `latest` checkpoint falls back to `previous` with a warning.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use core_seg::batch::{BatchSource, TrainBatch};
use core_seg::eval::{evaluate, EvalConfig, EvalReport};
use core_seg::frameworks::{Criterion, Supervised};
use core_seg::logging::{read_tensorboard_run, CsvLogger, TensorBoardWriter};
use core_seg::model::DeepLabV3Plus;
use core_seg::nn::Mode;
use core_seg::optim::OptimConfig;
use core_seg::testing::{tiny_model, toy_batch, ToySource};
use core_seg::train::{load_checkpoint, Observer, StepRecord, TrainConfig, Trainer};
use core_seg::{Error, Result};

const SIZE: usize = 32;

fn val_eval(model: &DeepLabV3Plus) -> Result<EvalReport> {
    let samples = (1000..1004u64).map(|i| {
        let b = toy_batch(&[i], SIZE, DType::F32, &Device::Cpu)?;
        Ok((b.image, b.mask))
    });
    evaluate(samples, 3, &EvalConfig::default(), &|x: &Tensor| model.forward_t(x, Mode::Eval))
}

fn trainer(iters: usize, checkpoint_every: usize, dir: &Path) -> Result<Trainer> {
    let cfg = TrainConfig {
        iters,
        lr: 0.01,
        lr_multi: 1.0,
        optim: OptimConfig::Adamw { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-4 },
        checkpoint_every,
        seed: 7,
        ..Default::default()
    };
    let fw = Box::new(Supervised { criterion: Criterion::Ce });
    let mut t = Trainer::new(&tiny_model(3), cfg, fw, DType::F32, &Device::Cpu)?;
    t.out_dir = Some(dir.to_path_buf());
    Ok(t)
}

fn source() -> ToySource {
    ToySource { n_train: 16, batch: 2, size: SIZE, dtype: DType::F32 }
}

/// A data source that stops the run (as a kill would) when iteration `at` (0-based) asks for its batch.
struct KilledAt(ToySource, usize);
impl BatchSource for KilledAt {
    fn batch(&mut self, iter: usize) -> Result<TrainBatch> {
        if iter == self.1 {
            return Err(Error::InvalidArgument(format!("killed before iteration {}", iter + 1)));
        }
        self.0.batch(iter)
    }
}

/// Logs like the command line's run observer: per step `train/loss_all` (1-based iteration) to CSV and
/// TensorBoard, evaluations as `eval/mIoU`, flushing before every checkpoint.
struct Logs {
    csv: CsvLogger,
    tb: TensorBoardWriter,
}
impl Logs {
    fn open(dir: &Path, start: usize) -> Result<Self> {
        Ok(Self {
            csv: CsvLogger::create(&dir.join("metrics.csv"), start)?,
            tb: TensorBoardWriter::create(&dir.join("tb"), start as u64)?,
        })
    }
}
impl Observer for Logs {
    fn on_step(&mut self, rec: &StepRecord, _total: usize) {
        let it = rec.iter + 1;
        self.csv.log(it, "train/loss_all", rec.loss).expect("csv row");
        self.tb.scalar("train/loss_all", rec.loss as f32, it as u64).expect("event");
    }
    fn on_eval(&mut self, iter: usize, r: &EvalReport) {
        self.csv.log(iter, "eval/mIoU", r.miou).expect("csv row");
        self.tb.scalar("eval/mIoU", r.miou as f32, iter as u64).expect("event");
    }
    fn on_checkpoint(&mut self, _iter: usize) {
        self.csv.flush().expect("csv flush");
        self.tb.flush().expect("event flush");
    }
}

/// `(iter, name) → value` rows of `metrics.csv`, failing on a duplicated pair.
fn csv_rows(path: &Path) -> Result<BTreeMap<(usize, String), f64>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("iter,name,value"));
    let mut rows = BTreeMap::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 3, "bad row {line:?}");
        let key = (f[0].parse::<usize>().expect("iteration"), f[1].to_string());
        let dup = rows.insert(key.clone(), f[2].parse::<f64>().expect("value"));
        assert!(dup.is_none(), "{key:?} logged twice");
    }
    Ok(rows)
}

/// A run killed two iterations after its checkpoint at iteration 3 (rows 4 and 5 logged, plus a torn row),
/// then resumed with the same logs: `metrics.csv` and the TensorBoard view hold iterations 1..=8 once each.
#[test]
fn killed_and_resumed_run_logs_every_iteration_once() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let (iters, every) = (8, 3);
    let mut killed = trainer(iters, every, dir.path())?;
    let mut logs = Logs::open(dir.path(), 0)?;
    let err = killed.run(&mut KilledAt(source(), 5), &mut |m| val_eval(m), &mut logs).err();
    assert!(matches!(err, Some(Error::InvalidArgument(_))), "{err:?}");
    drop(logs);
    let csv = dir.path().join("metrics.csv");
    let before = csv_rows(&csv)?;
    assert_eq!(before.keys().map(|k| k.0).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5], "the killed run's rows");
    // A kill in the middle of a write leaves a torn last row.
    let mut text = std::fs::read_to_string(&csv).map_err(|e| Error::io(&csv, e))?;
    text.push_str("6,train/loss");
    std::fs::write(&csv, text).map_err(|e| Error::io(&csv, e))?;

    let mut resumed = trainer(iters, every, dir.path())?;
    let r = resumed.resume_latest(dir.path())?.expect("a checkpoint");
    assert_eq!((r.iter, r.warning.as_deref()), (3, None));
    let mut logs = Logs::open(dir.path(), r.iter)?;
    assert_eq!(logs.csv.dropped_rows(), 3, "rows 4, 5 and the torn row");
    let kept: Vec<usize> = logs.csv.kept_rows().iter().map(|r| r.0).collect();
    assert_eq!(kept, vec![1, 2, 3], "the rows up to the checkpoint, readable for curves");
    resumed.run(&mut source(), &mut |m| val_eval(m), &mut logs)?;
    drop(logs);

    let after = csv_rows(&csv)?;
    let train: Vec<usize> = after.keys().filter(|k| k.1 == "train/loss_all").map(|k| k.0).collect();
    assert_eq!(train, (1..=iters).collect::<Vec<_>>());
    let evals: Vec<usize> = after.keys().filter(|k| k.1 == "eval/mIoU").map(|k| k.0).collect();
    assert_eq!(evals, vec![iters]);
    for it in 1..=3 {
        let k = (it, "train/loss_all".to_string());
        assert_eq!(after[&k], before[&k], "row {it} kept from the first run");
    }

    // TensorBoard: two event files; the second one's start marker hides the first one's steps 4 and 5.
    let tb = dir.path().join("tb");
    let files = std::fs::read_dir(&tb).map_err(|e| Error::io(&tb, e))?.count();
    assert_eq!(files, 2);
    let seen = read_tensorboard_run(&tb)?;
    let mut steps: Vec<u64> = seen.iter().filter(|s| s.0 == "train/loss_all").map(|s| s.1).collect();
    steps.sort();
    assert_eq!(steps, (1..=iters as u64).collect::<Vec<_>>());
    for (tag, step, v) in &seen {
        let row = after[&(*step as usize, tag.clone())];
        assert_eq!(*v, row as f32, "{tag} at {step}: event and CSV row differ");
    }
    Ok(())
}

/// Checkpoints every 2 iterations keep `latest` (iteration 6) and `previous` (4). With `latest` truncated,
/// resume takes `previous` and warns, naming the file; continuing to 6 reproduces the uninterrupted weights
/// and replaces the bad `latest` without rotating it over the good `previous`.
#[test]
fn corrupt_latest_falls_back_to_previous() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let mut full = trainer(6, 2, dir.path())?;
    full.run(&mut source(), &mut |m| val_eval(m), &mut core_seg::train::NoObserver)?;
    let (latest, previous) = (dir.path().join("latest.safetensors"), dir.path().join("previous.safetensors"));
    assert_eq!(load_checkpoint(&latest, &Device::Cpu)?.state.iter, 6);
    assert_eq!(load_checkpoint(&previous, &Device::Cpu)?.state.iter, 4);

    // A flipped data byte is caught by the checksum; a truncated file by the safetensors header.
    let good = std::fs::read(&latest).map_err(|e| Error::io(&latest, e))?;
    let mut flipped = good.clone();
    let n = flipped.len();
    flipped[n - 3] ^= 0x10;
    std::fs::write(&latest, &flipped).map_err(|e| Error::io(&latest, e))?;
    let err = load_checkpoint(&latest, &Device::Cpu).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("CRC32C") && err.contains("latest.safetensors"), "{err}");
    std::fs::write(&latest, &good[..good.len() / 2]).map_err(|e| Error::io(&latest, e))?;

    let mut t = trainer(6, 2, dir.path())?;
    let r = t.resume_latest(dir.path())?.expect("a checkpoint");
    assert_eq!((r.iter, t.iter, r.path.clone()), (4, 4, previous.clone()));
    let warning = r.warning.unwrap_or_default();
    assert!(warning.contains("latest.safetensors") && warning.contains("previous.safetensors"), "{warning}");
    assert!(warning.contains("truncated or corrupt"), "{warning}");
    t.run(&mut source(), &mut |m| val_eval(m), &mut core_seg::train::NoObserver)?;
    for ((name, a), (_, b)) in full.store.named_vars().iter().zip(t.store.named_vars().iter()) {
        let d = (a.as_tensor() - b.as_tensor())?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert_eq!(d, 0.0, "{name} differs from the uninterrupted run by {d}");
    }
    assert_eq!(load_checkpoint(&latest, &Device::Cpu)?.state.iter, 6);
    assert_eq!(load_checkpoint(&previous, &Device::Cpu)?.state.iter, 4, "previous kept");

    // Without `previous`, a bad `latest` is an error naming it; an empty directory has nothing to resume.
    std::fs::write(&latest, &good[..100]).map_err(|e| Error::io(&latest, e))?;
    std::fs::remove_file(&previous).map_err(|e| Error::io(&previous, e))?;
    let err = trainer(6, 2, dir.path())?.resume_latest(dir.path()).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("latest.safetensors"), "{err}");
    let empty = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    assert!(trainer(6, 2, empty.path())?.resume_latest(empty.path())?.is_none());
    Ok(())
}
