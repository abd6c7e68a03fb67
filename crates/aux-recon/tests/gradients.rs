//! Gradients: `L_rec` alone reaches the encoder (`backbone.layer4` non-zero) and leaves the
//! segmentation head (`classifier`) at exactly zero; `recon.detach` stops it at R's input; R's backward (composed
//! of project ops, no hand-written backward) matches f64 central finite differences on a tiny input
//! (C_in = 8, widths [8,4,4,4,4], c4 2×2), for the input, the output convolution and the bottleneck weights.

mod support;

use candle_core::{DType, Device, Tensor, Var};
use core_seg::model::DeepLabV3Plus;
use core_seg::nn::{Mode, ParamStore};
use core_seg::testing::{tiny_model, toy_batch};
use core_seg::Result;

use aux_recon::{
    masked_rec_loss, var_builder, Geometry, ReconConfig, ReconDecoder, ReconLoss, ReconMode, ReconOutput, ReconTerm,
};
use support::{manual_step, scalar, tensor, vec_f64};

fn grad_norm(grads: &candle_core::backprop::GradStore, v: &Var) -> Result<f64> {
    match grads.get(v.as_tensor()) {
        Some(g) => scalar(&g.abs()?.sum_all()?),
        None => Ok(0.0),
    }
}

#[test]
fn reconstruction_loss_reaches_the_encoder_and_not_the_classifier() -> Result<()> {
    for (mode, detach) in [(ReconMode::Plain, false), (ReconMode::Fgbg, false), (ReconMode::Plain, true)] {
        let model_cfg = tiny_model(3);
        let store = ParamStore::new(1);
        let model = DeepLabV3Plus::new(&model_cfg, store.var_builder(DType::F32, &Device::Cpu))?;
        let cfg = ReconConfig { enabled: true, mode, detach, ..Default::default() };
        let term = ReconTerm::new(&cfg, None, &model_cfg, var_builder(&store, 1, DType::F32, &Device::Cpu))?;
        let step = manual_step(&model, toy_batch(&[0, 1], 32, DType::F32, &Device::Cpu)?, None, None, 0.95)?;
        let grads = term.loss(&step)?.loss.backward()?;
        let (mut layer4, mut classifier, mut recon) = (0.0, 0.0, 0.0);
        for (name, v) in store.named_vars() {
            let g = grad_norm(&grads, &v)?;
            if name.starts_with("backbone.layer4.") {
                layer4 += g;
            } else if name.starts_with("classifier.") {
                classifier += g;
            } else if name.starts_with("recon.") {
                recon += g;
            }
        }
        assert_eq!(classifier, 0.0, "{mode:?}: classifier gradient must be exactly zero");
        assert!(recon > 0.0, "{mode:?}: R gets a gradient");
        if detach {
            assert_eq!(layer4, 0.0, "recon.detach: no gradient into the encoder");
        } else {
            assert!(layer4 > 0.0, "{mode:?}: backbone.layer4 gradient is zero");
        }
    }
    Ok(())
}

/// `(max |g_an − g_fd|) / max |g_an|` over the listed coordinates of one variable.
fn fd_error(v: &Var, coords: &[usize], g: &[f64], f: &dyn Fn() -> Result<f64>) -> Result<f64> {
    let h = 1e-6;
    let base: Vec<f64> = vec_f64(v.as_tensor())?;
    let shape = v.as_tensor().shape().clone();
    let gmax = coords.iter().fold(0f64, |m, &i| m.max(g[i].abs()));
    assert!(gmax > 1e-6, "degenerate gradient {gmax}");
    let mut err = 0f64;
    for &i in coords {
        let mut p = base.clone();
        p[i] += h;
        v.set(&Tensor::from_vec(p.clone(), shape.clone(), &Device::Cpu)?)?;
        let fp = f()?;
        p[i] -= 2.0 * h;
        v.set(&Tensor::from_vec(p, shape.clone(), &Device::Cpu)?)?;
        let fm = f()?;
        err = err.max(((fp - fm) / (2.0 * h) - g[i]).abs());
    }
    v.set(&Tensor::from_vec(base, shape, &Device::Cpu)?)?;
    Ok(err / gmax)
}

#[test]
fn decoder_backward_matches_finite_differences_in_f64() -> Result<()> {
    for mode in [ReconMode::Plain, ReconMode::Fgbg] {
        let store = ParamStore::new(11);
        let g = Geometry { cin: 8, widths: vec![8, 4, 4, 4, 4], mode };
        let r = ReconDecoder::new(&g, store.var_builder(DType::F64, &Device::Cpu).pp("recon"))?;
        let f = Var::from_tensor(&tensor(&[2, 8, 2, 2], 21, DType::F64)?)?;
        let size = (30, 29);
        let target = tensor(&[2, 3, size.0, size.1], 22, DType::F64)?;
        let m = tensor(&[2, size.0, size.1], 23, DType::F64)?.affine(0.25, 0.5)?;
        let valid = tensor(&[2, size.0, size.1], 24, DType::F64)?.ge(-1.5)?.to_dtype(DType::F64)?;
        let loss = |fv: &Tensor| -> Result<Tensor> {
            let x_hat = match r.forward(fv, size, Mode::Train)? {
                ReconOutput::Plain(x) => x,
                ReconOutput::Split { obj, bg } => aux_recon::compose(&m, &obj, &bg)?,
            };
            masked_rec_loss(&x_hat, &target, &valid, ReconLoss::Mse)
        };
        let grads = loss(f.as_tensor())?.backward()?;
        let eval = || -> Result<f64> { scalar(&loss(f.as_tensor())?) };
        let gf = vec_f64(grads.get(f.as_tensor()).expect("input grad"))?;
        let e = fd_error(&f, &(0..gf.len()).collect::<Vec<_>>(), &gf, &eval)?;
        assert!(e < 1e-5, "{mode:?} input: relative FD error {e}");
        let vars: std::collections::HashMap<String, Var> = store.named_vars().into_iter().collect();
        let out_name = if mode == ReconMode::Plain { "recon.out.weight" } else { "recon.out_obj.weight" };
        for name in [out_name, "recon.reduce.0.weight", "recon.stages.1.0.weight", "recon.stages.3.1.weight"] {
            let v = &vars[name];
            let gv = vec_f64(grads.get(v.as_tensor()).expect(name))?;
            let coords: Vec<usize> = (0..gv.len()).step_by(3).collect();
            let e = fd_error(v, &coords, &gv, &eval)?;
            assert!(e < 1e-5, "{mode:?} {name}: relative FD error {e}");
        }
    }
    Ok(())
}
