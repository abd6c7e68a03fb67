//! Whole-step benchmarks (`cargo xtask bench [--compare-pytorch] [--json FILE] [--device cuda] [--precision bf16]`),
//! each case in its own process (peak RSS per case), optionally beside the identical PyTorch model
//! and step. With `--device cuda` both sides run on the GPU (ours: a `--features cuda` build; PyTorch with
//! `torch.backends.cudnn.benchmark`), every timed step ends with a device synchronisation, the GPU-only cases
//! (`unimatch-r101-321-b8`, …) are included, and the memory column is the device memory in use.

use std::path::PathBuf;
use std::process::Command;

use crate::error::{bail, fs, Context};
use crate::{Error, Result};
use serde::Serialize;

/// How each case runs: timed steps after warm-up steps, on a device, in a precision.
#[derive(Debug, Clone)]
pub struct CaseSettings {
    pub steps: usize,
    pub warmup: usize,
    /// cpu, cuda or cuda:N (ours and PyTorch on the same device).
    pub device: String,
    /// f32 or bf16 (bf16: our convolutions under autocast; PyTorch under `torch.autocast(bfloat16)`).
    pub precision: String,
}

/// Which cases to run, and whether to run PyTorch beside them.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Also run tools/bench/torch_bench.py (needs `torch`; interpreter from $SEMISEG_PYTHON, else python3).
    pub compare_pytorch: bool,
    /// Write the results as JSON.
    pub json: Option<PathBuf>,
    /// Comma-separated case names (default: all).
    pub cases: Option<String>,
    pub run: CaseSettings,
}

fn precision(s: &str) -> core_seg::train::Precision {
    match s {
        "bf16" => core_seg::train::Precision::Bf16,
        _ => core_seg::train::Precision::F32,
    }
}

#[derive(Serialize)]
struct Row {
    pub case: String,
    ours_ms: f64,
    torch_ms: Option<f64>,
    ratio: Option<f64>,
    ours_peak_mib: f64,
    torch_peak_mib: Option<f64>,
}

/// Runs one case in this process and prints its timing as one JSON line (used by `bench`).
pub fn run_case(name: &str, a: &CaseSettings) -> Result<()> {
    let case = bench::cases().into_iter().find(|c| c.name == name).with_context(|| format!("unknown case `{name}`"))?;
    let dev = crate::gpus::parse_device(&a.device)?;
    let t = bench::run_case_on(&case, a.warmup, a.steps, &dev, precision(&a.precision))?;
    println!("{}", serde_json::to_string(&t)?);
    Ok(())
}

fn last_json_line(out: &[u8]) -> Result<serde_json::Value> {
    let text = String::from_utf8_lossy(out);
    let line = text.lines().rev().find(|l| l.trim_start().starts_with('{')).context("no JSON line in output")?;
    Ok(serde_json::from_str(line)?)
}

fn torch_python() -> Option<String> {
    let py = std::env::var("SEMISEG_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&py).args(["-c", "import torch"]).output().map(|o| o.status.success()).unwrap_or(false);
    ok.then_some(py)
}

/// Runs every selected case as `<this executable> bench-case CASE --steps N --warmup N --device D --precision P`
/// (the binary must have that command; it calls [`run_case`]) and prints the table.
pub fn run(opts: BenchOptions) -> Result<()> {
    let a = &opts.run;
    let wanted: Option<Vec<String>> = opts.cases.as_ref().map(|s| s.split(',').map(|x| x.trim().to_string()).collect());
    let on_gpu = a.device.trim() != "cpu";
    let cases: Vec<_> = bench::cases()
        .into_iter()
        .filter(|c| match &wanted {
            Some(w) => w.contains(&c.name),
            None => on_gpu || !c.gpu,
        })
        .collect();
    if cases.is_empty() {
        bail!(
            "no case matches {:?}; cases: {:?}",
            opts.cases,
            bench::cases().iter().map(|c| c.name.clone()).collect::<Vec<_>>()
        );
    }
    let py = if opts.compare_pytorch {
        Some(torch_python().context(
            "--compare-pytorch: `import torch` failed; install it (pip install torch) or set SEMISEG_PYTHON",
        )?)
    } else {
        None
    };
    // $SEMISEG_TORCH_BENCH, else the script in the working directory (a bundled binary run in a checkout on a
    // GPU machine), else the one in the source tree this binary was built from.
    let script = match std::env::var("SEMISEG_TORCH_BENCH") {
        Ok(p) => p,
        Err(_) if std::path::Path::new("tools/bench/torch_bench.py").is_file() => "tools/bench/torch_bench.py".into(),
        Err(_) => concat!(env!("CARGO_MANIFEST_DIR"), "/../../tools/bench/torch_bench.py").into(),
    };
    let exe = std::env::current_exe().map_err(|e| Error::Process(format!("locating this executable: {e}")))?;
    let mut rows = Vec::new();
    let mem = if on_gpu { "GPU MiB" } else { "MiB" };
    println!("host: {} (each case in its own process, same environment)", core_seg::host::describe());
    println!(
        "{:<22} {:>10} {:>10} {:>7} {:>12} {:>12}",
        "case",
        "ours ms",
        "torch ms",
        "ratio",
        format!("ours {mem}"),
        format!("torch {mem}")
    );
    for c in &cases {
        let steps = a.steps.to_string();
        let warm = a.warmup.to_string();
        let dp = ["--device", a.device.as_str(), "--precision", a.precision.as_str()];
        let out =
            Command::new(&exe).args(["bench-case", &c.name, "--steps", &steps, "--warmup", &warm]).args(dp).output();
        let out = out.map_err(|e| Error::Process(format!("case {}: {e}", c.name)))?;
        if !out.status.success() {
            return Err(Error::Process(format!("case {} failed: {}", c.name, String::from_utf8_lossy(&out.stderr))));
        }
        let ours = last_json_line(&out.stdout)?;
        let torch = match &py {
            Some(py) => {
                let case_json = serde_json::to_string(c)?;
                let o = Command::new(py)
                    .args([script.as_str(), "--case", &case_json, "--steps", &steps, "--warmup", &warm])
                    .args(dp)
                    .output()
                    .map_err(|e| Error::Process(format!("torch case {}: {e}", c.name)))?;
                if !o.status.success() {
                    return Err(Error::Process(format!(
                        "torch case {} failed: {}",
                        c.name,
                        String::from_utf8_lossy(&o.stderr)
                    )));
                }
                Some(last_json_line(&o.stdout)?)
            }
            None => None,
        };
        let f = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_f64());
        let ours_ms = f(&ours, "ms").context("ms")?;
        let torch_ms = torch.as_ref().and_then(|t| f(t, "ms"));
        let row = Row {
            case: c.name.clone(),
            ours_ms,
            torch_ms,
            ratio: torch_ms.map(|t| ours_ms / t),
            ours_peak_mib: f(&ours, if on_gpu { "gpu_mib" } else { "peak_mib" }).unwrap_or(0.0),
            torch_peak_mib: torch.as_ref().and_then(|t| f(t, if on_gpu { "gpu_mib" } else { "peak_mib" })),
        };
        let opt = |v: Option<f64>, p: usize| v.map(|x| format!("{x:.p$}")).unwrap_or_else(|| "-".into());
        println!(
            "{:<22} {:>10.1} {:>10} {:>7} {:>12.0} {:>12}",
            row.case,
            row.ours_ms,
            opt(row.torch_ms, 1),
            opt(row.ratio, 2),
            row.ours_peak_mib,
            opt(row.torch_peak_mib, 0)
        );
        rows.push(row);
    }
    if let Some(p) = &opts.json {
        fs::write(p, serde_json::to_string_pretty(&rows)?)?;
    }
    Ok(())
}
