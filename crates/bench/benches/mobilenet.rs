//! Criterion benchmarks of the MobileNetV2 layers of DeepLabV3+ (output stride 16) at a 160² crop, batch 8:
//! depthwise 3×3 convolutions on the direct kernel (`auto`) and on the im2col/GEMM path it replaced
//! (`im2col`), 1×1 convolutions (batch folded into one GEMM on small maps, or one GEMM per image), and batch
//! norm + ReLU6, each forward + backward from an output gradient of ones (`y.backward()`). `tools/bench/ops_bench.py` times the same layers in PyTorch. The process is configured as for
//! training ([`kernels::configure_cpu_pools`]).

use candle_core::{DType, Device, Var};
use core_seg::kernels::{self, Act, BnStats, ConvAlgo, ConvParams};
use criterion::{criterion_group, criterion_main, Criterion};

const BATCH: usize = 8;

/// Depthwise layers: (channels, input size, stride, dilation).
const DEPTHWISE: [(usize, usize, usize, usize); 9] = [
    (32, 80, 1, 1),
    (96, 80, 2, 1),
    (144, 40, 1, 1),
    (144, 40, 2, 1),
    (192, 20, 1, 1),
    (192, 20, 2, 1),
    (384, 10, 1, 1),
    (576, 10, 1, 1),
    (960, 10, 1, 2),
];

/// 1×1 layers: (input channels, output channels, size).
const POINTWISE: [(usize, usize, usize); 5] =
    [(16, 96, 80), (144, 24, 40), (32, 192, 20), (64, 384, 10), (960, 160, 10)];

/// Batch norm + ReLU6: (channels, size).
const BN: [(usize, usize); 4] = [(96, 80), (144, 40), (192, 20), (576, 10)];

/// Random `x` and `w` of a convolution.
fn conv_vars(x: (usize, usize, usize, usize), w: (usize, usize, usize, usize)) -> [Var; 2] {
    let dev = Device::Cpu;
    [Var::randn(0f32, 1.0, x, &dev).expect("tensor"), Var::randn(0f32, 0.3, w, &dev).expect("tensor")]
}

/// Forward, then backward from `dy` = 1 (both gradients).
fn fwd_bwd([x, w]: &[Var; 2], p: ConvParams, algo: ConvAlgo) {
    kernels::conv2d_with(x.as_tensor(), w.as_tensor(), p, algo).and_then(|y| y.backward()).expect("conv");
}

fn bench_depthwise(c: &mut Criterion) {
    kernels::configure_cpu_pools();
    for (ch, s, stride, dil) in DEPTHWISE {
        let p = ConvParams { stride, padding: dil, dilation: dil, groups: ch };
        let t = conv_vars((BATCH, ch, s, s), (ch, 1, 3, 3));
        for (name, algo) in [("auto", ConvAlgo::Auto), ("im2col", ConvAlgo::Direct)] {
            c.bench_function(&format!("dw3x3-{BATCH}x{ch}x{s}x{s}-s{stride}-d{dil}-{name}-fwd+bwd"), |b| {
                b.iter(|| fwd_bwd(&t, p, algo))
            });
        }
    }
}

fn bench_pointwise(c: &mut Criterion) {
    kernels::configure_cpu_pools();
    for (cin, cout, s) in POINTWISE {
        let p = ConvParams::default();
        let t = conv_vars((BATCH, cin, s, s), (cout, cin, 1, 1));
        for (name, batched) in [("auto", None), ("per-image", Some(false))] {
            kernels::force_batched(batched);
            c.bench_function(&format!("conv1x1-{BATCH}x{cin}to{cout}x{s}x{s}-{name}-fwd+bwd"), |b| {
                b.iter(|| fwd_bwd(&t, p, ConvAlgo::Auto))
            });
        }
        kernels::force_batched(None);
    }
}

fn bench_bn_relu6(c: &mut Criterion) {
    kernels::configure_cpu_pools();
    let dev = Device::Cpu;
    for (ch, s) in BN {
        let x = Var::randn(0f32, 1.0, (BATCH, ch, s, s), &dev).expect("tensor");
        let gamma = Var::ones(ch, DType::F32, &dev).expect("tensor");
        let beta = Var::zeros(ch, DType::F32, &dev).expect("tensor");
        c.bench_function(&format!("bn+relu6-{BATCH}x{ch}x{s}x{s}-train-fused-fwd+bwd"), |b| {
            b.iter(|| {
                let (y, _) =
                    kernels::batch_norm_act(x.as_tensor(), &gamma, &beta, 1e-5, BnStats::Batch, None, Act::Relu6)
                        .expect("bn");
                y.backward().expect("backward")
            })
        });
        // What a layer without the fused kernel runs: batch norm, then ReLU6 as a Candle op.
        c.bench_function(&format!("bn+relu6-{BATCH}x{ch}x{s}x{s}-train-bn-then-clamp-fwd+bwd"), |b| {
            b.iter(|| {
                let (y, _, _) = kernels::batch_norm_train(x.as_tensor(), &gamma, &beta, 1e-5).expect("bn");
                Act::Relu6.apply(&y).and_then(|y| y.backward()).expect("backward")
            })
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = bench_depthwise, bench_pointwise, bench_bn_relu6
}
criterion_main!(benches);
