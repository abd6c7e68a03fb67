//! What a table is built from: each run's finished record (`run.json`, beside its checkpoints), and, for rows
//! whose runs finished before that record was kept, the row as an earlier `results.json` of the recipe has it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{test_split, ResultRow, Results};
use crate::config::RunConfig;
use crate::error::{bail, fs, Context};
use crate::Result;

/// Per-run record written beside each run's checkpoints (lets `--resume` skip finished runs).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct RunRecord {
    pub miou: f64,
    pub per_class: Vec<f64>,
    pub curve: Vec<(usize, f64)>,
    pub losses: Vec<(usize, f64)>,
    /// Training wall time of the run in seconds (steps, evaluations, checkpoints), summed over every process of a
    /// resumed run (0 in records older than this field).
    #[serde(default)]
    pub secs: f64,
    /// Commit of the binary that produced the record (`None` in records older than this field).
    #[serde(default)]
    pub rev: Option<String>,
    /// The selected checkpoint's score on the test split, when the dataset has one.
    #[serde(default)]
    pub test: Option<test_split::TestScore>,
    /// MRF rows: β chosen on validation.
    #[serde(default)]
    pub mrf_beta: Option<f64>,
    /// The `--set` overrides the run was trained with.
    #[serde(default)]
    pub overrides: Vec<String>,
    /// Training device (`cpu`, `cuda`, `cuda:N`; `None` in records older than this field).
    #[serde(default)]
    pub device: Option<String>,
    /// The CPU model and thread count the run trained with (`core_seg::host::describe`; `None` in records older
    /// than this field).
    #[serde(default)]
    pub host: Option<String>,
}

impl RunRecord {
    /// Where the run trained, as the report counts it: "cpu on AMD EPYC, 1 thread"; "cpu" alone, or "not recorded",
    /// for older records.
    pub fn trained_on(&self) -> String {
        match (&self.device, &self.host) {
            (Some(d), Some(h)) => format!("{d} on {h}"),
            (Some(d), None) => d.clone(),
            (None, _) => "not recorded".into(),
        }
    }
}

impl RunRecord {
    /// Reads a finished run's record; an error when it was trained with other `--set` overrides than `overrides`.
    pub fn read(path: &Path, overrides: &[String]) -> Result<Self> {
        let rec = serde_json::from_slice::<Self>(&fs::read(path)?).with_context(|| path.display().to_string())?;
        if rec.overrides != overrides {
            bail!(
                "{}: trained with --set {:?}, this invocation has {:?}; use another --out for a variant",
                path.display(),
                rec.overrides,
                overrides
            );
        }
        Ok(rec)
    }

    /// Evaluates another row's checkpoint with MRF post-processing (β chosen on validation).
    pub fn of_mrf(cfg: &RunConfig, weights: &Path, data_root: Option<&PathBuf>) -> Result<Self> {
        let dev = candle_core::Device::Cpu;
        let model = crate::eval::load_model(cfg, weights, &dev)?;
        let val = crate::datasets::build(cfg, data_root, false)?.val;
        let (beta, r) = crate::eval::evaluate_mrf_tuned(&model, &val, cfg, None, &dev)?;
        eprintln!("MRF β = {beta}: mIoU {:.2}", r.miou);
        Ok(Self {
            miou: r.miou,
            per_class: r.iou,
            curve: Vec::new(),
            losses: Vec::new(),
            secs: 0.0,
            rev: Some(super::report::git_revision()),
            test: None,
            mrf_beta: Some(beta),
            overrides: Vec::new(),
            device: None,
            host: Some(core_seg::host::describe()),
        })
    }
}

/// Rows of an earlier `results.json` of the same recipe (`--carry`): a row with no finished run in this table
/// enters it as that file has it (mean, std, per seed, per class, test), without curves or checkpoints.
pub(super) struct Carried {
    pub path: PathBuf,
    rows: Vec<ResultRow>,
}

impl Carried {
    /// Reads `path`; an error when it is not a results.json of `recipe`.
    pub fn load(path: &Path, recipe: &str) -> Result<Self> {
        let res: Results = serde_json::from_slice(&fs::read(path)?)
            .with_context(|| format!("{}: not a results.json", path.display()))?;
        if res.recipe != recipe {
            bail!("{}: results of recipe `{}`, not `{recipe}`", path.display(), res.recipe);
        }
        Ok(Self { path: path.to_path_buf(), rows: res.rows })
    }

    /// The row named `method`, if the file has it.
    pub fn row(&self, method: &str) -> Option<ResultRow> {
        self.rows.iter().find(|r| r.method == method).cloned()
    }
}
