//! R's shapes and parameters: `x̂` has the input's shape for crops 64, 96, 321 (R-18 and
//! R-101 geometry) and 801 (R-101, c4 51×51); parameter counts 922,467 (plain) and 922,470 (fgbg); names under
//! `recon.` in the head optimiser group.

mod support;

use candle_core::{DType, Device, Tensor};
use core_seg::model::{Backbone, DeepLabConfig, DeepLabV3Plus};
use core_seg::nn::{count_parameters, Mode, ParamStore};
use core_seg::optim::backbone_head_groups;
use core_seg::testing::tiny_model;
use core_seg::Result;

use aux_recon::{ReconConfig, ReconDecoder, ReconMode, ReconOutput, PREFIX};

fn decoder(cfg: &ReconConfig, model: &DeepLabConfig) -> Result<(ParamStore, ReconDecoder)> {
    let store = ParamStore::new(3);
    let g = cfg.geometry(model)?;
    let r = ReconDecoder::new(&g, store.var_builder(DType::F32, &Device::Cpu).pp(PREFIX))?;
    Ok((store, r))
}

fn shape_of(out: &ReconOutput) -> Vec<Vec<usize>> {
    match out {
        ReconOutput::Plain(x) => vec![x.dims().to_vec()],
        ReconOutput::Split { obj, bg } => vec![obj.dims().to_vec(), bg.dims().to_vec()],
    }
}

/// c4 side at output stride `os` for crop `s` (the ResNet's stride-2 stages round up).
fn c4_side(s: usize, os: usize) -> usize {
    let mut x = s;
    for _ in 0..os.ilog2() {
        x = x.div_ceil(2);
    }
    x
}

#[test]
fn output_shape_equals_input_shape_for_crops_64_96_321_and_801() -> Result<()> {
    let r101 = DeepLabConfig::default();
    let r18 = DeepLabConfig { backbone: Backbone::Resnet18, ..DeepLabConfig::default() };
    let mut cases = vec![(r18.clone(), 64), (r18.clone(), 96), (r18, 321), (r101.clone(), 64), (r101.clone(), 96)];
    cases.push((r101.clone(), 321));
    cases.push((r101, 801));
    for (model, s) in cases {
        for mode in [ReconMode::Plain, ReconMode::Fgbg] {
            let cfg = ReconConfig { mode, ..Default::default() };
            let (_, r) = decoder(&cfg, &model)?;
            let cin = model.encoder_channels()?[3];
            let h = c4_side(s, 16);
            if s == 321 {
                assert_eq!(h, 21);
            }
            if s == 801 {
                assert_eq!(h, 51);
            }
            let f = support::tensor(&[1, cin, h, h], 1, DType::F32)?;
            let out = r.forward(&f, (s, s), Mode::Eval)?;
            for dims in shape_of(&out) {
                assert_eq!(dims, vec![1, 3, s, s], "{:?} crop {s} {mode:?}", model.backbone);
            }
        }
    }
    Ok(())
}

/// End to end on the toy model (R-18, OS 8, so 3 stages): the reconstruction of `c4` and of the ASPP output has
/// the shape of the input batch.
#[test]
fn toy_model_features_reconstruct_at_input_size() -> Result<()> {
    let model_cfg = tiny_model(3);
    let store = ParamStore::new(0);
    let model = DeepLabV3Plus::new(&model_cfg, store.var_builder(DType::F32, &Device::Cpu))?;
    for s in [64, 96] {
        let x = support::tensor(&[2, 3, s, s], 5, DType::F32)?;
        let out = model.forward_full(&x, Mode::Train, None)?;
        for (input, feat) in [(aux_recon::ReconInput::C4, &out.enc.c4), (aux_recon::ReconInput::Aspp, &out.aspp)] {
            let cfg = ReconConfig { input, ..Default::default() };
            let g = cfg.geometry(&model_cfg)?;
            assert_eq!(g.stages(), 3, "OS 8 → 3 stages");
            let r = ReconDecoder::new(&g, store.var_builder(DType::F32, &Device::Cpu).pp(format!("r{s}{input:?}")))?;
            let ReconOutput::Plain(x_hat) = r.forward(feat, (s, s), Mode::Train)? else { panic!("plain") };
            assert_eq!(x_hat.dims(), x.dims());
        }
    }
    Ok(())
}

#[test]
fn parameter_count_r101_plain_and_fgbg() -> Result<()> {
    let model = DeepLabConfig::default();
    let (store, _) = decoder(&ReconConfig::default(), &model)?;
    assert_eq!(count_parameters(&store), 922_467);
    let (store, _) = decoder(&ReconConfig { mode: ReconMode::Fgbg, ..Default::default() }, &model)?;
    assert_eq!(count_parameters(&store), 922_470);
    let (store, _) = decoder(&ReconConfig { mode: ReconMode::Fgonly, ..Default::default() }, &model)?;
    assert_eq!(count_parameters(&store), 922_467);
    Ok(())
}

#[test]
fn parameters_have_pytorch_names_under_recon_and_train_in_the_head_group() -> Result<()> {
    let (store, _) = decoder(&ReconConfig { mode: ReconMode::Fgbg, ..Default::default() }, &DeepLabConfig::default())?;
    let names: Vec<String> = store.named_vars().into_iter().map(|(n, _)| n).collect();
    for n in [
        "recon.reduce.0.weight",
        "recon.reduce.1.running_var",
        "recon.stages.0.0.weight",
        "recon.stages.3.1.bias",
        "recon.out_obj.weight",
        "recon.out_bg.bias",
    ] {
        assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
    }
    assert!(names.iter().all(|n| n.starts_with("recon.")));
    let groups = backbone_head_groups(&store.named_vars(), 10.0);
    assert!(groups[0].vars.is_empty());
    assert_eq!(groups[1].lr_mult, 10.0);
    assert!(groups[1].vars.iter().all(|(n, _)| !n.contains("running_")));
    Ok(())
}

/// Widths and stages follow the model's output stride unless set; explicit widths fix the depth.
#[test]
fn geometry_from_output_stride_and_widths() -> Result<()> {
    let os8 = DeepLabConfig { output_stride: 8, ..DeepLabConfig::default() };
    assert_eq!(ReconConfig::default().geometry(&os8)?.widths, vec![256, 128, 64, 32]);
    assert_eq!(ReconConfig::default().geometry(&DeepLabConfig::default())?.widths, vec![256, 128, 64, 32, 32]);
    let cfg = ReconConfig { widths: Some(vec![16, 8, 8]), ..Default::default() };
    let g = cfg.geometry(&os8)?;
    assert_eq!((g.stages(), g.cin), (2, 2048));
    let (_, r) = decoder(&cfg, &os8)?;
    let f = Tensor::zeros((1, 2048, 5, 5), DType::F32, &Device::Cpu)?;
    assert_eq!(
        r.features(&f, Mode::Eval)?.iter().map(|t| t.dim(2)).collect::<candle_core::Result<Vec<_>>>()?,
        [5, 10, 20]
    );
    Ok(())
}
