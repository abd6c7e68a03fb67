//! TV as a plug-in term in the one training loop: supervised with sparse pixel labels, UniMatch and FixMatch
//! (weak view, all views, decoder resolution), λ = 0 bit-identity and warm-up.

mod toy;

use candle_core::{DType, Device, Tensor};
use core_seg::batch::BatchSource;
use core_seg::frameworks::Supervised;
use core_seg::frameworks::{self, Method, SemiConfig};
use core_seg::train::{TrainConfig, Trainer};
use core_seg::Result;
use toy::{tiny_model, SparseSource, ToySemiSource, ToySource};
use tv_loss::{build, ApplyTo, TvAt, TvConfig};

fn toy_source() -> SparseSource<ToySource> {
    SparseSource { inner: ToySource { n_train: 8, batch: 2, size: 32, dtype: DType::F32 }, fraction: 0.05 }
}

fn term(recs: &[(String, f64)], name: &str) -> f64 {
    recs.iter().find(|(n, _)| n == name).map(|(_, v)| *v).unwrap_or(f64::NAN)
}

/// Per-step `(loss, loss_x, loss_tv)` and the final classifier weights.
type Run = (Vec<(f64, f64, f64)>, Vec<f32>);

/// Runs `steps` supervised steps (sparse labels, 5%) with an optional TV term.
fn supervised_run(tv: Option<TvConfig>, steps: usize) -> Result<Run> {
    let cfg = TrainConfig { iters: steps, lr: 0.01, seed: 7, ..Default::default() };
    let fw = Box::new(Supervised { criterion: Default::default() });
    let mut t = Trainer::new(&tiny_model(3), cfg, fw, DType::F32, &Device::Cpu)?;
    if let Some(c) = tv {
        t.add_aux_term(|_vb| build(&c))?;
    }
    let mut src = toy_source();
    let mut out = Vec::new();
    for _ in 0..steps {
        let rec = t.step(&mut src)?;
        out.push((rec.loss, term(&rec.terms, "loss_x"), term(&rec.terms, "loss_tv")));
    }
    let w = t.store.named_vars().into_iter().find(|(n, _)| n == "classifier.weight").expect("classifier").1;
    Ok((out, w.as_tensor().flatten_all()?.to_vec1()?))
}

/// 3 steps of Supervised + TV on 5% sparse labels: finite, logged, added to the total, deterministic.
#[test]
fn supervised_plus_tv_three_steps_on_sparse_labels() -> Result<()> {
    let b = toy_source().inner.batch(0)?;
    let sparse = toy::sparsify_masks(&b.labeled.mask, 0.05, 1)?;
    let labelled = sparse.ne(255u32)?.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
    assert!(labelled > 0.0 && labelled < 0.06 * 2.0 * 32.0 * 32.0, "sparse mode keeps ~5%: {labelled}");
    let cfg = TvConfig { enabled: true, weight: 0.5, ..Default::default() };
    let (a, wa) = supervised_run(Some(cfg), 3)?;
    for &(loss, lx, ltv) in &a {
        assert!(loss.is_finite() && lx > 0.0 && ltv > 0.0, "{loss} {lx} {ltv}");
        assert!((loss - (lx + ltv)).abs() < 1e-5 * loss.max(1.0), "total {loss} != {lx} + {ltv}");
    }
    let (b2, wb) = supervised_run(Some(cfg), 3)?;
    assert_eq!(a, b2, "non-deterministic");
    assert_eq!(wa, wb);
    Ok(())
}

/// `tv.weight = 0` gives a trajectory bit-identical to the plain supervised run; a positive weight
/// changes it.
#[test]
fn zero_weight_is_bit_identical_to_plain_supervised() -> Result<()> {
    let (plain, wp) = supervised_run(None, 3)?;
    let (zero, wz) = supervised_run(Some(TvConfig { weight: 0.0, ..Default::default() }), 3)?;
    let losses = |v: &[(f64, f64, f64)]| v.iter().map(|x| x.0).collect::<Vec<_>>();
    assert_eq!(losses(&plain), losses(&zero));
    assert_eq!(wp, wz);
    assert!(zero.iter().all(|x| x.2 == 0.0));
    // Warm-up over the whole run: λ(0) = 0, so step 0 matches the plain run exactly, later steps differ.
    let (warm, _) = supervised_run(Some(TvConfig { weight: 1.0, warmup_frac: 1.0, ..Default::default() }), 3)?;
    assert_eq!(warm[0].0, plain[0].0);
    assert!(warm[1].2 > 0.0 && warm[2].2 > warm[1].2 * 1.2, "{warm:?}");
    let (pos, wpos) = supervised_run(Some(TvConfig { weight: 1.0, ..Default::default() }), 3)?;
    assert!(pos[0].2 > 0.0 && wpos != wp);
    Ok(())
}

/// UniMatch and FixMatch with TV on labelled + weak (auto), all views, and at the decoder resolution.
#[test]
fn semi_supervised_frameworks_with_tv_term() -> Result<()> {
    let cases = [
        (Method::Unimatch, ApplyTo::Auto, TvAt::Output),
        (Method::Unimatch, ApplyTo::AllViews, TvAt::Decoder),
        (Method::Fixmatch, ApplyTo::UnlabeledWeak, TvAt::Output),
    ];
    for (method, apply_to, at) in cases {
        let semi = SemiConfig { method: method.clone(), ..Default::default() };
        let cfg = TrainConfig { iters: 2, lr: 0.01, seed: 3, ..Default::default() };
        let mut t = Trainer::new(&tiny_model(3), cfg, frameworks::build(&semi)?, DType::F32, &Device::Cpu)?;
        let tv = TvConfig { apply_to, at, weight: 0.3, ..Default::default() };
        t.add_aux_term(|_vb| build(&tv))?;
        let mut src = SparseSource { inner: ToySemiSource { batch: 2, size: 32 }, fraction: 0.05 };
        for _ in 0..2 {
            let rec = t.step(&mut src)?;
            let ltv = term(&rec.terms, "loss_tv");
            assert!(rec.loss.is_finite() && ltv > 0.0, "{method:?} {apply_to:?} {at:?}: {ltv}");
        }
    }
    // `unlabeled_weak` under the supervised framework is an error, not a silent no-op.
    let cfg = TrainConfig { iters: 1, seed: 3, ..Default::default() };
    let mut t = Trainer::new(
        &tiny_model(3),
        cfg,
        Box::new(Supervised { criterion: Default::default() }),
        DType::F32,
        &Device::Cpu,
    )?;
    t.add_aux_term(|_vb| build(&TvConfig { apply_to: ApplyTo::UnlabeledWeak, ..Default::default() }))?;
    assert!(t.step(&mut toy_source()).is_err());
    Ok(())
}

/// `tv.at = decoder` re-applies the model's classifier to the decoder features: upsampling those logits reproduces
/// the model's full-resolution logits, for DeepLabV3+ (`classifier`) and DeepLabV3 (`decode_head.conv_seg`).
#[test]
fn decoder_logits_reproduce_the_model_output() -> Result<()> {
    use core_seg::model::{DeepLabConfig, DeepLabV3Plus, HeadKind};
    for head in [HeadKind::Deeplabv3plus, HeadKind::Deeplabv3] {
        let store = core_seg::nn::ParamStore::new(4);
        let cfg = DeepLabConfig { head, ..tiny_model(3) };
        let model = DeepLabV3Plus::new(&cfg, store.var_builder(DType::F32, &Device::Cpu))?;
        let b = toy::toy_batch(&[1, 2], 32, DType::F32, &Device::Cpu)?;
        let out = model.forward_full(&b.image, core_seg::nn::Mode::Eval, None)?;
        let lo = tv_loss::term::decoder_logits(&out.dec, &model)?;
        let up = core_seg::ops::resize_bilinear(&lo, (32, 32), model.head.align_corners())?;
        let err = (up - &out.logits)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(err < 1e-4, "{head:?}: {err}");
    }
    let v = tv_loss::term::resample_valid(&Tensor::ones((2, 32, 32), DType::U8, &Device::Cpu)?, 8, 8)?;
    assert_eq!(v.dims(), &[2, 8, 8]);
    Ok(())
}

/// On the toy data: with sparse masks the supervised CE is the mean over the labelled pixels only, and at
/// r = 100% it equals the dense CE. The class histogram of a prediction sums to 1 over valid pixels.
#[test]
fn sparse_ce_is_the_labelled_pixel_mean_and_histogram_sums_to_one() -> Result<()> {
    let b = toy::toy_batch(&[3, 4], 32, DType::F64, &Device::Cpu)?;
    let z = Tensor::randn(0f64, 1.0, (2, 3, 32, 32), &Device::Cpu)?;
    let dense = core_seg::ops::cross_entropy_ignore(&z, &b.mask)?.to_scalar::<f64>()?;
    let full = toy::sparsify_masks(&b.mask, 1.0, 0)?;
    assert_eq!(core_seg::ops::cross_entropy_ignore(&z, &full)?.to_scalar::<f64>()?, dense);
    let sparse = toy::sparsify_masks(&b.mask, 0.05, 0)?;
    let (ce, lab) = core_seg::ops::cross_entropy_per_pixel(&z, &sparse)?;
    let by_hand = ce.sum_all()?.to_scalar::<f64>()? / lab.sum_all()?.to_scalar::<f64>()?;
    let l = core_seg::ops::cross_entropy_ignore(&z, &sparse)?.to_scalar::<f64>()?;
    assert!((l - by_hand).abs() < 1e-12 && (l - dense).abs() > 1e-6, "{l} {by_hand} {dense}");
    let hist = tv_loss::class_histogram(&z, Some(&b.valid))?;
    assert_eq!(hist.len(), 3);
    assert!((hist.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    Ok(())
}
