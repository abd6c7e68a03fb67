//! Micro-benchmark: `kernels::conv2d` (forward, input gradient, weight gradient) vs Candle's `conv2d` on
//! the DeepLabV3+-ResNet-18 layer shapes at batch 4 and a 128² input, f32.
//!
//! `cargo run --release -p core-seg --example conv_bench [reps] [auto|direct|f2|f4]`. Runs our kernels with
//! that algorithm (default `auto`; Winograd tilings apply to the 3×3 stride-1 layers only) and reports the
//! median of `reps` runs (default 5) after one warm-up, in ms and GFLOP/s (forward 2·N·Cout·P·Cin_g·kh·kw FLOP, backward twice that).
//! Candle's backward is timed as `loss.backward()` of `sum(y·r)` (includes one small elementwise product).
//! GFLOP/s use the dense FLOP count, so rows where the kernels skip dead taps (d12/d18 on 8²) exceed the
//! machine peak.

use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use core_seg::kernels::{self, ConvAlgo, ConvParams, WinogradTile};

struct Layer {
    name: &'static str,
    cin: usize,
    cout: usize,
    hw: usize,
    k: usize,
    stride: usize,
    pad: usize,
    dil: usize,
}

/// CPU time of all threads of this process in ns (Linux `/proc/self/task/*/schedstat`), if readable.
fn cpu_ns() -> Option<u64> {
    let mut total = 0;
    for e in std::fs::read_dir("/proc/self/task").ok()? {
        let s = std::fs::read_to_string(e.ok()?.path().join("schedstat")).ok()?;
        total += s.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// Median wall time in ms; with `BENCH_CPU_TIME=1`, the median process CPU time instead (robust to other
/// load on a shared machine when run with `RAYON_NUM_THREADS=1`; idle rayon threads spin, so it
/// overstates multi-threaded runs).
fn median_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let cpu = std::env::var("BENCH_CPU_TIME").is_ok_and(|v| v == "1");
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let (s, c) = (Instant::now(), cpu_ns());
            f();
            match (cpu, c, cpu_ns()) {
                (true, Some(a), Some(b)) => (b - a) as f64 / 1e6,
                _ => s.elapsed().as_secs_f64() * 1e3,
            }
        })
        .collect();
    t.sort_by(|a, b| a.total_cmp(b));
    t[t.len() / 2]
}

fn main() -> candle_core::Result<()> {
    let reps: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let algo = match std::env::args().nth(2).as_deref() {
        None | Some("auto") => ConvAlgo::Auto,
        Some("direct") => ConvAlgo::Direct,
        Some("f2") => ConvAlgo::Winograd(WinogradTile::F2),
        Some("f4") => ConvAlgo::Winograd(WinogradTile::F4),
        Some(other) => candle_core::bail!("conv_bench: unknown algorithm {other:?} (auto, direct, f2, f4)"),
    };
    let n = 4;
    let layers = [
        Layer { name: "stem 7x7 s2 3->64 @128", cin: 3, cout: 64, hw: 128, k: 7, stride: 2, pad: 3, dil: 1 },
        Layer { name: "deep-stem 3x3 s2 3->64 @128", cin: 3, cout: 64, hw: 128, k: 3, stride: 2, pad: 1, dil: 1 },
        Layer { name: "layer1 3x3 64->64 @32", cin: 64, cout: 64, hw: 32, k: 3, stride: 1, pad: 1, dil: 1 },
        Layer { name: "layer2.ds 1x1 s2 64->128 @32", cin: 64, cout: 128, hw: 32, k: 1, stride: 2, pad: 0, dil: 1 },
        Layer { name: "layer2 3x3 128->128 @16", cin: 128, cout: 128, hw: 16, k: 3, stride: 1, pad: 1, dil: 1 },
        Layer { name: "layer3 3x3 256->256 @8", cin: 256, cout: 256, hw: 8, k: 3, stride: 1, pad: 1, dil: 1 },
        Layer { name: "layer4 3x3 d2 512->512 @8", cin: 512, cout: 512, hw: 8, k: 3, stride: 1, pad: 2, dil: 2 },
        Layer { name: "aspp 3x3 d6 512->256 @8", cin: 512, cout: 256, hw: 8, k: 3, stride: 1, pad: 6, dil: 6 },
        Layer { name: "aspp 3x3 d12 512->256 @8", cin: 512, cout: 256, hw: 8, k: 3, stride: 1, pad: 12, dil: 12 },
        Layer { name: "aspp 3x3 d18 512->256 @8", cin: 512, cout: 256, hw: 8, k: 3, stride: 1, pad: 18, dil: 18 },
        Layer { name: "aspp 1x1 512->256 @8", cin: 512, cout: 256, hw: 8, k: 1, stride: 1, pad: 0, dil: 1 },
        Layer { name: "decoder 3x3 304->256 @32", cin: 304, cout: 256, hw: 32, k: 3, stride: 1, pad: 1, dil: 1 },
        Layer { name: "decoder 3x3 256->256 @32", cin: 256, cout: 256, hw: 32, k: 3, stride: 1, pad: 1, dil: 1 },
    ];
    println!(
        "threads {} (rayon), batch {n}, f32, median of {reps}, ours = {algo:?}; GFLOP/s (direct-FLOP equivalent) in brackets",
        rayon::current_num_threads()
    );
    // The machine's f32 ceiling right now (this VM's clock drifts): independent FMA chains, no memory traffic.
    for threads in [1, rayon::current_num_threads()] {
        match fma_peak_gflops(threads) {
            Some(g) => println!("f32 FMA peak, {threads} thread(s): {g:.1} GFLOP/s"),
            None => println!("f32 FMA peak: no AVX2+FMA on this CPU"),
        }
    }
    // Raw GEMM ceiling under the current machine load (decoder per-image shape, row-major C = A·B).
    for (m, nn, k) in [(256usize, 1024usize, 2736usize), (512, 256, 4608), (256, 256, 304), (256, 1024, 304)] {
        let a = vec![1.0f32; m * k];
        let b = vec![1.0f32; k * nn];
        let mut c = vec![0.0f32; m * nn];
        for (label, par) in
            [("1 thread", gemm::Parallelism::None), ("rayon", gemm::Parallelism::Rayon(rayon::current_num_threads()))]
        {
            let ms = median_ms(reps, || {
                // SAFETY: all three buffers are row-major with the sizes passed.
                unsafe {
                    gemm::gemm(
                        m,
                        nn,
                        k,
                        c.as_mut_ptr(),
                        1,
                        nn as isize,
                        false,
                        a.as_ptr(),
                        1,
                        k as isize,
                        b.as_ptr(),
                        1,
                        nn as isize,
                        0.0f32,
                        1.0f32,
                        false,
                        false,
                        false,
                        par,
                    )
                }
            });
            println!("raw gemm {m}x{nn}x{k} {label}: {ms:.2} ms = {:.1} GFLOP/s", 2.0 * (m * nn * k) as f64 / ms / 1e6);
        }
    }
    println!(
        "{:<30} {:>16} {:>16} {:>16} {:>16} {:>7} {:>7}",
        "layer", "candle fwd", "ours fwd", "candle bwd", "ours bwd", "x fwd", "x bwd"
    );
    let (mut tot_c, mut tot_o) = (0.0, 0.0);
    for l in &layers {
        let dev = Device::Cpu;
        let p = ConvParams { stride: l.stride, padding: l.pad, dilation: l.dil, groups: 1 };
        let x = Tensor::randn(0f32, 1.0, (n, l.cin, l.hw, l.hw), &dev)?;
        let w = Tensor::randn(0f32, 0.1, (l.cout, l.cin, l.k, l.k), &dev)?;
        let y = kernels::conv2d_with(&x, &w, p, algo)?;
        let (_, _, oh, ow) = y.dims4()?;
        let flops = 2.0 * (n * l.cout * oh * ow * l.cin * l.k * l.k) as f64;
        let dy = Tensor::randn(0f32, 1.0, y.shape(), &dev)?;

        let candle = std::env::var("CONV_BENCH_SKIP_CANDLE").map_or(true, |v| v != "1");
        let c_fwd = if !candle {
            f64::NAN
        } else {
            median_ms(reps, || {
                x.conv2d(&w, l.pad, l.stride, l.dil, 1).unwrap();
            })
        };
        let o_fwd = median_ms(reps, || {
            kernels::conv2d_with(&x, &w, p, algo).unwrap();
        });
        let (xv, wv) = (Var::from_tensor(&x)?, Var::from_tensor(&w)?);
        let c_bwd = if !candle {
            f64::NAN
        } else {
            median_ms(reps, || {
                let y = xv.as_tensor().conv2d(wv.as_tensor(), l.pad, l.stride, l.dil, 1).unwrap();
                let loss = (y * &dy).unwrap().sum_all().unwrap();
                loss.backward().unwrap();
            }) - c_fwd
        };
        let o_dx = median_ms(reps, || {
            kernels::conv2d_grad_input(&dy, &w, (l.hw, l.hw), p, algo).unwrap();
        });
        let o_dw = median_ms(reps, || {
            kernels::conv2d_grad_weight(&x, &dy, (l.k, l.k), p, algo).unwrap();
        });
        let o_bwd = o_dx + o_dw;
        let gf = |ms: f64, f: f64| f / ms / 1e6;
        println!(
            "{:<30} {:>7.2} ({:>5.1}) {:>7.2} ({:>5.1}) {:>7.2} ({:>5.1}) {:>7.2} ({:>5.1}) {:>6.2}x {:>6.2}x   dx {:>7.2} dw {:>7.2}",
            l.name,
            c_fwd,
            gf(c_fwd, flops),
            o_fwd,
            gf(o_fwd, flops),
            c_bwd,
            gf(c_bwd, 2.0 * flops),
            o_bwd,
            gf(o_bwd, 2.0 * flops),
            c_fwd / o_fwd,
            c_bwd / o_bwd,
            o_dx,
            o_dw
        );
        tot_c += c_fwd + c_bwd;
        tot_o += o_fwd + o_bwd;
    }
    println!("total fwd+bwd over the listed layers: candle {tot_c:.1} ms, ours {tot_o:.1} ms ({:.2}x)", tot_c / tot_o);
    Ok(())
}

/// Peak f32 GFLOP/s of `threads` threads each running 12 independent 8-lane FMA chains (AVX2), best of 5.
fn fma_peak_gflops(threads: usize) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            return None;
        }
        const ITERS: usize = 20_000_000;
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let t = Instant::now();
            let sums: Vec<f32> = rayon::broadcast(|ctx| {
                // SAFETY: AVX2 and FMA were detected above.
                if ctx.index() < threads {
                    unsafe { fma_chains(ITERS) }
                } else {
                    0.0
                }
            });
            std::hint::black_box(sums);
            best = best.min(t.elapsed().as_secs_f64());
        }
        Some((threads * ITERS * 12 * 8 * 2) as f64 / best / 1e9)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = threads;
        None
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_chains(iters: usize) -> f32 {
    use std::arch::x86_64::*;
    let m = _mm256_set1_ps(0.999_999);
    let c = _mm256_set1_ps(1e-7);
    let mut acc = [_mm256_set1_ps(1.0); 12];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm256_fmadd_ps(*a, m, c);
        }
    }
    let mut out = [0f32; 8];
    let total = acc.iter().fold(_mm256_setzero_ps(), |s, a| _mm256_add_ps(s, *a));
    _mm256_storeu_ps(out.as_mut_ptr(), total);
    out.iter().sum()
}
