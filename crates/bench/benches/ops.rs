//! Criterion benchmarks of the custom ops at DeepLabV3+-R18 shapes (batch 4, 128² input).

use candle_core::{Device, Tensor, Var};
use core_seg::ops;
use criterion::{criterion_group, criterion_main, Criterion};

fn bench_ops(c: &mut Criterion) {
    let dev = Device::Cpu;
    let x = Var::randn(0f32, 1.0, (4, 64, 64, 64), &dev).expect("tensor");
    let logits = Tensor::randn(0f32, 1.0, (4, 21, 128, 128), &dev).expect("tensor");
    let target = Tensor::zeros((4, 128, 128), candle_core::DType::U32, &dev).expect("tensor");
    let low = Var::randn(0f32, 1.0, (4, 21, 32, 32), &dev).expect("tensor");
    c.bench_function("maxpool3x3s2-4x64x64x64-fwd+bwd", |b| {
        b.iter(|| ops::max_pool_3x3_s2_p1(&x).and_then(|y| Ok(y.sum_all()?.backward()?)).expect("op"))
    });
    c.bench_function("bilinear-4x21x32x32-to-128-fwd+bwd", |b| {
        b.iter(|| ops::resize_bilinear(&low, (128, 128), true).and_then(|y| Ok(y.sum_all()?.backward()?)).expect("op"))
    });
    c.bench_function("ce-ignore-4x21x128x128-fwd", |b| {
        b.iter(|| ops::cross_entropy_ignore(&logits, &target).expect("op"))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench_ops
}
criterion_main!(benches);
