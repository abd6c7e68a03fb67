//! Per-layer timings of the convolutions of the CPU-sized synthetic model (`configs/synthetic.toml`: ResNet-18
//! layout, width 16, output stride 8, ASPP 64 at rates 2/4/6, 64² crops, batch 8), for finding where the
//! `step-synth-64-b8` bench case spends its time. `tools/bench/synth_layers.py` times the same layers in
//! PyTorch (same list, same order).
//!
//! `cargo run --release -p core-seg --example synth_layers [reps] [batch]`: per layer the median (of `reps`,
//! default 30, after 3 warm-up runs) of the forward and of the backward (`sum(y).backward()`, both gradients) in
//! ms; the last line weights each layer by how often the model runs it. `batch` replaces every layer's batch
//! (UniMatch runs the encoder at 16 and the decoder at 32).

use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use core_seg::kernels::{self, ConvParams};

/// `(input [N, Cin, H, W], weight [Cout, Cin, k, k], stride, padding, dilation, occurrences in the model)`.
type Layer = ([usize; 4], [usize; 4], usize, usize, usize, usize);

const LAYERS: [Layer; 11] = [
    ([8, 3, 64, 64], [16, 3, 3, 3], 2, 1, 1, 1),
    ([8, 16, 32, 32], [16, 16, 3, 3], 1, 1, 1, 1),
    ([8, 16, 32, 32], [32, 16, 3, 3], 1, 1, 1, 1),
    ([8, 16, 16, 16], [16, 16, 3, 3], 1, 1, 1, 3),
    ([8, 32, 8, 8], [32, 32, 3, 3], 1, 1, 1, 3),
    ([8, 64, 8, 8], [64, 64, 3, 3], 1, 2, 2, 2),
    ([8, 128, 8, 8], [128, 128, 3, 3], 1, 4, 4, 2),
    ([8, 128, 8, 8], [64, 128, 3, 3], 1, 6, 6, 1),
    ([8, 320, 8, 8], [64, 320, 1, 1], 1, 0, 1, 1),
    ([8, 88, 16, 16], [64, 88, 3, 3], 1, 1, 1, 1),
    ([8, 64, 16, 16], [64, 64, 3, 3], 1, 1, 1, 1),
];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    kernels::configure_cpu_pools();
    let reps: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(30).max(1);
    let batch: Option<usize> = std::env::args().nth(2).and_then(|s| s.parse().ok());
    let dev = Device::Cpu;
    let mut total = 0.0;
    println!("threads {} (rayon), f32, median of {reps}", rayon::current_num_threads());
    for (mut xs, ws, s, p, d, count) in LAYERS {
        xs[0] = batch.unwrap_or(xs[0]).max(1);
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, &xs[..], &dev)?)?;
        let w = Var::from_tensor(&Tensor::randn(0f32, 0.1, &ws[..], &dev)?)?;
        let cfg = ConvParams { stride: s, padding: p, dilation: d, groups: 1 };
        let (mut fwd, mut bwd) = (Vec::new(), Vec::new());
        for i in 0..reps + 3 {
            let t0 = Instant::now();
            let y = kernels::conv2d(x.as_tensor(), w.as_tensor(), cfg)?;
            let t1 = Instant::now();
            let grads = y.sum_all()?.backward()?;
            std::hint::black_box(grads.get(x.as_tensor()).map(|g| g.dims().len()));
            if i >= 3 {
                fwd.push((t1 - t0).as_secs_f64() * 1e3);
                bwd.push(t1.elapsed().as_secs_f64() * 1e3);
            }
        }
        let (f, b) = (median(fwd), median(bwd));
        total += (f + b) * count as f64;
        println!("{xs:?} {ws:?} s{s} p{p} d{d} x{count}: fwd {f:.3} bwd {b:.3}");
    }
    println!("weighted total {total:.2} ms");
    Ok(())
}
