//! PixelShuffle and the reconstruction head.

use core_seg::testing as toy;

use aux_mim::classwise::masked_rec_loss;
use aux_mim::head::RecHead;
use aux_mim::{FeatureLevel, RecLoss};
use candle_core::{DType, Device, Tensor, Var};
use core_seg::nn::ParamStore;
use core_seg::ops::{pixel_shuffle, pixel_unshuffle};
use core_seg::rng::SegRng;
use core_seg::Result;

fn randn(rng: &mut SegRng, shape: &[usize], dt: DType) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
    Ok(Tensor::from_vec(v, shape, &Device::Cpu)?.to_dtype(dt)?)
}

/// `out[n, c, h·r + i, w·r + j] = in[n, c·r² + i·r + j, h, w]` on random input; unshuffle ∘ shuffle = id.
#[test]
fn pixel_shuffle_index_formula_and_round_trip() -> Result<()> {
    let mut rng = SegRng::new(1);
    let (n, c, r, h, w) = (2, 3, 4, 3, 5);
    let x = randn(&mut rng, &[n, c * r * r, h, w], DType::F32)?;
    let y = pixel_shuffle(&x, r)?;
    assert_eq!(y.dims(), &[n, c, h * r, w * r]);
    let xv = x.flatten_all()?.to_vec1::<f32>()?;
    let yv = y.flatten_all()?.to_vec1::<f32>()?;
    for nn in 0..n {
        for cc in 0..c {
            for hh in 0..h {
                for ww in 0..w {
                    for i in 0..r {
                        for j in 0..r {
                            let out = ((nn * c + cc) * h * r + hh * r + i) * w * r + ww * r + j;
                            let inp = ((nn * c * r * r + cc * r * r + i * r + j) * h + hh) * w + ww;
                            assert_eq!(yv[out], xv[inp]);
                        }
                    }
                }
            }
        }
    }
    assert_eq!(pixel_unshuffle(&y, r)?.flatten_all()?.to_vec1::<f32>()?, xv);
    Ok(())
}

/// The head maps `[N, C, ⌈S/4⌉, ⌈S/4⌉]` to `[N, 3, S, S]` for S ∈ {64, 96, 321} (and c4 at OS 8 to S).
#[test]
fn rec_head_output_shape() -> Result<()> {
    let store = ParamStore::new(0);
    let model_cfg = toy::tiny_model(3);
    let head = RecHead::for_model(&model_cfg, FeatureLevel::Fuse, store.var_builder(DType::F32, &Device::Cpu).pp("a"))?;
    let c4 = RecHead::for_model(&model_cfg, FeatureLevel::C4, store.var_builder(DType::F32, &Device::Cpu).pp("b"))?;
    let mut rng = SegRng::new(2);
    for s in [64usize, 96, 321] {
        let h = s.div_ceil(4);
        let f = randn(&mut rng, &[2, model_cfg.fuse_channels, h, h], DType::F32)?;
        assert_eq!(head.forward(&f, (s, s))?.dims(), &[2, 3, s, s]);
        let h4 = s.div_ceil(8);
        let f4 = randn(&mut rng, &[1, 8 * 8, h4, h4], DType::F32)?;
        assert_eq!(c4.forward(&f4, (s, s))?.dims(), &[1, 3, s, s]);
    }
    // Names under the prefix; the fuse head is 1×1, C → 48 with bias.
    let names: Vec<String> = store.named_vars().into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"a.weight".to_string()) && names.contains(&"a.bias".to_string()));
    assert_eq!(head.conv.weight.dims(), &[48, model_cfg.fuse_channels, 1, 1]);
    assert!(head.forward(&randn(&mut rng, &[1, 16, 4, 4], DType::F32)?, (17, 17)).is_err());
    Ok(())
}

/// f64 gradient check of head + shuffle + crop + masked L1 (w.r.t. the conv weight, bias and input features).
#[test]
fn rec_head_gradient_matches_finite_differences() -> Result<()> {
    let dev = Device::Cpu;
    let mut rng = SegRng::new(3);
    let (n, c, h, s) = (2usize, 5usize, 3usize, 10usize); // 4·3 = 12 ≥ 10: crop is exercised
    let feat = Var::from_tensor(&randn(&mut rng, &[n, c, h, h], DType::F64)?)?;
    let weight = Var::from_tensor(&randn(&mut rng, &[48, c, 1, 1], DType::F64)?)?;
    let bias = Var::from_tensor(&randn(&mut rng, &[48], DType::F64)?)?;
    let target = randn(&mut rng, &[n, 3, s, s], DType::F64)?;
    let mv: Vec<f64> = (0..n * s * s).map(|i| ((i * 5) % 3 != 0) as u8 as f64).collect();
    let msk = Tensor::from_vec(mv, (n, s, s), &dev)?;
    let loss = |f: &Tensor, w: &Tensor, b: &Tensor| -> Result<Tensor> {
        let head = RecHead {
            conv: core_seg::nn::Conv2d { weight: w.clone(), bias: Some(b.clone()), cfg: Default::default() },
            r: 4,
        };
        masked_rec_loss(&head.forward(f, (s, s))?, &target, &msk, RecLoss::L1)
    };
    let l = loss(feat.as_tensor(), weight.as_tensor(), bias.as_tensor())?;
    let grads = l.backward()?;
    let eps = 1e-6;
    let mut checked = 0;
    for (which, var) in [(0, &feat), (1, &weight), (2, &bias)] {
        let g = grads.get(var.as_tensor()).expect("grad").flatten_all()?.to_vec1::<f64>()?;
        let base = var.as_tensor().flatten_all()?.to_vec1::<f64>()?;
        for k in (0..base.len()).step_by(base.len() / 7 + 1) {
            let eval = |d: f64| -> Result<f64> {
                let mut v = base.clone();
                v[k] += d;
                let t = Tensor::from_vec(v, var.as_tensor().shape(), &dev)?;
                let (f, w, b) = match which {
                    0 => (t, weight.as_tensor().clone(), bias.as_tensor().clone()),
                    1 => (feat.as_tensor().clone(), t, bias.as_tensor().clone()),
                    _ => (feat.as_tensor().clone(), weight.as_tensor().clone(), t),
                };
                Ok(loss(&f, &w, &b)?.to_scalar::<f64>()?)
            };
            let fd = (eval(eps)? - eval(-eps)?) / (2.0 * eps);
            assert!((fd - g[k]).abs() < 1e-6 * (1.0 + fd.abs()), "param {which}[{k}]: fd {fd} vs {}", g[k]);
            checked += 1;
        }
    }
    assert!(checked >= 15);
    Ok(())
}
