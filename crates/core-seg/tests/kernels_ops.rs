//! Batch norm, max pool, bilinear resize and softmax-CE kernels vs the composite reference paths in f64
//! (forward and gradients), f32 vs f64, and central finite differences.

#[path = "kernels_common/mod.rs"]
mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{assert_close, rand_t, rand_vec, vec_of};
use core_seg::kernels::Act;
use core_seg::{kernels, ops};

/// `sum(f(x)·r)` and its gradient w.r.t. each of `inputs` through Candle autograd.
fn loss_and_grads(inputs: &[&Tensor], f: &dyn Fn(&[Tensor]) -> Tensor, r: &Tensor) -> (Vec<f64>, Vec<Vec<f64>>) {
    let vars: Vec<Var> = inputs.iter().map(|t| Var::from_tensor(t).unwrap()).collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(&ts);
    let g = (&y * r.to_dtype(y.dtype()).unwrap()).unwrap().sum_all().unwrap().backward().unwrap();
    let grads = ts.iter().map(|t| vec_of(g.get(t).unwrap())).collect();
    (vec_of(&y), grads)
}

/// Central differences of `sum(f(x)·r)` on a few probed elements of input `which`.
fn fd_check(inputs: &[&Tensor], which: usize, f: &dyn Fn(&[Tensor]) -> Tensor, r: &Tensor, grad: &[f64], seed: u64) {
    let h = 1e-6;
    let base = vec_of(inputs[which]);
    let loss = |v: Vec<f64>| -> f64 {
        let mut ts: Vec<Tensor> = inputs.iter().map(|t| (*t).clone()).collect();
        ts[which] = Tensor::from_vec(v, inputs[which].dims(), &Device::Cpu).unwrap();
        (&f(&ts) * r).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap()
    };
    for pr in rand_vec(6, seed) {
        let i = ((pr.abs() * base.len() as f64) as usize).min(base.len() - 1);
        let (mut p, mut m) = (base.clone(), base.clone());
        p[i] += h;
        m[i] -= h;
        let fd = (loss(p) - loss(m)) / (2.0 * h);
        assert!(
            (fd - grad[i]).abs() <= 1e-6 * grad[i].abs().max(1.0),
            "finite difference input {which} [{i}]: {fd} vs {}",
            grad[i]
        );
    }
}

/// Compares kernel vs reference in f64 (value and all grads), f32 vs f64, and runs FD on every input.
fn compare(
    name: &str,
    inputs: &[&Tensor],
    ours: &dyn Fn(&[Tensor]) -> Tensor,
    reference: &dyn Fn(&[Tensor]) -> Tensor,
    r: &Tensor,
    seed: u64,
) {
    let (y, g) = loss_and_grads(inputs, ours, r);
    let (y_ref, g_ref) = loss_and_grads(inputs, reference, r);
    assert_close(&format!("{name} fwd"), &y, &y_ref, 1e-10);
    for (i, (a, b)) in g.iter().zip(&g_ref).enumerate() {
        assert_close(&format!("{name} grad {i}"), a, b, 1e-10);
    }
    let in32: Vec<Tensor> = inputs.iter().map(|t| t.to_dtype(DType::F32).unwrap()).collect();
    let in32r: Vec<&Tensor> = in32.iter().collect();
    let (y32, g32) = loss_and_grads(&in32r, ours, r);
    assert_close(&format!("{name} f32 fwd"), &y32, &y_ref, 1e-4);
    for (i, (a, b)) in g32.iter().zip(&g_ref).enumerate() {
        assert_close(&format!("{name} f32 grad {i}"), a, b, 1e-4);
    }
    for (i, gi) in g.iter().enumerate() {
        fd_check(inputs, i, ours, r, gi, seed + i as u64);
    }
}

fn bn_reference(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> (Tensor, Tensor, Tensor) {
    let c = x.dims()[1];
    let mean = x.mean_keepdim((0, 2, 3)).unwrap();
    let centered = x.broadcast_sub(&mean).unwrap();
    let var = centered.sqr().unwrap().mean_keepdim((0, 2, 3)).unwrap();
    let inv = (&var + eps).unwrap().sqrt().unwrap().recip().unwrap();
    let y = centered
        .broadcast_mul(&inv)
        .unwrap()
        .broadcast_mul(&gamma.reshape((1, c, 1, 1)).unwrap())
        .unwrap()
        .broadcast_add(&beta.reshape((1, c, 1, 1)).unwrap())
        .unwrap();
    (y, mean.flatten_all().unwrap(), var.flatten_all().unwrap())
}

#[test]
fn batch_norm_train_matches_composite() {
    // 9×11 planes: whole 64-value blocks of the vectorised sums plus a tail.
    for (s, &(n, c, h, w)) in [(2, 3, 5, 7), (4, 5, 3, 3), (3, 2, 1, 1), (2, 3, 9, 11)].iter().enumerate() {
        let seed = 1000 + 10 * s as u64;
        // Offset mean to exercise the shifted one-pass statistics.
        let x = rand_t(&[n, c, h, w], seed).affine(3.0, 5.0).unwrap();
        let gamma = rand_t(&[c], seed + 1);
        let beta = rand_t(&[c], seed + 2);
        let r = rand_t(&[n, c, h, w], seed + 3);
        let eps = 1e-5;
        let (_, m, v) = kernels::batch_norm_train(&x, &gamma, &beta, eps).unwrap();
        let (_, m_ref, v_ref) = bn_reference(&x, &gamma, &beta, eps);
        assert_close("bn mean", &vec_of(&m), &vec_of(&m_ref), 1e-12);
        assert_close("bn var", &vec_of(&v), &vec_of(&v_ref), 1e-10);
        compare(
            &format!("bn {:?}", (n, c, h, w)),
            &[&x, &gamma, &beta],
            &|t| kernels::batch_norm_train(&t[0], &t[1], &t[2], eps).unwrap().0,
            &|t| bn_reference(&t[0], &t[1], &t[2], eps).0,
            &r,
            seed + 4,
        );
    }
    let x = rand_t(&[1, 3, 1, 1], 5);
    let g = rand_t(&[3], 6);
    assert!(kernels::batch_norm_train(&x, &g, &g, 1e-5).is_err());
}

/// `act(BN(x) + r)` from the composite reference: batch statistics (`running = None`) or given ones.
fn bn_act_reference(t: &[Tensor], eps: f64, running: Option<(&Tensor, &Tensor)>, act: Act) -> Tensor {
    let (x, gamma, beta) = (&t[0], &t[1], &t[2]);
    let c = x.dims()[1];
    let y = match running {
        None => bn_reference(x, gamma, beta, eps).0,
        Some((m, v)) => {
            let sh = (1, c, 1, 1);
            let inv = (v + eps).unwrap().sqrt().unwrap().recip().unwrap().reshape(sh).unwrap();
            let scale = inv.broadcast_mul(&gamma.reshape(sh).unwrap()).unwrap();
            let xc = x.broadcast_sub(&m.reshape(sh).unwrap()).unwrap();
            xc.broadcast_mul(&scale).unwrap().broadcast_add(&beta.reshape(sh).unwrap()).unwrap()
        }
    };
    let y = match t.get(3) {
        Some(r) => (y + r).unwrap(),
        None => y,
    };
    match act {
        Act::None => y,
        Act::Relu => y.relu().unwrap(),
        Act::Relu6 => y.relu().unwrap().minimum(6.0).unwrap(),
    }
}

#[test]
fn batch_norm_act_matches_composite() {
    use kernels::BnStats;
    let eps = 1e-5;
    let shapes = [(2, 3, 5, 7), (3, 4, 3, 2), (3, 2, 1, 1), (2, 2, 9, 11)];
    // ReLU6 outputs at 0, at 6, and in total.
    let mut clipped = [0usize; 3];
    for (s, &(n, c, h, w)) in shapes.iter().enumerate() {
        let cases = [
            (0, false, Act::Relu),
            (0, true, Act::Relu),
            (0, true, Act::None),
            (1, false, Act::Relu),
            (1, true, Act::Relu),
            (0, false, Act::Relu6),
            (0, true, Act::Relu6),
            (1, false, Act::Relu6),
            (1, true, Act::Relu6),
        ];
        for (k, &(mode, residual, act)) in cases.iter().enumerate() {
            let seed = 3000 + 100 * s as u64 + 10 * k as u64;
            let x = rand_t(&[n, c, h, w], seed).affine(2.0, 0.5).unwrap();
            // ReLU6: |γ| up to 8, so that outputs lie below 0, inside (0, 6) and above 6.
            let gscale = if act == Act::Relu6 { 8.0 } else { 1.0 };
            let gamma = rand_t(&[c], seed + 1).affine(gscale, 0.0).unwrap();
            let beta = rand_t(&[c], seed + 2);
            let rr = rand_t(&[n, c, h, w], seed + 3);
            let r = rand_t(&[n, c, h, w], seed + 4);
            let mean = rand_t(&[c], seed + 5);
            let var = rand_t(&[c], seed + 6).abs().unwrap().affine(1.0, 0.1).unwrap();
            let mut inputs = vec![&x, &gamma, &beta];
            if residual {
                inputs.push(&rr);
            }
            let running = (mode == 1).then_some((&mean, &var));
            let ours = |t: &[Tensor]| {
                let st = match running {
                    Some((m, v)) => BnStats::Running(m, v),
                    None => BnStats::Batch,
                };
                let (y, stats) = kernels::batch_norm_act(&t[0], &t[1], &t[2], eps, st, t.get(3), act).unwrap();
                assert_eq!(stats.is_some(), running.is_none());
                y
            };
            let name = format!("bn_act {:?} eval={mode} residual={residual} {act:?}", (n, c, h, w));
            if act == Act::Relu6 {
                let y = vec_of(&bn_act_reference(
                    &inputs.iter().map(|t| (*t).clone()).collect::<Vec<_>>(),
                    eps,
                    running,
                    act,
                ));
                clipped[0] += y.iter().filter(|v| **v == 0.0).count();
                clipped[1] += y.iter().filter(|v| **v == 6.0).count();
                clipped[2] += y.len();
            }
            compare(&name, &inputs, &ours, &|t| bn_act_reference(t, eps, running, act), &r, seed + 7);
        }
    }
    let [lo, hi, all] = clipped;
    assert!(lo > 0 && hi > 0 && all - lo - hi > all / 10, "ReLU6 cases: {lo} zeros and {hi} sixes of {all} outputs");
    // Batch statistics equal the plain kernel's; one value per channel is refused in training mode.
    let x = rand_t(&[2, 3, 4, 5], 77);
    let g = rand_t(&[3], 78);
    let (_, st) = kernels::batch_norm_act(&x, &g, &g, eps, BnStats::Batch, None, true).unwrap();
    let (m, v) = st.unwrap();
    let (_, m_ref, v_ref) = kernels::batch_norm_train(&x, &g, &g, eps).unwrap();
    assert_eq!((vec_of(&m), vec_of(&v)), (vec_of(&m_ref), vec_of(&v_ref)));
    let x1 = rand_t(&[1, 3, 1, 1], 79);
    assert!(kernels::batch_norm_act(&x1, &g, &g, eps, BnStats::Batch, None, true).is_err());
}

/// `BatchNorm2d::forward_act` with ReLU6 equals batch norm followed by a clamp to [0, 6], and updates the
/// running statistics as `forward_t` does (training), or uses them (evaluation).
#[test]
fn batch_norm_layer_forward_act_relu6() {
    use core_seg::nn::{BatchNorm2d, BnConfig, Mode, ParamStore};
    let dev = Device::Cpu;
    let store = ParamStore::new(3);
    let vb = store.var_builder(DType::F64, &dev);
    let (mut fused, mut plain) = (
        BatchNorm2d::new(5, BnConfig::default(), vb.pp("a")).unwrap(),
        BatchNorm2d::new(5, BnConfig::default(), vb.pp("b")).unwrap(),
    );
    // γ = 5 (outputs up to ±8.7 in training mode), β random.
    let gamma = Tensor::full(5f64, 5, &dev).unwrap();
    let beta = rand_t(&[5], 91);
    (fused.weight, fused.bias, plain.weight, plain.bias) = (gamma.clone(), beta.clone(), gamma, beta);
    let x = rand_t(&[2, 5, 6, 7], 90).affine(20.0, 3.0).unwrap();
    for mode in [Mode::Train, Mode::Eval] {
        let y = fused.forward_act(&x, mode, None, Act::Relu6).unwrap();
        let y_ref = plain.forward_t(&x, mode).unwrap().clamp(0.0, 6.0).unwrap();
        assert_close(&format!("forward_act relu6 {mode:?}"), &vec_of(&y), &vec_of(&y_ref), 1e-12);
        let v = vec_of(&y);
        assert!(v.contains(&0.0) && v.contains(&6.0), "{mode:?}: no clipped value");
        assert_close(
            "running mean",
            &vec_of(fused.running_mean.as_tensor()),
            &vec_of(plain.running_mean.as_tensor()),
            1e-12,
        );
        assert_close(
            "running var",
            &vec_of(fused.running_var.as_tensor()),
            &vec_of(plain.running_var.as_tensor()),
            1e-12,
        );
    }
}

#[test]
fn max_pool_matches_reference_and_first_max_on_ties() {
    for (s, &(n, c, h, w)) in [(2, 3, 7, 9), (1, 2, 8, 8), (2, 1, 5, 4), (1, 1, 1, 2)].iter().enumerate() {
        let seed = 2000 + 10 * s as u64;
        let x = rand_t(&[n, c, h, w], seed);
        let (oh, ow) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
        let r = rand_t(&[n, c, oh, ow], seed + 1);
        compare(
            &format!("maxpool {:?}", (n, c, h, w)),
            &[&x],
            &|t| kernels::max_pool_3x3_s2_p1(&t[0]).unwrap(),
            &|t| ops::reference::max_pool_3x3_s2_p1(&t[0]).unwrap(),
            &r,
            seed + 2,
        );
    }
    // Constant input: every window's first in-image tap wins, gradient 1 there.
    let x = Var::from_tensor(&Tensor::zeros((1, 1, 4, 4), DType::F64, &Device::Cpu).unwrap()).unwrap();
    let y = kernels::max_pool_3x3_s2_p1(x.as_tensor()).unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    let dx = vec_of(g.get(x.as_tensor()).unwrap());
    let mut want = vec![0.0; 16];
    for &(r, c) in &[(0, 0), (0, 1), (1, 0), (1, 1)] {
        want[r * 4 + c] = 1.0;
    }
    assert_eq!(dx, want);
}

#[test]
fn resize_bilinear_matches_matmul_reference() {
    let cases = [
        ((2, 3, 21, 21), (81, 81)),
        ((1, 2, 7, 7), (5, 5)),
        ((2, 2, 5, 7), (12, 9)),
        ((1, 3, 9, 6), (4, 11)),
        ((1, 1, 1, 3), (2, 5)),
    ];
    for (s, &((n, c, h, w), (oh, ow))) in cases.iter().enumerate() {
        for align in [false, true] {
            let seed = 3000 + 10 * s as u64 + align as u64;
            let x = rand_t(&[n, c, h, w], seed);
            let r = rand_t(&[n, c, oh, ow], seed + 1);
            compare(
                &format!("resize {:?} -> {:?} align {align}", (n, c, h, w), (oh, ow)),
                &[&x],
                &|t| kernels::resize_bilinear(&t[0], (oh, ow), align).unwrap(),
                &|t| ops::reference::resize_bilinear(&t[0], (oh, ow), align).unwrap(),
                &r,
                seed + 2,
            );
        }
    }
}

#[test]
fn softmax_cross_entropy_matches_reference() {
    for (s, &(n, k, h, w)) in [(2, 5, 4, 6), (1, 21, 7, 5), (3, 2, 3, 3)].iter().enumerate() {
        let seed = 4000 + 10 * s as u64;
        let logits = rand_t(&[n, k, h, w], seed).affine(4.0, 0.0).unwrap();
        let labels: Vec<u32> = rand_vec(n * h * w, seed + 1)
            .iter()
            .map(|v| if *v > 0.7 { 255 } else { ((v.abs() * k as f64) as u32).min(k as u32 - 1) })
            .collect();
        let target = Tensor::from_vec(labels, (n, h, w), &Device::Cpu).unwrap();
        let r = rand_t(&[n, h, w], seed + 2);
        let tg = target.clone();
        let tg2 = target.clone();
        compare(
            &format!("softmax-ce {:?}", (n, k, h, w)),
            &[&logits],
            &move |t| kernels::softmax_cross_entropy(&t[0], &tg).unwrap(),
            &move |t| ops::reference::cross_entropy_per_pixel(&t[0], &tg2).unwrap().0,
            &r,
            seed + 3,
        );
    }
    let logits = rand_t(&[1, 3, 2, 2], 1);
    let bad = Tensor::from_vec(vec![0u32, 1, 3, 255], (1, 2, 2), &Device::Cpu).unwrap();
    assert!(kernels::softmax_cross_entropy(&logits, &bad).is_err());
}

#[test]
fn is_supported_reports_cpu_float_tensors() {
    assert!(kernels::is_supported(&rand_t(&[2], 1)));
    assert!(kernels::is_supported(&rand_t(&[2], 1).to_dtype(DType::F32).unwrap()));
    assert!(!kernels::is_supported(&rand_t(&[2], 1).to_dtype(DType::BF16).unwrap()));
}

/// Max pooling against a naive row-major scan with PyTorch's rule (`v > m || isnan(v)`: the first maximum, the
/// last NaN), on inputs with many ties (values in {0, 1, 2}) and widths that run the vectorised inner columns
/// (odd and even, up to 33), and with NaNs: values, and gradients landing on the chosen tap.
#[test]
fn max_pool_ties_and_nan_follow_pytorch() {
    for (s, &(n, c, h, w)) in
        [(2, 3, 9, 17), (1, 2, 16, 32), (1, 1, 7, 33), (1, 1, 3, 1), (1, 1, 2, 3)].iter().enumerate()
    {
        let mut v: Vec<f64> =
            rand_vec(n * c * h * w, 2100 + s as u64).iter().map(|u| (u * 1.5 + 1.5).floor()).collect();
        if s == 0 {
            for i in [5, 40, 41, 300] {
                v[i] = f64::NAN;
            }
        }
        let (oh, ow) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
        let r = rand_vec(n * c * oh * ow, 2150 + s as u64);
        let (mut want_y, mut want_dx) = (vec![0.0; n * c * oh * ow], vec![0.0; n * c * h * w]);
        for p in 0..n * c {
            for (i, j) in (0..oh).flat_map(|i| (0..ow).map(move |j| (i, j))) {
                let mut best: Option<usize> = None;
                for y in (2 * i).saturating_sub(1)..(2 * i + 2).min(h) {
                    for x in (2 * j).saturating_sub(1)..(2 * j + 2).min(w) {
                        let k = p * h * w + y * w + x;
                        if best.is_none_or(|b| v[k] > v[b] || v[k].is_nan()) {
                            best = Some(k);
                        }
                    }
                }
                let (o, b) = (p * oh * ow + i * ow + j, best.expect("a tap in the image"));
                want_y[o] = v[b];
                want_dx[b] += r[o];
            }
        }
        let x = Var::from_tensor(&Tensor::from_vec(v, (n, c, h, w), &Device::Cpu).unwrap()).unwrap();
        let y = kernels::max_pool_3x3_s2_p1(x.as_tensor()).unwrap();
        let got_y = vec_of(&y);
        let same = |a: f64, b: f64| a == b || (a.is_nan() && b.is_nan());
        assert!(got_y.iter().zip(&want_y).all(|(a, b)| same(*a, *b)), "maxpool values {:?}", (n, c, h, w));
        let rt = Tensor::from_vec(r, (n, c, oh, ow), &Device::Cpu).unwrap();
        let g = (y * rt).unwrap().sum_all().unwrap().backward().unwrap();
        assert_eq!(vec_of(g.get(x.as_tensor()).unwrap()), want_dx, "maxpool argmax {:?}", (n, c, h, w));
    }
}
