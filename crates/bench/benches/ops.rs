//! Criterion benchmarks of the custom ops at DeepLabV3+-R18 shapes (batch 4, 128² input): each kernel's
//! forward + backward, the convolution with both algorithms (direct im2col/GEMM and Winograd F(4,3)).

use candle_core::{DType, Device, Tensor, Var};
use core_seg::kernels::{self, BnStats, ConvAlgo, ConvParams, WinogradTile};
use core_seg::ops;
use criterion::{criterion_group, criterion_main, Criterion};

fn bench_conv(c: &mut Criterion) {
    let dev = Device::Cpu;
    let p = ConvParams { stride: 1, padding: 1, dilation: 1, groups: 1 };
    // The decoder's first 3×3 conv (304 → 256 at 32²) and a layer1 conv (64 → 64 at 32²).
    for (name, cin, cout) in [("decoder-304to256", 304, 256), ("layer1-64to64", 64, 64)] {
        let x = Var::randn(0f32, 1.0, (4, cin, 32, 32), &dev).expect("tensor");
        let w = Var::randn(0f32, 0.05, (cout, cin, 3, 3), &dev).expect("tensor");
        for (algo_name, algo) in [("direct", ConvAlgo::Direct), ("winograd-f4", ConvAlgo::Winograd(WinogradTile::F4))] {
            c.bench_function(&format!("conv3x3-{name}-4x32x32-{algo_name}-fwd+bwd"), |b| {
                b.iter(|| {
                    let y = kernels::conv2d_with(x.as_tensor(), w.as_tensor(), p, algo).expect("conv");
                    y.sum_all().and_then(|s| s.backward()).expect("backward")
                })
            });
        }
    }
}

fn bench_ops(c: &mut Criterion) {
    let dev = Device::Cpu;
    let x = Var::randn(0f32, 1.0, (4, 64, 64, 64), &dev).expect("tensor");
    let gamma = Var::ones(64, DType::F32, &dev).expect("tensor");
    let beta = Var::zeros(64, DType::F32, &dev).expect("tensor");
    let logits = Var::randn(0f32, 1.0, (4, 21, 128, 128), &dev).expect("tensor");
    let target = Tensor::zeros((4, 128, 128), DType::U32, &dev).expect("tensor");
    let low = Var::randn(0f32, 1.0, (4, 21, 32, 32), &dev).expect("tensor");
    c.bench_function("bn+relu-4x64x64x64-train-fwd+bwd", |b| {
        b.iter(|| {
            let (y, _) =
                kernels::batch_norm_act(x.as_tensor(), &gamma, &beta, 1e-5, BnStats::Batch, None, true).expect("bn");
            y.sum_all().and_then(|s| s.backward()).expect("backward")
        })
    });
    c.bench_function("maxpool3x3s2-4x64x64x64-fwd+bwd", |b| {
        b.iter(|| ops::max_pool_3x3_s2_p1(&x).and_then(|y| Ok(y.sum_all()?.backward()?)).expect("op"))
    });
    c.bench_function("bilinear-4x21x32x32-to-128-fwd+bwd", |b| {
        b.iter(|| ops::resize_bilinear(&low, (128, 128), true).and_then(|y| Ok(y.sum_all()?.backward()?)).expect("op"))
    });
    c.bench_function("ce-ignore-4x21x128x128-fwd+bwd", |b| {
        b.iter(|| ops::cross_entropy_ignore(&logits, &target).and_then(|l| Ok(l.backward()?)).expect("op"))
    });
    let param = Var::randn(0f32, 1.0, (512, 512, 3, 3), &dev).expect("tensor");
    let grad = Tensor::randn(0f32, 1.0, (512, 512, 3, 3), &dev).expect("tensor");
    let mut buf = Some(Tensor::zeros((512, 512, 3, 3), DType::F32, &dev).expect("tensor"));
    c.bench_function("sgd-momentum-512x512x3x3", |b| {
        b.iter(|| buf = Some(kernels::sgd_step(&param, &grad, buf.as_ref(), 0.01, 0.9, 1e-4).expect("sgd")))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench_conv, bench_ops
}
criterion_main!(benches);
