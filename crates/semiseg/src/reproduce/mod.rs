//! The reproduce engine (`cargo xtask list`, `cargo xtask reproduce <recipe>`): rows × seeds of training runs from one recipe,
//! a results table (mean ± std), `results.json`, `report.md`, and a regression check against a baseline.

mod design;
mod diagnostics;
mod grid;
pub mod jobs;
pub(crate) mod merge;
pub mod recipes;
mod recipes_paper;
pub(crate) mod recipes_real;
mod record;
pub mod references;
pub mod report;
pub mod test_split;

use std::path::PathBuf;

use crate::error::{bail, fs, Context};
use crate::Result;
use data::DatasetKind;

use crate::config::RunConfig;
use crate::train::{Runner, TrainOptions};
use grid::Grid;
use record::{Carried, RunRecord};
pub use report::{check_against, ResultRow, Results};

#[derive(Debug, Clone)]
pub struct ReproduceOptions {
    /// Recipe name (`cargo xtask list`).
    pub recipe: String,
    /// Dataset root for VOC/Cityscapes recipes (else $SEMISEG_DATA).
    pub data_root: Option<PathBuf>,
    pub out: PathBuf,
    /// Number of seeds (default: the recipe's).
    pub seeds: Option<usize>,
    /// Reuse finished runs and continue interrupted ones.
    pub resume: bool,
    /// Backbone weights to start every run from (UniMatch deep-stem, timm or torchvision names).
    pub pretrained: Option<PathBuf>,
    /// Exit non-zero if any method's mean mIoU falls more than --tolerance points below this results.json.
    pub check: Option<PathBuf>,
    pub tolerance: f64,
    pub quiet: bool,
    /// Run only these rows (comma-separated row names; an unknown name lists them); the report lists the rest
    /// as not run.
    pub rows: Option<String>,
    /// Train only these seeds (comma-separated, each below the seed count), e.g. to split a recipe over cores or
    /// machines sharing `--out`. Seeds not listed enter the table only when a finished run exists (`--resume`).
    pub only_seeds: Option<Vec<u64>>,
    /// Override every run's iteration budget (the recipe's otherwise).
    pub iters: Option<usize>,
    /// Training device: cpu, cuda or cuda:N (cuda needs a `--features cuda` build).
    pub device: String,
    /// `KEY=VALUE` config overrides applied to every run after the recipe's own settings (e.g.
    /// `model.aspp_channels=256`), for a variant of a recipe in its own `--out`.
    pub set: Vec<String>,
    /// Runs trained at once, each in its own process with an equal share of the compute threads ([`jobs`]).
    pub jobs: usize,
    /// Train nothing: build the table and report from the finished runs in `out` (and `carry`) alone.
    pub no_train: bool,
    /// An earlier `results.json` of the recipe: rows with no finished run here enter the table as it has them.
    pub carry: Option<PathBuf>,
    /// Write each run's `latest.safetensors` every N iterations besides its evaluations (`train.checkpoint_every`):
    /// a killed run loses at most N iterations. Not a training setting: it is neither an override nor checked on
    /// `--resume`.
    pub checkpoint_every: Option<usize>,
}

impl ReproduceOptions {
    /// Defaults of everything but the recipe (as `cargo xtask reproduce RECIPE`).
    pub fn new(recipe: &str) -> Self {
        Self {
            recipe: recipe.to_string(),
            data_root: None,
            out: PathBuf::from("runs/reproduce"),
            seeds: None,
            resume: false,
            pretrained: None,
            check: None,
            tolerance: 3.0,
            quiet: false,
            rows: None,
            only_seeds: None,
            iters: None,
            device: "cpu".into(),
            set: Vec::new(),
            jobs: 1,
            no_train: false,
            carry: None,
            checkpoint_every: None,
        }
    }
}

/// The recipe list: name, dataset, expected time, description, one line each.
pub fn list() -> String {
    let mut s = format!("{:<22} {:<24} {:<34} description\n", "recipe", "dataset", "expected time (2-core CPU)");
    for r in recipes::all() {
        s.push_str(&format!("{:<22} {:<24} {:<34} {}\n", r.name, r.dataset, r.cpu_time, r.description));
    }
    s
}

/// The recipe's rows, or those `--rows` names (an unknown name is an error listing the recipe's rows).
pub fn select_rows(recipe: &recipes::Recipe, wanted: Option<&str>) -> Result<Vec<recipes::RowSpec>> {
    let Some(wanted) = wanted else { return Ok(recipe.rows.clone()) };
    let names: Vec<&str> = wanted.split(',').map(str::trim).filter(|n| !n.is_empty()).collect();
    let known: Vec<&str> = recipe.rows.iter().map(|r| r.method).collect();
    if let Some(bad) = names.iter().find(|n| !known.contains(n)) {
        bail!("recipe {} has no row `{bad}`; its rows: {}", recipe.name, known.join(", "));
    }
    Ok(recipe.rows.iter().filter(|r| names.contains(&r.method)).cloned().collect())
}

/// The effective config of one row and seed.
pub fn row_config(recipe: &recipes::Recipe, row: &recipes::RowSpec, seed: u64) -> Result<RunConfig> {
    row_config_with(recipe, row, seed, &[])
}

/// [`row_config`] with `--set` patches ([`merge::set_patch`]) applied over the row's settings.
pub fn row_config_with(
    recipe: &recipes::Recipe,
    row: &recipes::RowSpec,
    seed: u64,
    sets: &[toml::Table],
) -> Result<RunConfig> {
    let mut t = merge::merged(recipe.base, &[row.base.unwrap_or(""), recipe.budget, row.patch])?;
    for patch in sets {
        merge::merge(&mut t, patch);
    }
    let mut cfg: RunConfig = t.try_into().with_context(|| format!("recipe {} row {}", recipe.name, row.method))?;
    cfg.train.seed = seed;
    cfg.validate().with_context(|| format!("recipe {} row {}", recipe.name, row.method))?;
    Ok(cfg)
}

/// Runs a recipe: every selected row × seed, then `results.json`, `report.md` and its figures in
/// `out/<recipe>`; prints the table. With `check`, an error when a row regressed against that baseline.
pub fn reproduce(mut a: ReproduceOptions) -> Result<()> {
    // A `--jobs` child trains its one run and writes no report.
    let assigned = jobs::assigned_run()?;
    if let Some((row, seed)) = &assigned {
        (a.rows, a.only_seeds, a.jobs) = (Some(row.clone()), Some(vec![*seed]), 1);
    }
    let reports = assigned.is_none();
    let Some(recipe) = recipes::find(&a.recipe) else {
        let names: Vec<_> = recipes::all().iter().map(|r| r.name).collect();
        bail!("unknown recipe `{}`; recipes: {}", a.recipe, names.join(", "));
    };
    // Data parallel: every rank trains every run; only rank 0 records, predicts and reports.
    let primary = core_seg::dist::is_primary() && core_seg::dist::DistEnv::from_env()?.is_none_or(|e| e.rank == 0);
    let sets = a.set.iter().map(|s| merge::set_patch(s)).collect::<Result<Vec<_>>>()?;
    // Every run's config: the row's, then `--set`, `--pretrained` and `--iters`.
    let config_of = |row: &recipes::RowSpec, seed: u64| -> Result<RunConfig> {
        let mut cfg = row_config_with(&recipe, row, seed, &sets)?;
        if let Some(p) = &a.pretrained {
            cfg.pretrained = Some(p.clone());
        }
        if let Some(n) = a.iters {
            cfg.train.iters = n;
            cfg.epochs = None;
        }
        if let Some(n) = a.checkpoint_every {
            cfg.train.checkpoint_every = n;
        }
        Ok(cfg)
    };
    let first = recipe.rows.first().context("recipe without rows")?;
    let probe = config_of(first, 0)?;
    if probe.data.dataset != DatasetKind::Synthetic {
        // Fail at once, before any work, when the dataset is absent.
        crate::datasets::data_root(&probe, a.data_root.as_ref())?;
    }
    let selected = select_rows(&recipe, a.rows.as_deref())?;
    let seeds = a.seeds.unwrap_or(recipe.seeds).max(1);
    if let Some(bad) = a.only_seeds.iter().flatten().find(|&&s| s >= seeds as u64) {
        bail!("--only-seeds {bad} is not below the seed count {seeds} (--seeds)");
    }
    let trains = |seed: u64| !a.no_train && a.only_seeds.as_ref().is_none_or(|only| only.contains(&seed));
    let dir = a.out.join(recipe.name);
    let mut resume = a.resume || a.no_train;
    let carried = a.carry.as_deref().map(|p| Carried::load(p, recipe.name)).transpose()?;
    if a.no_train && a.jobs > 1 {
        bail!("--no-train with --jobs {}: there is nothing to train", a.jobs);
    }
    if a.jobs > 1 {
        if core_seg::dist::DistEnv::from_env()?.is_some() {
            bail!("--jobs inside a data-parallel launch: use one of --jobs and --gpus/torchrun");
        }
        let run_dir = |row: &str, s: u64| dir.join(row).join(format!("seed{s}"));
        let pending = selected
            .iter()
            .filter(|r| r.mrf_of.is_none())
            .flat_map(|r| (0..seeds as u64).filter(|&s| trains(s)).map(move |s| (r.method, s)))
            .filter(|&(row, s)| !a.resume || !run_dir(row, s).join("run.json").exists())
            .map(|(row, seed)| jobs::Job {
                row: row.to_string(),
                seed,
                log: dir.join("logs").join(format!("{row}-seed{seed}.log")),
            })
            .collect();
        jobs::train_all(pending, a.jobs)?;
        // The report pass below reuses the runs the jobs finished.
        resume = true;
    }
    let started = std::time::Instant::now();
    let mut rows = Vec::new();
    let mut curves = Vec::new();
    let mut configs = Vec::new();
    let mut runs_secs = 0.0;
    let mut revisions = std::collections::BTreeMap::new();
    let mut devices = std::collections::BTreeMap::new();
    let mut channels = Vec::new();
    let mut carried_rows = Vec::new();
    // The validation set is the same for every row: build (and pre-flight check) it once.
    let val = crate::datasets::build(&probe, a.data_root.as_ref(), false)?.val;
    let test = crate::datasets::build_test(&probe, a.data_root.as_ref())?;
    let class_names = val.class_names();
    let mut grid = Grid::new(&val, 4);
    for row in &selected {
        let mut runs = Vec::new();
        for seed in 0..seeds as u64 {
            let cfg = config_of(row, seed)?;
            let run_dir = dir.join(row.method).join(format!("seed{seed}"));
            let rec_path = run_dir.join("run.json");
            let rec = match resume && rec_path.is_file() {
                true => RunRecord::read(&rec_path, &a.set)?,
                false if !trains(seed) => continue,
                false if row.mrf_of.is_some() && !primary => continue,
                false if row.mrf_of.is_some() => {
                    let base = row.mrf_of.unwrap_or_default();
                    let base_dir = dir.join(base).join(format!("seed{seed}"));
                    // Another process sharing `--out` may still be training the base run: its checkpoints
                    // are not the run's selected one until its record is written.
                    if !base_dir.join("run.json").is_file() {
                        bail!(
                            "row {} seed {seed} post-processes row {base}'s run, which has not finished ({} has \
                             no run.json): train that row first",
                            row.method,
                            base_dir.display()
                        );
                    }
                    let src = test_split::selected_checkpoint(&base_dir);
                    eprintln!("[{}] {} seed {seed} (MRF on {})", recipe.name, row.method, src.display());
                    let mut rec = RunRecord::of_mrf(&cfg, &src, a.data_root.as_ref())?;
                    rec.overrides = a.set.clone();
                    fs::create_dir_all(&run_dir)?;
                    fs::write_atomic(&rec_path, serde_json::to_vec(&rec)?)?;
                    rec
                }
                false => {
                    eprintln!("[{}] {} seed {seed}", recipe.name, row.method);
                    let args = TrainOptions {
                        out: run_dir.clone(),
                        resume,
                        data_root: a.data_root.clone(),
                        seed: Some(seed),
                        iters: None,
                        quiet: a.quiet,
                        skip_bad: false,
                        device: a.device.clone(),
                    };
                    let r = Runner::from_config(cfg.clone())?.options(args).train()?;
                    if !primary {
                        continue;
                    }
                    let rec = RunRecord {
                        miou: r.best_miou,
                        per_class: r.final_report.iou.clone(),
                        curve: r.observer.evals.clone(),
                        losses: r.observer.losses.iter().map(|(i, s)| (*i, s[0].1)).collect(),
                        secs: r.train_secs,
                        rev: Some(report::git_revision()),
                        test: None,
                        mrf_beta: None,
                        overrides: a.set.clone(),
                        device: Some(a.device.clone()),
                        host: Some(core_seg::host::describe()),
                    };
                    fs::write_atomic(&rec_path, serde_json::to_vec(&rec)?)?;
                    rec
                }
            };
            let mut rec = rec;
            // An MRF record written before β was recorded cannot be scored as the same MRF: it stays without a test score.
            let scorable = row.mrf_of.is_none() || rec.mrf_beta.is_some();
            if let (Some(t), None, true, true) = (&test, &rec.test, primary, scorable) {
                // Scored once, from the checkpoint chosen on validation (an MRF row: its source row's).
                let ck_dir = dir.join(row.mrf_of.unwrap_or(row.method)).join(format!("seed{seed}"));
                rec.test = Some(test_split::score(&cfg, &ck_dir, t, rec.mrf_beta)?);
                fs::write_atomic(&rec_path, serde_json::to_vec(&rec)?)?;
            }
            runs_secs += rec.secs;
            *revisions.entry(rec.rev.clone().unwrap_or_else(|| "unrecorded".into())).or_insert(0) += 1;
            if row.mrf_of.is_none() {
                *devices.entry(rec.trained_on()).or_insert(0) += 1;
            }
            runs.push((seed, rec));
        }
        if !primary || !reports {
            continue;
        }
        let cfg0 = config_of(row, 0)?;
        if runs.is_empty() {
            // No finished run of this row here: carried from an earlier results.json, else left out.
            if let Some(r) = carried.as_ref().and_then(|c| c.row(row.method)) {
                carried_rows.push(row.method.to_string());
                grid.missing.push(row.method.to_string());
                rows.push(r);
                configs.push((row.method.to_string(), config_text(&cfg0)?));
            }
            continue;
        }
        if row.mrf_of.is_none() && diagnostics::wants_recon_channels(&cfg0)? {
            for (seed, _) in &runs {
                let run_dir = dir.join(row.method).join(format!("seed{seed}"));
                let d = a.data_root.as_ref();
                channels.push(diagnostics::recon_channel_summary(row.method, *seed, &run_dir, d, resume)?);
            }
        }
        // The qualitative grid shows each row's lowest seed in the table with a checkpoint or saved predictions.
        if row.mrf_of.is_none() && !runs.is_empty() {
            let row_dir = dir.join(row.method);
            let run_dirs: Vec<_> = runs.iter().map(|(s, _)| (*s, row_dir.join(format!("seed{s}")))).collect();
            grid.add_row(row.method, &cfg0, &run_dirs)?;
        }
        let mut result = ResultRow::from_runs(
            row.method,
            &runs.iter().map(|(s, r)| (*s, r.miou, r.per_class.clone())).collect::<Vec<_>>(),
            class_names.clone(),
        );
        result.test = test_split::TestStats::of(&runs.iter().map(|(_, r)| r.test.as_ref()).collect::<Vec<_>>());
        rows.push(result);
        curves.push((
            row.method.to_string(),
            runs.iter().map(|(_, r)| (r.curve.clone(), r.losses.clone())).collect::<Vec<_>>(),
        ));
        configs.push((row.method.to_string(), config_text(&cfg0)?));
    }
    if !primary || !reports {
        return Ok(());
    }
    let results = Results { recipe: recipe.name.to_string(), rows };
    fs::create_dir_all(&dir)?;
    fs::write_atomic(&dir.join("results.json"), serde_json::to_string_pretty(&results)?)?;
    let elapsed = started.elapsed().as_secs_f64();
    crate::plots::qualitative_grid(&dir.join("qualitative.png"), &grid.images, &grid.gts, &grid.preds, &grid.palette)?;
    let time = report::Timing {
        invocation_s: elapsed,
        runs_s: runs_secs,
        revisions,
        devices,
        no_checkpoint: grid.missing.clone(),
        grid_sources: grid.sources.clone(),
        carried: carried.map(|c| (c.path, carried_rows)),
    };
    let quantile = probe.section::<aux_recon::ReconConfig>("recon")?.map(|r| r.diagnose.quantile);
    let references =
        selected.iter().filter_map(|r| r.reference.map(|x| x.resolve(r.method))).collect::<Result<Vec<_>>>()?;
    let beside = references::table(&results, &references);
    let overrides = match a.set.is_empty() {
        true => String::new(),
        false => format!(
            "## Overrides\n\nEvery run here was trained with `--set {}` over the recipe's settings (the configs \
             below include them).\n\n",
            a.set.join(" --set ")
        ),
    };
    let sections = [overrides, references::section(&beside), diagnostics::recon_channels_section(&channels, quantile)];
    report::write(&dir, &recipe, &results, &configs, &curves, &time, &sections)?;
    println!("{}", results.table());
    if !beside.is_empty() {
        println!("{}{beside}", references::HEADING);
    }
    println!("{:.1} min; report: {}", elapsed / 60.0, dir.join("report.md").display());
    if let Some(base) = &a.check {
        let baseline: Results = serde_json::from_slice(&fs::read(base)?)
            .with_context(|| format!("{}: not a results.json", base.display()))?;
        let problems = check_against(&results, &baseline, a.tolerance);
        if !problems.is_empty() {
            bail!("regression against {}:\n{}", base.display(), problems.join("\n"));
        }
        println!("check: every method within {:.1} points of {}", a.tolerance, base.display());
    }
    Ok(())
}

/// A row's config as TOML for the report, without the synthetic scene tables when it trains on files.
fn config_text(cfg: &RunConfig) -> Result<String> {
    let mut v = toml::Value::try_from(cfg)?;
    if cfg.data.dataset != DatasetKind::Synthetic {
        if let Some(d) = v.get_mut("data").and_then(|d| d.as_table_mut()) {
            d.remove("synthetic");
        }
    }
    Ok(toml::to_string(&v)?)
}
