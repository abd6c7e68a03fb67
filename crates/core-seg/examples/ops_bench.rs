//! Micro-benchmark of the non-conv kernels vs the composite reference paths (`core_seg::ops`, Candle BN
//! arithmetic) at DeepLabV3+-R18 sizes, batch 4, 128² input, f32: forward and forward+backward, ms (median).
//!
//! `cargo run --release -p core-seg --example ops_bench [reps]`. The "f+b" columns include the harness
//! (`sum(y·r)` and its backward, Candle ops); the first row times that harness alone on the largest tensor.

use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use core_seg::{kernels, ops};

fn median_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(|a, b| a.total_cmp(b));
    t[t.len() / 2]
}

type Op<'a> = Box<dyn Fn(&Tensor) -> Tensor + 'a>;

/// (forward ms, forward+backward ms) of `sum(f(x)·r)`.
fn time(reps: usize, x: &Tensor, f: &Op) -> (f64, f64) {
    let fwd = median_ms(reps, || {
        f(x);
    });
    let xv = Var::from_tensor(x).unwrap();
    let y = f(xv.as_tensor());
    let r = Tensor::randn(0f32, 1.0, y.shape(), x.device()).unwrap();
    let both = median_ms(reps, || {
        let y = f(xv.as_tensor());
        (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    });
    (fwd, both)
}

fn bn_ref(x: &Tensor, g: &Tensor, b: &Tensor) -> Tensor {
    let c = x.dims()[1];
    let mean = x.mean_keepdim((0, 2, 3)).unwrap();
    let xc = x.broadcast_sub(&mean).unwrap();
    let var = xc.sqr().unwrap().mean_keepdim((0, 2, 3)).unwrap();
    let inv = (var + 1e-5).unwrap().sqrt().unwrap().recip().unwrap();
    xc.broadcast_mul(&inv)
        .unwrap()
        .broadcast_mul(&g.reshape((1, c, 1, 1)).unwrap())
        .unwrap()
        .broadcast_add(&b.reshape((1, c, 1, 1)).unwrap())
        .unwrap()
}

fn main() -> candle_core::Result<()> {
    let reps: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let dev = Device::Cpu;
    println!("threads {}, batch 4, f32, median of {reps} (ms)", rayon::current_num_threads());
    println!("{:<40} {:>10} {:>10} {:>10} {:>10}", "op", "ref fwd", "ours fwd", "ref f+b", "ours f+b");
    let x64 = Tensor::randn(0f32, 1.0, (4, 64, 64, 64), &dev)?;
    let (g, b) = (Tensor::ones(64, candle_core::DType::F32, &dev)?, Tensor::zeros(64, candle_core::DType::F32, &dev)?);
    let logits = Tensor::randn(0f32, 1.0, (4, 21, 128, 128), &dev)?;
    let labels: Vec<u32> = (0..4 * 128 * 128).map(|i| if i % 17 == 0 { 255 } else { (i % 21) as u32 }).collect();
    let target = Tensor::from_vec(labels, (4, 128, 128), &dev)?;
    let x32 = Tensor::randn(0f32, 1.0, (4, 21, 32, 32), &dev)?;
    let cases: Vec<(&str, Tensor, Op, Op)> = vec![
        ("harness only: y = x [4,21,128,128]", logits.clone(), Box::new(|x| x.clone()), Box::new(|x| x.clone())),
        (
            "batch norm train [4,64,64,64]",
            x64.clone(),
            Box::new(|x| bn_ref(x, &g, &b)),
            Box::new(|x| kernels::batch_norm_train(x, &g, &b, 1e-5).unwrap().0),
        ),
        (
            "max pool 3x3 s2 p1 [4,64,64,64]",
            x64.clone(),
            Box::new(|x| ops::max_pool_3x3_s2_p1(x).unwrap()),
            Box::new(|x| kernels::max_pool_3x3_s2_p1(x).unwrap()),
        ),
        (
            "bilinear [4,21,32,32] -> 128² (ac=false)",
            x32.clone(),
            Box::new(|x| ops::resize_bilinear(x, (128, 128), false).unwrap()),
            Box::new(|x| kernels::resize_bilinear(x, (128, 128), false).unwrap()),
        ),
        (
            "softmax-CE [4,21,128,128]",
            logits.clone(),
            Box::new(|x| ops::cross_entropy_per_pixel(x, &target).unwrap().0),
            Box::new(|x| kernels::softmax_cross_entropy(x, &target).unwrap()),
        ),
    ];
    for (name, x, reference, ours) in &cases {
        let (rf, rb) = time(reps, x, reference);
        let (of, ob) = time(reps, x, ours);
        println!("{name:<40} {rf:>10.2} {of:>10.2} {rb:>10.2} {ob:>10.2}");
    }
    Ok(())
}
