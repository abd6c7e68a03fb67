//! Results (`results.json`), the text table, the regression check, and `report.md`.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Result;

use super::recipes::Recipe;

/// One method's mIoU over seeds (percent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRow {
    pub method: String,
    pub miou_mean: f64,
    pub miou_std: f64,
    pub seeds: Vec<u64>,
    pub miou: Vec<f64>,
    /// Mean per-class IoU over seeds, with class names.
    #[serde(default)]
    pub per_class: Vec<(String, f64)>,
    /// The same runs on the test split (checkpoints chosen on validation), when the dataset has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<super::test_split::TestStats>,
}

/// `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub recipe: String,
    pub rows: Vec<ResultRow>,
}

/// Sample standard deviation (n − 1); 0 for one value.
pub fn std_dev(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return 0.0;
    }
    let m = xs.iter().sum::<f64>() / xs.len() as f64;
    (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
}

impl ResultRow {
    pub fn from_runs(method: &str, runs: &[(u64, f64, Vec<f64>)], class_names: Vec<String>) -> Self {
        let miou: Vec<f64> = runs.iter().map(|r| r.1).collect();
        let n = runs.len().max(1) as f64;
        let k = runs.first().map(|r| r.2.len()).unwrap_or(0);
        let per_class = (0..k)
            .map(|c| {
                let name = class_names.get(c).cloned().unwrap_or_else(|| format!("class{c}"));
                (name, runs.iter().map(|r| r.2.get(c).copied().unwrap_or(0.0)).sum::<f64>() / n)
            })
            .collect();
        Self {
            method: method.to_string(),
            miou_mean: miou.iter().sum::<f64>() / n,
            miou_std: std_dev(&miou),
            seeds: runs.iter().map(|r| r.0).collect(),
            miou,
            per_class,
            test: None,
        }
    }
}

/// `mean ± std`, or the mean alone for a single seed (no spread to show).
fn mean_std(mean: f64, std: f64, n: usize) -> String {
    match n {
        0 | 1 => format!("{mean:.2}"),
        _ => format!("{mean:.2} ± {std:.2}"),
    }
}

/// The seed column: the count, and which seeds when they are not the first ones (`2 (seeds 1, 2)`).
fn seeds_cell(seeds: &[u64]) -> String {
    match seeds.iter().enumerate().all(|(i, &s)| s == i as u64) {
        true => seeds.len().to_string(),
        false => {
            let ids: Vec<String> = seeds.iter().map(u64::to_string).collect();
            format!("{} (seeds {})", seeds.len(), ids.join(", "))
        }
    }
}

impl Results {
    /// The results table as Markdown.
    pub fn table(&self) -> String {
        if self.rows.iter().any(|r| r.test.is_some()) {
            return self.table_with_test();
        }
        let mut s = String::from("| method | mIoU % (mean ± std) | seeds | per seed |\n|---|---|---|---|\n");
        for r in &self.rows {
            let per: Vec<String> = r.miou.iter().map(|v| format!("{v:.2}")).collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                r.method,
                mean_std(r.miou_mean, r.miou_std, r.miou.len()),
                seeds_cell(&r.seeds),
                per.join(" / ")
            );
        }
        s
    }
}

impl Results {
    /// The table with test-split numbers: validation (where every choice is made) beside test.
    fn table_with_test(&self) -> String {
        let mut s = String::from(
            "| method | test mIoU % (mean ± std) | per seed (test) | val mIoU % (mean ± std) | seeds |\n|---|---|---|---|---|\n",
        );
        for r in &self.rows {
            let (test, per) = match &r.test {
                Some(t) => (
                    mean_std(t.miou_mean, t.miou_std, t.miou.len()),
                    t.miou.iter().map(|v| format!("{v:.2}")).collect::<Vec<_>>().join(" / "),
                ),
                None => ("–".into(), "–".into()),
            };
            let _ = writeln!(
                s,
                "| {} | {test} | {per} | {} | {} |",
                r.method,
                mean_std(r.miou_mean, r.miou_std, r.miou.len()),
                seeds_cell(&r.seeds)
            );
        }
        s
    }
}

/// Methods whose mean mIoU is more than `tol` points below the baseline's (missing methods count too).
pub fn check_against(ours: &Results, baseline: &Results, tol: f64) -> Vec<String> {
    let mut problems = Vec::new();
    for b in &baseline.rows {
        match ours.rows.iter().find(|r| r.method == b.method) {
            None => problems.push(format!("{}: missing from this run", b.method)),
            Some(r) if r.miou_mean < b.miou_mean - tol => {
                problems.push(format!("{}: {:.2} < baseline {:.2} − {tol:.1}", b.method, r.miou_mean, b.miou_mean))
            }
            Some(_) => {}
        }
    }
    problems
}

/// The commit this binary was built from (see `build.rs`).
pub fn git_revision() -> String {
    env!("SEMISEG_BUILD_REV").to_string()
}

/// Time spent: this invocation's wall time, and the training wall time summed over every run in the table
/// (they differ when `--resume` reuses runs finished earlier, or runs were trained by parallel invocations).
pub struct Timing {
    pub invocation_s: f64,
    pub runs_s: f64,
    /// Runs per commit of the binary that trained them (`unrecorded` for records older than that field).
    pub revisions: std::collections::BTreeMap<String, usize>,
    /// Trained runs per device and host ([`super::record::RunRecord::trained_on`]).
    pub devices: std::collections::BTreeMap<String, usize>,
    /// Rows with neither a checkpoint nor saved grid predictions here (left out of the qualitative grid).
    pub no_checkpoint: Vec<String>,
    /// Where each grid column came from, in column order ("ROW seed N", "(saved)" when not predicted here).
    pub grid_sources: Vec<String>,
    /// `--carry`: the earlier results.json and the rows taken from it.
    pub carried: Option<(std::path::PathBuf, Vec<String>)>,
}

type Curves = [(String, Vec<(Vec<(usize, f64)>, Vec<(usize, f64)>)>)];

/// Writes `report.md` (table, per-class IoU, references, design notes, configs, revision) and the PNGs.
pub fn write(
    dir: &Path,
    recipe: &Recipe,
    res: &Results,
    configs: &[(String, String)],
    curves: &Curves,
    time: &Timing,
    sections: &[String],
) -> Result<()> {
    let mut s = format!("# {} — {}\n\n", recipe.name, recipe.description);
    let trained: Vec<String> = time.revisions.iter().map(|(rev, n)| format!("`{rev}` ({n})")).collect();
    let devices: Vec<String> = time.devices.iter().map(|(d, n)| format!("{d} ({n})")).collect();
    let _ = writeln!(
        s,
        "Dataset: {}. Runs trained by binaries built from {}; devices: {}; report written by `{}`. Wall time \
         {:.1} min (this invocation); training time summed over runs {:.1} min.\n",
        recipe.dataset,
        trained.join(", "),
        devices.join(", "),
        git_revision(),
        time.invocation_s / 60.0,
        time.runs_s / 60.0
    );
    if let Some((path, rows)) = time.carried.as_ref().filter(|(_, rows)| !rows.is_empty()) {
        let _ = writeln!(
            s,
            "Rows carried unchanged from `{}` (their runs finished before per-run records were kept: not counted \
             above, no learning curves, no checkpoints; their configuration below is this build's recipe): {}.\n",
            path.display(),
            rows.join(", ")
        );
    }
    if res.rows.iter().any(|r| r.test.is_some()) {
        s.push_str(
            "## Results (mIoU, %)\n\nTest: the checkpoint with the best validation mIoU, evaluated once on the test \
             images. Validation: that best evaluation (where every choice is made).\n\n",
        );
    } else {
        s.push_str("## Results (best-evaluation mIoU, %)\n\n");
    }
    s.push_str(&res.table());
    let not_run: Vec<&str> =
        recipe.rows.iter().map(|r| r.method).filter(|m| !res.rows.iter().any(|r| r.method == *m)).collect();
    if !not_run.is_empty() {
        let _ = writeln!(s, "\nRows of this recipe without a finished run in this table: {}.", not_run.join(", "));
    }
    if !recipe.reference.is_empty() {
        let _ = writeln!(
            s,
            "\n## Reference numbers ({})\n\n| method | paper mIoU % | ours |\n|---|---|---|",
            recipe.reference_source
        );
        for (m, v) in recipe.reference {
            let ours =
                res.rows.iter().find(|r| r.method == *m).map(|r| format!("{:.2}", r.miou_mean)).unwrap_or("-".into());
            let _ = writeln!(s, "| {m} | {v:.1} | {ours} |");
        }
    }
    if let Some(first) = res.rows.first() {
        s.push_str("\n## Per-class IoU on validation (mean over seeds, %)\n\n| class |");
        for r in &res.rows {
            let _ = write!(s, " {} |", r.method);
        }
        s.push_str("\n|---|");
        s.push_str(&"---|".repeat(res.rows.len()));
        s.push('\n');
        for (c, (name, _)) in first.per_class.iter().enumerate() {
            let _ = write!(s, "| {name} |");
            for r in &res.rows {
                let _ = write!(s, " {:.2} |", r.per_class.get(c).map(|x| x.1).unwrap_or(0.0));
            }
            s.push('\n');
        }
    }
    sections.iter().for_each(|sec| s.push_str(sec));
    crate::plots::learning_curves(&dir.join("curves.png"), curves)?;
    s.push_str("\n## Learning curves\n\n![loss and mIoU vs iteration](curves.png)\n");
    s.push_str(
        "\n## Qualitative results\n\nColumns, named above them: image, ground truth, then each row's prediction \
         (its lowest seed with a checkpoint, or with the predictions a report saved beside that run's record), \
         in table order",
    );
    if !time.grid_sources.is_empty() {
        let _ = write!(s, ": {}", time.grid_sources.join(", "));
    }
    s.push('.');
    if !time.no_checkpoint.is_empty() {
        let _ = write!(
            s,
            " Not shown (neither a checkpoint nor saved predictions on the machine that wrote this report): {}.",
            time.no_checkpoint.join(", ")
        );
    }
    s.push_str("\n\n![qualitative grid](qualitative.png)\n");
    s.push_str(
        "\n## Settings that are this project's [design] choices\n\n\
         - All randomness from one seeded xoshiro256++ stream (the official code has no seed control).\n\
         - Gaussian blur of the strong views is an exact separable Gaussian (the official code uses PIL's approximation).\n",
    );
    if recipe.dataset.starts_with("synthetic") {
        s.push_str(
            "- The synthetic dataset, the CPU-sized model (ResNet-18 deep stem, reduced widths) and its AdamW schedule \
             are ours; they are not comparable to the paper tables.\n\
             - Synthetic recipes: strong-view blur σ ∈ [0.1, 0.4] (UniMatch's [0.1, 2.0] for 321-px crops, scaled to \
             64 px) and τ = 0.8 (UniMatch sets τ per dataset), both chosen on seed 0 (`configs/synthetic.toml`).\n",
        );
    } else if super::recipes_real::all().iter().any(|r| r.name == recipe.name) {
        s.push_str(super::design::REAL_PHOTO_DESIGN);
    }
    s.push_str(&super::design::method_design(configs));
    s.push_str("\n## Exact configuration (seed 0 of each row)\n");
    for (m, c) in configs {
        let _ = write!(s, "\n### {m}\n\n```toml\n{c}```\n");
    }
    crate::error::fs::write_atomic(&dir.join("report.md"), s)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(m: &str, v: &[f64]) -> ResultRow {
        let runs: Vec<(u64, f64, Vec<f64>)> =
            v.iter().enumerate().map(|(i, &x)| (i as u64, x, vec![x, 100.0 - x])).collect();
        ResultRow::from_runs(m, &runs, vec!["bg".into(), "fg".into()])
    }

    #[test]
    fn mean_std_and_per_class() {
        let r = row("unimatch", &[60.0, 62.0, 64.0]);
        assert!((r.miou_mean - 62.0).abs() < 1e-12 && (r.miou_std - 2.0).abs() < 1e-12);
        assert_eq!(r.per_class[1], ("fg".to_string(), 38.0));
        let json = serde_json::to_value(Results { recipe: "quick".into(), rows: vec![r] }).expect("json");
        assert_eq!(json["rows"][0]["miou"][2], 64.0);
        assert_eq!(json["rows"][0]["seeds"][1], 1);
    }

    /// With test scores the table leads with test (mean ± std and per seed) and keeps validation beside it; a row
    /// whose runs lack a test score shows a dash instead of a number; a single seed shows no ± (it has no spread).
    #[test]
    fn table_with_test_scores() {
        use super::super::test_split::{TestScore, TestStats};
        let score = |m| TestScore { miou: m, per_class: vec![m], checkpoint: "best.safetensors".into() };
        let (a, b) = (score(40.0), score(44.0));
        let mut with = row("unimatch", &[60.0, 62.0]);
        with.test = TestStats::of(&[Some(&a), Some(&b)]);
        assert_eq!(TestStats::of(&[Some(&a), None]), None);
        let t = Results { recipe: "camvid".into(), rows: vec![with, row("supervised", &[50.0])] }.table();
        assert!(t.contains("| unimatch | 42.00 ± 2.83 | 40.00 / 44.00 | 61.00 ± 1.41 | 2 |"), "{t}");
        assert!(t.contains("| supervised | – | – | 50.00 | 1 |"), "{t}");
        let mut later = row("fixmatch", &[50.0, 52.0]);
        later.seeds = vec![1, 2];
        let t = Results { recipe: "camvid".into(), rows: vec![later] }.table();
        assert!(t.contains("| fixmatch | 51.00 ± 1.41 | 2 (seeds 1, 2) | 50.00 / 52.00 |"), "{t}");
        let one = Results { recipe: "q".into(), rows: vec![row("x", &[1.0])] }.table();
        assert!(one.contains("| x | 1.00 | 1 | 1.00 |"), "{one}");
        assert!(
            row("x", &[1.0]).test.is_none()
                && !Results { recipe: "q".into(), rows: vec![row("x", &[1.0])] }.table().contains("test")
        );
    }

    #[test]
    fn check_flags_regressions_beyond_tolerance_and_missing_rows() {
        let base = Results { recipe: "quick".into(), rows: vec![row("supervised", &[50.0]), row("unimatch", &[60.0])] };
        let ok = Results { recipe: "quick".into(), rows: vec![row("supervised", &[48.5]), row("unimatch", &[61.0])] };
        assert!(check_against(&ok, &base, 2.0).is_empty());
        let bad = Results { recipe: "quick".into(), rows: vec![row("supervised", &[47.0])] };
        let p = check_against(&bad, &base, 2.0);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].starts_with("supervised") && p[1].contains("missing"));
    }
}
