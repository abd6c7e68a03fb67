//! Times a supervised DeepLabV3+ training step (forward, CE, backward, SGD) and reports peak RSS.
//!
//! `cargo run --release -p core-seg --example train_step -- [backbone=resnet18] [batch=4] [size=128] [steps=10]`

use candle_core::{DType, Device, Tensor};
use core_seg::model::{DeepLabConfig, DeepLabV3Plus, Depth};
use core_seg::nn::{Mode, ParamStore};
use core_seg::ops::cross_entropy_ignore;
use core_seg::optim::{backbone_head_groups, OptimConfig, Optimizer};
use core_seg::rng::SegRng;

fn peak_rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn main() -> core_seg::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |k: &str, d: &str| args.iter().find_map(|a| a.strip_prefix(&format!("{k}="))).unwrap_or(d).to_string();
    let depth: Depth =
        serde_json::from_value(serde_json::Value::String(get("backbone", "resnet18"))).expect("backbone");
    let (b, s, steps): (usize, usize, usize) = (
        get("batch", "4").parse().unwrap_or(4),
        get("size", "128").parse().unwrap_or(128),
        get("steps", "10").parse().unwrap_or(10),
    );
    let dev = Device::Cpu;
    let cfg = DeepLabConfig { backbone: depth, nclass: 21, ..Default::default() };
    let store = ParamStore::new(0);
    let model = DeepLabV3Plus::new(&cfg, store.var_builder(DType::F32, &dev))?;
    let mut opt = Optimizer::new(OptimConfig::default(), backbone_head_groups(&store.named_vars(), 10.0), 0.01);
    let mut rng = SegRng::new(1);
    let x = Tensor::from_vec((0..b * 3 * s * s).map(|_| rng.normal() as f32).collect::<Vec<_>>(), (b, 3, s, s), &dev)?;
    let y = Tensor::from_vec((0..b * s * s).map(|_| rng.below(21) as u32).collect::<Vec<_>>(), (b, s, s), &dev)?;
    let mut times = Vec::new();
    for i in 0..steps + 2 {
        let t0 = std::time::Instant::now();
        let loss = cross_entropy_ignore(&model.forward_t(&x, Mode::Train)?, &y)?;
        let t1 = t0.elapsed();
        let grads = loss.backward()?;
        let t2 = t0.elapsed();
        opt.step(&grads)?;
        let t3 = t0.elapsed();
        if i >= 2 {
            times.push((t1.as_secs_f64(), (t2 - t1).as_secs_f64(), (t3 - t2).as_secs_f64()));
        }
    }
    let n = times.len() as f64;
    let (f, bw, o) = times.iter().fold((0.0, 0.0, 0.0), |a, t| (a.0 + t.0 / n, a.1 + t.1 / n, a.2 + t.2 / n));
    println!(
        "{depth:?} batch {b}×3×{s}²: {:.0} ms/step (fwd {:.0} / bwd {:.0} / opt {:.0}), peak RSS {:.0} MiB, threads {}",
        1e3 * (f + bw + o),
        1e3 * f,
        1e3 * bw,
        1e3 * o,
        peak_rss_mib(),
        candle_core::utils::get_num_threads()
    );
    Ok(())
}
