//! λ sampler, pairings and MITrans.

use candle_core::{DType, Device, Tensor};
use core_seg::nn::ParamStore;
use core_seg::rng::SegRng;
use core_seg::Result;
use guidedmix::pairing::{align_loss, pair_indices, random_pairs, sample_lambda, similar_pairs};
use guidedmix::{MITrans, NonLocal2d};

fn randn(seed: u64, shape: &[usize]) -> Result<Tensor> {
    let mut rng = SegRng::new(seed);
    let v: Vec<f64> = (0..shape.iter().product()).map(|_| rng.normal()).collect();
    Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
}

/// 100k draws with `lambda_factor = 0.5` lie in [0, 0.5), mean 0.25 ± 0.005, uniform by a KS test (p > 0.01);
/// with 0.3 they lie in [0, 0.3).
#[test]
fn lambda_is_uniform_below_the_bound() -> Result<()> {
    let mut rng = SegRng::new(8);
    let n = 100_000;
    let mut v: Vec<f64> = (0..n).map(|_| sample_lambda(&mut rng, 0.5)).collect::<Result<_>>()?;
    assert!(v.iter().all(|l| (0.0..0.5).contains(l)));
    let mean = v.iter().sum::<f64>() / n as f64;
    assert!((mean - 0.25).abs() < 0.005, "mean {mean}");
    v.sort_by(f64::total_cmp);
    let d = v.iter().enumerate().map(|(i, l)| ((i + 1) as f64 / n as f64 - l / 0.5).abs()).fold(0.0, f64::max);
    assert!(d < 1.628 / (n as f64).sqrt(), "KS statistic {d}");
    assert!((0..10_000).all(|_| sample_lambda(&mut rng, 0.3).is_ok_and(|l| (0.0..0.3).contains(&l))));
    assert!(sample_lambda(&mut rng, 0.0).is_err());
    Ok(())
}

#[test]
fn random_pairs_are_a_permutation_and_need_equal_batches() -> Result<()> {
    let mut rng = SegRng::new(1);
    let p = random_pairs(&mut rng, 6, 6)?;
    let mut u: Vec<usize> = p.iter().map(|x| x.1).collect();
    assert_eq!(p.iter().map(|x| x.0).collect::<Vec<_>>(), (0..6).collect::<Vec<_>>());
    u.sort();
    assert_eq!(u, (0..6).collect::<Vec<_>>());
    assert!(random_pairs(&mut rng, 4, 6).is_err());
    Ok(())
}

/// `g_u[j] = g_l[2]` for all j → every l(j) = 2; orthogonal one-hot features pick the matching index.
#[test]
fn similar_pairing_picks_the_most_similar_labelled_image() -> Result<()> {
    let g_l = randn(3, &[4, 16])?;
    let g_u = g_l.narrow(0, 2, 1)?.broadcast_as((3, 16))?.contiguous()?;
    assert_eq!(similar_pairs(&g_l, &g_u)?, vec![(2, 0), (2, 1), (2, 2)]);
    // Orthogonal: labelled i is e_i; unlabelled j is e_{σ(j)} scaled, plus a small component elsewhere.
    let sigma = [3usize, 0, 2, 1];
    let eye = Tensor::eye(4, DType::F64, &Device::Cpu)?;
    let mut rows = Vec::new();
    for &s in &sigma {
        rows.push(((eye.narrow(0, s, 1)? * 5.0)? + 0.1)?);
    }
    let g_u = Tensor::cat(&rows, 0)?;
    let pairs = similar_pairs(&eye, &g_u)?;
    assert_eq!(pairs, sigma.iter().enumerate().map(|(j, &s)| (s, j)).collect::<Vec<_>>());
    let (li, ui) = pair_indices(&pairs, &Device::Cpu)?;
    let a = align_loss(&eye, &g_u, &li, &ui)?.to_scalar::<f64>()?;
    let cos = 5.1 / (5.1f64.powi(2) + 3.0 * 0.01).sqrt();
    assert!((a - (1.0 - cos)).abs() < 1e-9, "{a}");
    Ok(())
}

/// Output `[B, Ch, h, w]`; attention rows sum to 1; at init the non-local block is the identity (conv_out = 0).
#[test]
fn mitrans_shapes_attention_rows_and_identity_at_init() -> Result<()> {
    let store = ParamStore::new(4);
    let vb = store.var_builder(DType::F64, &Device::Cpu);
    let m = MITrans::new(20, 8, 2, vb.pp("mitrans"))?;
    let x = randn(5, &[2, 20, 5, 6])?;
    assert_eq!(m.forward(&x)?.dims(), [2, 8, 5, 6]);
    let o = randn(6, &[2, 8, 5, 6])?;
    let w = m.nl_block.attention(&o)?;
    assert_eq!(w.dims(), [2, 30, 30]);
    let dev = (w.sum(2)? - 1.0)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>()?;
    assert!(dev < 1e-6, "{dev}");
    let same = (m.nl_block.forward(&o)? - &o)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>()?;
    assert_eq!(same, 0.0);
    let names: Vec<String> = store.named_vars().into_iter().map(|(n, _)| n).collect();
    for n in
        ["mitrans.convs.0.conv.weight", "mitrans.nl_block.theta.conv.bias", "mitrans.nl_block.conv_out.conv.weight"]
    {
        assert!(names.iter().any(|x| x == n), "{n} missing in {names:?}");
    }
    assert!(names.iter().any(|x| x == "mitrans.conv_cat.conv.weight"));
    // Ci = Ch / reduction.
    let nl = NonLocal2d::new(8, 2, ParamStore::new(1).var_builder(DType::F64, &Device::Cpu))?;
    assert_eq!(nl.inter, 4);
    Ok(())
}
