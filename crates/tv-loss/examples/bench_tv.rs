//! Times the TV loss forward + backward: composite vs the fused CPU kernel (variant A).
//! `cargo run --release -p tv-loss --example bench_tv [N K H W reps]`

use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use tv_loss::{tv_loss, TvConfig, TvKernel};

fn main() -> core_seg::Result<()> {
    let a: Vec<usize> = std::env::args().skip(1).filter_map(|s| s.parse().ok()).collect();
    let (n, k, h, w, reps) = match a[..] {
        [n, k, h, w, r] => (n, k, h, w, r),
        _ => (8, 6, 64, 64, 20),
    };
    let z = Var::from_tensor(&Tensor::randn(0f32, 2.0, (n, k, h, w), &Device::Cpu)?)?;
    let valid = Tensor::ones((n, h, w), DType::U8, &Device::Cpu)?;
    for kernel in [TvKernel::Composite, TvKernel::Fused, TvKernel::Composite, TvKernel::Fused] {
        let cfg = TvConfig { kernel, ..Default::default() };
        let t = Instant::now();
        let mut v = 0f32;
        for _ in 0..reps {
            let l = tv_loss(z.as_tensor(), Some(&valid), &cfg)?;
            let g = l.backward()?;
            v = l.to_scalar::<f32>()?
                + g.get(&z).map(|g| g.sum_all().and_then(|s| s.to_scalar::<f32>()).unwrap_or(0.0)).unwrap_or(0.0);
        }
        let ms = t.elapsed().as_secs_f64() * 1e3 / reps as f64;
        println!("[{n},{k},{h},{w}] f32 {kernel:?}: {ms:.2} ms per forward+backward (check {v:.6})");
    }
    Ok(())
}
