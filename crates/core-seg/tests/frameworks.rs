//! UniMatch / FixMatch / mean-teacher pieces on tiny hand-computed tensors.

use core_seg::testing as toy;

use candle_core::{DType, Device, Tensor};
use core_seg::batch::BatchSource;
use core_seg::frameworks::{self, ema_update, paste_box, unsup_loss, Method, SemiConfig, UniMatch};
use core_seg::model::DeepLabV3Plus;
use core_seg::nn::{Mode, ParamStore};
use core_seg::ops::cross_entropy_per_pixel;
use core_seg::plugin::{AuxTerm, StepTensors};
use core_seg::plugin::{Framework, StepCtx};
use core_seg::rng::SegRng;
use core_seg::train::{TrainConfig, Trainer};
use core_seg::Result;
use toy::{tiny_model, ToySemiSource};

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// 2×2 crop, one padded pixel, uniform student logits (K = 2), conf = [0.99, 0.5, 0.99] on the three valid
/// pixels, τ = 0.95: L = 2·ln 2 / 3.
#[test]
fn unsupervised_normalisation_counts_non_padded_pixels() -> Result<()> {
    let dev = Device::Cpu;
    let logits = Tensor::zeros((1, 2, 2, 2), DType::F64, &dev)?;
    let y = Tensor::from_vec(vec![0u32, 1, 0, 1], (1, 2, 2), &dev)?;
    let conf = Tensor::from_vec(vec![0.99f64, 0.5, 0.99, 0.99], (1, 2, 2), &dev)?;
    let ign = Tensor::from_vec(vec![0u32, 0, 0, 255], (1, 2, 2), &dev)?;
    let l = scalar(&unsup_loss(&logits, &y, &conf, &ign, 0.95)?)?;
    assert!((l - 2.0 * 2f64.ln() / 3.0).abs() < 1e-12, "{l}");
    assert!((l - 0.462098).abs() < 1e-6);
    Ok(())
}

/// CutMix pasting takes the mix values exactly inside the box and the weak ones outside.
#[test]
fn paste_box_uses_mix_values_inside_the_box_only() -> Result<()> {
    let dev = Device::Cpu;
    let bx = Tensor::from_vec(vec![0u8, 1, 1, 0, 0, 1], (1, 2, 3), &dev)?;
    let y_w = Tensor::from_vec(vec![1u32, 1, 1, 1, 1, 1], (1, 2, 3), &dev)?;
    let y_m = Tensor::from_vec(vec![2u32, 3, 4, 5, 6, 7], (1, 2, 3), &dev)?;
    assert_eq!(paste_box(&bx, &y_m, &y_w)?.flatten_all()?.to_vec1::<u32>()?, vec![1, 3, 4, 1, 1, 7]);
    let c_w = Tensor::from_vec(vec![0.1f32; 6], (1, 2, 3), &dev)?;
    let c_m = Tensor::from_vec(vec![0.9f32; 6], (1, 2, 3), &dev)?;
    assert_eq!(paste_box(&bx, &c_m, &c_w)?.flatten_all()?.to_vec1::<f32>()?, vec![0.1, 0.9, 0.9, 0.1, 0.1, 0.9]);
    let i_w = Tensor::zeros((1, 2, 3), DType::U32, &dev)?;
    let i_m = Tensor::full(255u32, (1, 2, 3), &dev)?;
    assert_eq!(paste_box(&bx, &i_m, &i_w)?.flatten_all()?.to_vec1::<u32>()?, vec![0, 255, 255, 0, 0, 255]);
    Ok(())
}

/// L_x = 1, L_s1 = 2, L_s2 = 4, L_fp = 8 → UniMatch 3.25; FixMatch with L_s = 2 → 1.5.
#[test]
fn loss_combination_weights() -> Result<()> {
    let dev = Device::Cpu;
    let t = |v: f64| Tensor::new(v, &dev);
    let cfg = SemiConfig::default();
    let l = frameworks_combine(&cfg, &t(1.0)?, &t(2.0)?, &t(4.0)?, &t(8.0)?)?;
    assert!((l - 3.25).abs() < 1e-12, "{l}");
    let fix = (1.0 + 2.0) * cfg.w_out;
    assert!((fix - 1.5).abs() < 1e-12);
    Ok(())
}

fn frameworks_combine(cfg: &SemiConfig, a: &Tensor, b: &Tensor, c: &Tensor, d: &Tensor) -> Result<f64> {
    scalar(&core_seg::frameworks::combine_unimatch(cfg, a, b, c, d)?)
}

/// The FP term is computed on the perturbed decoder output of the weak view only: recomputing it from
/// `forward_full(cat(x_l, x_w))` with the same dropout RNG reproduces `loss_w_fp` exactly.
#[test]
fn fp_stream_uses_the_weak_view_only() -> Result<()> {
    let dev = Device::Cpu;
    let store = ParamStore::new(5);
    let model = DeepLabV3Plus::new(&tiny_model(3), store.var_builder(DType::F32, &dev))?;
    let batch = ToySemiSource { batch: 2, size: 32 }.batch(0)?;
    let cfg = SemiConfig { conf_thresh: 0.0, ..Default::default() };
    let mut fw = UniMatch::new(cfg.clone());
    let mut rng = SegRng::new(9);
    let mut rng_copy = rng.clone();
    let losses = fw.losses(&model, &batch, &mut StepCtx { iter: 0, total_iters: 1, rng: &mut rng, store: &store })?;
    let lfp = scalar(&losses.terms.iter().find(|(n, _)| n == "loss_w_fp").expect("fp term").1)?;
    let u = batch.unlabeled.as_ref().expect("unlabelled");
    let x = Tensor::cat(&[&batch.labeled.image, &u.weak], 0)?;
    let out = model.forward_full(&x, Mode::Train, Some((0.5, &mut rng_copy)))?;
    let (conf_w, y_w) = frameworks::pseudo_label(&out.logits.narrow(0, 2, 2)?)?;
    let fp_weak = out.logits_fp.as_ref().expect("fp").narrow(0, 2, 2)?;
    let expect = scalar(&unsup_loss(&fp_weak, &y_w, &conf_w, &u.ignore, 0.0)?)?;
    assert!((lfp - expect).abs() < 1e-6, "{lfp} vs {expect}");
    // The labelled half of the FP output gives a different value, so the test can tell them apart.
    let fp_lab = out.logits_fp.as_ref().expect("fp").narrow(0, 0, 2)?;
    let other = scalar(&unsup_loss(&fp_lab, &y_w, &conf_w, &u.ignore, 0.0)?)?;
    assert!((other - expect).abs() > 1e-4);
    Ok(())
}

/// θ_t ← d·θ_t + (1 − d)·θ_s, for parameters and BN buffers alike.
#[test]
fn ema_update_by_hand() -> Result<()> {
    let dev = Device::Cpu;
    let (s, t) = (ParamStore::new(1), ParamStore::new(2));
    let vs = s.var_builder(DType::F64, &dev);
    let vt = t.var_builder(DType::F64, &dev);
    let a = vs.get_with_hints(2, "w", candle_nn::Init::Const(1.0))?;
    let _ = vs.get_with_hints(1, "bn.running_mean", candle_nn::Init::Const(4.0))?;
    let b = vt.get_with_hints(2, "w", candle_nn::Init::Const(3.0))?;
    let _ = vt.get_with_hints(1, "bn.running_mean", candle_nn::Init::Const(0.0))?;
    ema_update(&t, &s, 0.99)?;
    let _ = (a, b);
    let tv = t.named_vars();
    let w = tv.iter().find(|(n, _)| n == "w").expect("w").1.as_tensor().to_vec1::<f64>()?;
    let rm = tv.iter().find(|(n, _)| n == "bn.running_mean").expect("rm").1.as_tensor().to_vec1::<f64>()?;
    assert!((w[0] - (0.99 * 3.0 + 0.01)).abs() < 1e-12 && (rm[0] - 0.04).abs() < 1e-12, "{w:?} {rm:?}");
    Ok(())
}

/// An aux term that adds `λ · mean(CE on the labelled rows)` and records what it saw.
struct ProbeTerm;
impl AuxTerm for ProbeTerm {
    fn name(&self) -> &str {
        "probe"
    }
    fn losses(&mut self, _m: &DeepLabV3Plus, s: &StepTensors, _c: &mut StepCtx) -> Result<Vec<(String, Tensor)>> {
        // The step's tensors carry encoder features for every row and the weak-view pseudo-labels.
        if s.out.enc.c4.dim(0)? != s.out.logits.dim(0)? || s.pseudo.is_none() || s.out.dec.dim(0)? != s.n_labeled * 2 {
            return Err(core_seg::Error::InvalidArgument("aux term got incomplete step tensors".into()));
        }
        let (ce, _) = cross_entropy_per_pixel(&s.out.logits.narrow(0, 0, s.n_labeled)?, &s.labeled.mask)?;
        Ok(vec![("loss_probe".into(), (ce.mean_all()? * 0.1)?)])
    }
}

/// Smoke + determinism + composition: 3 steps of each semi-supervised framework with an aux term run, the
/// losses are finite, mask_ratio ∈ [0, 1], the aux term is logged and in the total; the same seed twice gives
/// identical losses and weights.
#[test]
fn three_steps_each_framework_with_aux_term_deterministic() -> Result<()> {
    for method in [Method::Unimatch, Method::Fixmatch, Method::MeanTeacher] {
        let run = || -> Result<(Vec<f64>, Vec<f32>)> {
            let semi = SemiConfig { method: method.clone(), ..Default::default() };
            let cfg = TrainConfig { iters: 3, lr: 0.01, seed: 7, ..Default::default() };
            let mut t = Trainer::new(&tiny_model(3), cfg, frameworks::build(&semi)?, DType::F32, &Device::Cpu)?;
            t.add_aux_term(|_vb| Ok(Box::new(ProbeTerm)))?;
            let mut src = ToySemiSource { batch: 2, size: 32 };
            let mut losses = Vec::new();
            for _ in 0..3 {
                let rec = t.step(&mut src)?;
                assert!(rec.loss.is_finite());
                let ratio = rec.stats.iter().find(|(n, _)| n == "mask_ratio").expect("mask_ratio").1;
                assert!((0.0..=1.0).contains(&ratio), "{ratio}");
                let probe = rec.terms.iter().find(|(n, _)| n == "loss_probe").expect("aux term logged").1;
                assert!(probe > 0.0);
                losses.push(rec.loss);
            }
            let w = t.store.named_vars().iter().find(|(n, _)| n == "classifier.weight").expect("w").1.clone();
            Ok((losses, w.as_tensor().flatten_all()?.to_vec1::<f32>()?))
        };
        let (a, b) = (run()?, run()?);
        assert_eq!(a.0, b.0, "{method:?} losses differ between identical runs");
        assert_eq!(a.1, b.1, "{method:?} weights differ between identical runs");
    }
    Ok(())
}

/// `semi.method` names: core-seg's four frameworks by their config names; any other name is a framework a method
/// crate registers, which `frameworks::build` refuses (that crate builds it).
#[test]
fn method_names_round_trip_and_plugin_frameworks_are_not_built_here() -> anyhow::Result<()> {
    for m in Method::BUILTIN {
        let v = serde_json::to_value(&m)?;
        assert_eq!(v, serde_json::json!(m.name()));
        assert_eq!(serde_json::from_value::<Method>(v)?, m);
    }
    assert_eq!(serde_json::to_value(Method::MeanTeacher)?, serde_json::json!("mean_teacher"));
    let other: Method = serde_json::from_value(serde_json::json!("guidedmix"))?;
    assert_eq!(other, Method::Other("guidedmix".into()));
    let err = frameworks::build(&SemiConfig { method: other, ..Default::default() }).err().map(|e| e.to_string());
    assert!(err.as_deref().is_some_and(|e| e.contains("guidedmix")), "{err:?}");
    Ok(())
}
