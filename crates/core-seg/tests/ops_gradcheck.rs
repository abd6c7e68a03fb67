//! f64 central-difference gradient checks (h = 1e-6, ≤ 24 probes per input, loss `Σ out·R`, relative error
//! < 1e-6) of every op in `core_seg::ops` and of `nn::BatchNorm2d` in training mode.

mod common;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use common::{fd_check, get, load, randn};
use core_seg::nn::{BatchNorm2d, BnConfig, Mode, ParamStore};
use core_seg::ops::{self, OhemConfig};

const TOL: f64 = 1e-6;
const PROBES: usize = 24;

fn check(name: &str, f: &dyn Fn(&Tensor) -> Result<Tensor>, x: &Tensor, r: &Tensor) -> Result<()> {
    let e = fd_check(f, x, r, PROBES)?;
    println!("{name:32} max rel err {e:.2e}");
    assert!(e < TOL, "{name}: finite-difference relative error {e:e}");
    Ok(())
}

/// R with the shape of `f(x)`.
fn r_for(f: &dyn Fn(&Tensor) -> Result<Tensor>, x: &Tensor, seed: u64) -> Result<Tensor> {
    randn(seed, f(x)?.dims())
}

#[test]
fn gradcheck_resize_bilinear() -> Result<()> {
    let cases: [(&[usize], (usize, usize)); 7] = [
        (&[1, 1, 21, 21], (81, 81)),
        (&[1, 1, 81, 81], (321, 321)),
        (&[1, 1, 81, 81], (21, 21)),
        (&[2, 3, 7, 7], (5, 5)),
        (&[2, 3, 4, 5], (6, 7)),
        (&[1, 2, 5, 8], (9, 3)),
        (&[2, 2, 1, 1], (3, 4)),
    ];
    for (i, (shape, size)) in cases.iter().enumerate() {
        for ac in [true, false] {
            let x = randn(100 + i as u64, shape)?;
            let f = |x: &Tensor| -> Result<Tensor> { Ok(ops::resize_bilinear(x, *size, ac)?) };
            let r = r_for(&f, &x, 200 + i as u64)?;
            check(&format!("resize {shape:?}->{size:?} ac={ac}"), &f, &x, &r)?;
        }
    }
    Ok(())
}

#[test]
fn gradcheck_max_pool() -> Result<()> {
    for (i, shape) in [[2, 3, 7, 9], [1, 2, 8, 8], [1, 1, 2, 3], [1, 1, 1, 1]].iter().enumerate() {
        let x = randn(300 + i as u64, shape)?;
        let f = |x: &Tensor| -> Result<Tensor> { Ok(ops::max_pool_3x3_s2_p1(x)?) };
        let r = r_for(&f, &x, 400 + i as u64)?;
        check(&format!("maxpool {shape:?}"), &f, &x, &r)?;
    }
    Ok(())
}

#[test]
fn gradcheck_losses() -> Result<()> {
    // Inputs and targets (with 255s) from the fixture; R from the project RNG.
    let t = load("ops.safetensors")?;
    let logits = get(&t, "ce_ignore.logits")?;
    let target = get(&t, "ce_ignore.target")?;
    let one = Tensor::new(1.0f64, &Device::Cpu)?;
    let ce = |x: &Tensor| -> Result<Tensor> { Ok(ops::cross_entropy_ignore(x, target)?) };
    check("ce ignore", &ce, logits, &one)?;
    let pix = |x: &Tensor| -> Result<Tensor> { Ok(ops::cross_entropy_per_pixel(x, target)?.0) };
    check("ce per pixel", &pix, logits, &r_for(&pix, logits, 500)?)?;
    // masked_mean with a fixed mask and denominator (UniMatch's unsupervised normalisation).
    let (n, _, h, w) = logits.dims4()?;
    let conf = randn(501, &[n, h, w])?.ge(0.0)?;
    let denom = target.ne(255i64)?;
    let mm = |x: &Tensor| -> Result<Tensor> {
        let (l, _) = ops::cross_entropy_per_pixel(x, target)?;
        Ok(ops::masked_mean(&l, &conf, &denom)?)
    };
    check("masked mean", &mm, logits, &one)?;
    // OHEM: each selection branch. The selection is fixed: no q lies within 1e-5 of the threshold.
    for (case, min_kept) in [("ohem_thresh", 10), ("ohem_kth", 60), ("ohem_fallback", 1000), ("ohem_minkept0", 0)] {
        let lg = get(&t, &format!("{case}.logits"))?;
        let tg = get(&t, &format!("{case}.target"))?;
        let cfg = OhemConfig { thresh: 0.7, min_kept };
        let f = |x: &Tensor| -> Result<Tensor> { Ok(ops::ohem_cross_entropy(x, tg, cfg)?) };
        check(&format!("ohem {case}"), &f, lg, &one)?;
    }
    Ok(())
}

#[test]
fn gradcheck_shuffle_and_dropout2d() -> Result<()> {
    let x = randn(600, &[2, 12, 3, 4])?;
    let f = |x: &Tensor| -> Result<Tensor> { Ok(ops::pixel_shuffle(x, 2)?) };
    check("pixel_shuffle r2", &f, &x, &r_for(&f, &x, 601)?)?;
    let x = randn(602, &[2, 3, 6, 9])?;
    let f = |x: &Tensor| -> Result<Tensor> { Ok(ops::pixel_unshuffle(x, 3)?) };
    check("pixel_unshuffle r3", &f, &x, &r_for(&f, &x, 603)?)?;
    // Dropout2d with a fixed mask drawn by the project RNG (p = 0.5: entries 0 or 2).
    let x = randn(604, &[4, 6, 3, 5])?;
    let mut rng = core_seg::rng::SegRng::new(605);
    let mask = ops::dropout2d_mask(4, 6, 0.5, &mut rng, &x)?;
    let f = |x: &Tensor| -> Result<Tensor> { Ok(ops::dropout2d_with_mask(x, &mask)?) };
    check("dropout2d fixed mask", &f, &x, &r_for(&f, &x, 606)?)?;
    Ok(())
}

#[test]
fn gradcheck_batch_norm_train() -> Result<()> {
    let store = ParamStore::new(7);
    let bn = BatchNorm2d::new(3, BnConfig::default(), store.var_builder(DType::F64, &Device::Cpu))?;
    let vars: std::collections::HashMap<_, _> = store.named_vars().into_iter().collect();
    vars["weight"].set(&((randn(700, &[3])? * 0.3)? + 1.0)?)?;
    vars["bias"].set(&(randn(701, &[3])? * 0.2)?)?;
    let x = ((randn(702, &[4, 3, 5, 6])? * 1.5)? + 0.3)?;
    let r = randn(703, &[4, 3, 5, 6])?;
    let fx = |x: &Tensor| -> Result<Tensor> { Ok(bn.forward_t(x, Mode::Train)?) };
    check("batchnorm train, x", &fx, &x, &r)?;
    for p in ["weight", "bias"] {
        let var = vars[p].clone();
        let p0 = var.as_tensor().copy()?;
        let f = |v: &Tensor| -> Result<Tensor> {
            var.set(v)?;
            let y = bn.forward_t(&x, Mode::Train)?;
            Ok(y)
        };
        // fd_check differentiates w.r.t. its own copy, so compare against the var's gradient directly.
        let fd = fd_check_param(&f, &var, &bn, &x, &r)?;
        var.set(&p0)?;
        println!("batchnorm train, {p:6}              max rel err {fd:.2e}");
        assert!(fd < TOL, "batch norm {p}: relative error {fd:e}");
    }
    Ok(())
}

/// FD check of a BN parameter held in a `Var`: analytic gradient from `backward`, central differences by
/// setting the var.
fn fd_check_param(
    f: &dyn Fn(&Tensor) -> Result<Tensor>,
    var: &candle_core::Var,
    bn: &BatchNorm2d,
    x: &Tensor,
    r: &Tensor,
) -> Result<f64> {
    let loss = (bn.forward_t(x, Mode::Train)? * r)?.sum_all()?;
    let grads = loss.backward()?;
    let g: Vec<f64> = grads.get(var.as_tensor()).expect("param grad").to_vec1()?;
    let base: Vec<f64> = var.as_tensor().to_vec1()?;
    let gmax = g.iter().fold(0f64, |m, v| m.max(v.abs()));
    let mut worst = 0f64;
    for i in 0..base.len() {
        let eval = |d: f64| -> Result<f64> {
            let mut v = base.clone();
            v[i] += d;
            let y = f(&Tensor::new(v, &Device::Cpu)?)?;
            Ok((y * r)?.sum_all()?.to_scalar::<f64>()?)
        };
        let fd = (eval(1e-6)? - eval(-1e-6)?) / 2e-6;
        worst = worst.max((fd - g[i]).abs() / g[i].abs().max(fd.abs()).max(1e-1 * gmax));
    }
    Ok(worst)
}
