//! Criterion benchmarks of the MobileNetV2 layers of DeepLabV3+ (output stride 16) at a 160² crop, batch 8:
//! depthwise 3×3 convolutions on the direct kernel (`auto`) and on the im2col/GEMM path it replaced
//! (`im2col`), 1×1 convolutions, and batch norm + ReLU6, each forward + backward. `tools/bench/ops_bench.py`
//! times the same layers in PyTorch.

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

fn fwd_bwd(x: &Var, w: &Var, p: ConvParams, algo: ConvAlgo) {
    let y = kernels::conv2d_with(x.as_tensor(), w.as_tensor(), p, algo).expect("conv");
    y.sum_all().and_then(|s| s.backward()).expect("backward");
}

fn bench_depthwise(c: &mut Criterion) {
    let dev = Device::Cpu;
    for (ch, s, stride, dil) in DEPTHWISE {
        let x = Var::randn(0f32, 1.0, (BATCH, ch, s, s), &dev).expect("tensor");
        let w = Var::randn(0f32, 0.3, (ch, 1, 3, 3), &dev).expect("tensor");
        let p = ConvParams { stride, padding: dil, dilation: dil, groups: ch };
        for (name, algo) in [("auto", ConvAlgo::Auto), ("im2col", ConvAlgo::Direct)] {
            c.bench_function(&format!("dw3x3-{BATCH}x{ch}x{s}x{s}-s{stride}-d{dil}-{name}-fwd+bwd"), |b| {
                b.iter(|| fwd_bwd(&x, &w, p, algo))
            });
        }
    }
}

fn bench_pointwise(c: &mut Criterion) {
    let dev = Device::Cpu;
    for (cin, cout, s) in POINTWISE {
        let x = Var::randn(0f32, 1.0, (BATCH, cin, s, s), &dev).expect("tensor");
        let w = Var::randn(0f32, 0.1, (cout, cin, 1, 1), &dev).expect("tensor");
        c.bench_function(&format!("conv1x1-{BATCH}x{cin}to{cout}x{s}x{s}-fwd+bwd"), |b| {
            b.iter(|| fwd_bwd(&x, &w, ConvParams::default(), ConvAlgo::Auto))
        });
    }
}

fn bench_bn_relu6(c: &mut Criterion) {
    let dev = Device::Cpu;
    for (ch, s) in BN {
        let x = Var::randn(0f32, 1.0, (BATCH, ch, s, s), &dev).expect("tensor");
        let gamma = Var::ones(ch, DType::F32, &dev).expect("tensor");
        let beta = Var::zeros(ch, DType::F32, &dev).expect("tensor");
        c.bench_function(&format!("bn+relu6-{BATCH}x{ch}x{s}x{s}-train-fwd+bwd"), |b| {
            b.iter(|| {
                let (y, _) =
                    kernels::batch_norm_act(x.as_tensor(), &gamma, &beta, 1e-5, BnStats::Batch, None, Act::Relu6)
                        .expect("bn");
                y.sum_all().and_then(|s| s.backward()).expect("backward")
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
