//! What a training run shows and writes: an `indicatif` bar (iteration, loss terms, mask ratio, lr, ETA),
//! `tracing` lines, and scalars to `metrics.csv` and TensorBoard event files in the run directory.

use std::path::Path;

use core_seg::eval::EvalReport;
use core_seg::logging::{CsvLogger, TensorBoardWriter};
use core_seg::train::{Observer, StepRecord};
use indicatif::{ProgressBar, ProgressStyle};

/// Progress bar + CSV + TensorBoard observer.
pub struct RunObserver {
    bar: ProgressBar,
    csv: CsvLogger,
    tb: TensorBoardWriter,
    class_names: Vec<String>,
    log_every: usize,
    /// (iter, loss) per step and (iter, mIoU) per evaluation, for reports and curves.
    pub losses: Vec<(usize, Vec<(String, f64)>)>,
    pub evals: Vec<(usize, f64)>,
    pub failed: Option<String>,
}

impl RunObserver {
    pub fn new(dir: &Path, total: usize, start: usize, class_names: Vec<String>, quiet: bool) -> crate::Result<Self> {
        crate::error::fs::create_dir_all(dir)?;
        let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(total as u64) };
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}<{eta_precise}] {bar:30} {pos}/{len} {msg}")
                .map_err(|e| crate::Error::Invalid(format!("progress bar template: {e}")))?
                .progress_chars("=> "),
        );
        bar.set_position(start as u64);
        // A resumed run's logs continue from its checkpoint: no iteration is logged twice.
        let csv = CsvLogger::create(&dir.join("metrics.csv"), start)?;
        if csv.dropped_rows() > 0 {
            tracing::info!("metrics.csv: dropped {} rows past iteration {start}", csv.dropped_rows());
        }
        let tb = TensorBoardWriter::create(&dir.join("tb"), start as u64)?;
        let log_every = (total / 8).max(1);
        // A resumed run's curves start with what the log kept, so reports show the whole run.
        let (mut losses, mut evals) = (Vec::<(usize, Vec<(String, f64)>)>::new(), Vec::new());
        for (it, name, v) in csv.kept_rows() {
            if name == "eval/mIoU" {
                evals.push((*it, *v));
            } else if name.starts_with("train/") {
                match losses.last_mut() {
                    Some((i, scalars)) if i == it => scalars.push((name.clone(), *v)),
                    _ => losses.push((*it, vec![(name.clone(), *v)])),
                }
            }
        }
        Ok(Self { bar, csv, tb, class_names, log_every, losses, evals, failed: None })
    }

    fn try_step(&mut self, rec: &StepRecord) -> core_seg::Result<()> {
        let it = rec.iter + 1;
        let mut scalars = vec![("train/loss_all".to_string(), rec.loss), ("train/lr".to_string(), rec.lr)];
        scalars.extend(rec.terms.iter().map(|(n, v)| (format!("train/{n}"), *v)));
        scalars.extend(rec.stats.iter().map(|(n, v)| (format!("train/{n}"), *v)));
        for (name, v) in &scalars {
            self.csv.log(it, name, *v)?;
            self.tb.scalar(name, *v as f32, it as u64)?;
        }
        let msg: Vec<String> =
            scalars.iter().map(|(n, v)| format!("{}={v:.4}", n.trim_start_matches("train/"))).collect();
        self.bar.set_message(msg.join(" "));
        self.bar.set_position(it as u64);
        if it.is_multiple_of(self.log_every) {
            self.bar.suspend(|| tracing::info!(iter = it, "{}", msg.join(" ")));
            self.csv.flush()?;
            self.tb.flush()?;
        }
        self.losses.push((it, scalars));
        Ok(())
    }

    fn try_eval(&mut self, iter: usize, r: &EvalReport) -> core_seg::Result<()> {
        self.csv.log(iter, "eval/mIoU", r.miou)?;
        self.tb.scalar("eval/mIoU", r.miou as f32, iter as u64)?;
        for (c, v) in r.iou.iter().enumerate() {
            let name = self.class_names.get(c).cloned().unwrap_or_else(|| format!("class{c}"));
            self.csv.log(iter, &format!("eval/{name}_IoU"), *v)?;
            self.tb.scalar(&format!("eval/{name}_IoU"), *v as f32, iter as u64)?;
        }
        self.csv.flush()?;
        self.tb.flush()?;
        self.evals.push((iter, r.miou));
        self.bar.suspend(|| tracing::info!(iter, miou = format!("{:.2}", r.miou), "evaluation"));
        Ok(())
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Observer for RunObserver {
    fn on_step(&mut self, rec: &StepRecord, _total: usize) {
        if let Err(e) = self.try_step(rec) {
            self.failed.get_or_insert(e.to_string());
        }
    }

    fn on_eval(&mut self, iter: usize, report: &EvalReport) {
        if let Err(e) = self.try_eval(iter, report) {
            self.failed.get_or_insert(e.to_string());
        }
    }

    fn on_checkpoint(&mut self, _iter: usize) {
        if let Err(e) = self.csv.flush().and_then(|_| self.tb.flush()) {
            self.failed.get_or_insert(e.to_string());
        }
    }
}

/// Per-class IoU table, one line per class.
pub fn iou_table(report: &EvalReport, class_names: &[String]) -> String {
    let mut s = format!("{:<16} {:>7}\n", "class", "IoU %");
    for (c, v) in report.iou.iter().enumerate() {
        let name = class_names.get(c).cloned().unwrap_or_else(|| format!("class{c}"));
        s.push_str(&format!("{name:<16} {v:>7.2}\n"));
    }
    s.push_str(&format!("{:<16} {:>7.2}\n", "mIoU", report.miou));
    s
}
