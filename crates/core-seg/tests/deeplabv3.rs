//! The DeepLabV3 head (mmseg `ASPPHead`) on ResNetV1c at OS 8, GuidedMix-Net's network (its official configs):
//! shapes, mmseg parameter names, and the two-stage head equal to the one-call forward.

use candle_core::{DType, Device, Tensor};
use core_seg::model::{Backbone, DeepLabConfig, DeepLabV3Plus, HeadKind, Stem};
use core_seg::nn::{Mode, ParamStore};
use core_seg::rng::SegRng;
use core_seg::Result;

fn v3(backbone: Backbone, base_width: usize) -> DeepLabConfig {
    DeepLabConfig {
        backbone,
        stem: Stem::V1c,
        base_width,
        output_stride: 8,
        aspp_channels: Some(8),
        nclass: 5,
        head: HeadKind::Deeplabv3,
        ..DeepLabConfig::default()
    }
}

fn input(n: usize, s: usize) -> Result<Tensor> {
    let mut rng = SegRng::new(3);
    let v: Vec<f32> = (0..n * 3 * s * s).map(|_| rng.normal() as f32).collect();
    Ok(Tensor::from_vec(v, (n, 3, s, s), &Device::Cpu)?)
}

/// Crop S → stem [B, w, S/4, S/4], c4 [B, 8·4w, ⌈S/8⌉, ⌈S/8⌉], A [B, 5·C_a, h, w], logits at h and at S.
#[test]
fn deeplabv3_v1c_os8_shapes() -> Result<()> {
    for s in [64usize, 97] {
        let store = ParamStore::new(1);
        let m = DeepLabV3Plus::new(&v3(Backbone::Resnet50, 4), store.var_builder(DType::F32, &Device::Cpu))?;
        let x = input(2, s)?;
        let enc = m.backbone.forward_t(&x, Mode::Train)?;
        let h = s.div_ceil(8);
        assert_eq!(enc.c1.dims(), [2, 16, s.div_ceil(4), s.div_ceil(4)]);
        assert_eq!(enc.c4.dims(), [2, 128, h, h]);
        let f = m.head.features(&enc.c1, &enc.c4, Mode::Train)?;
        assert!(f.low.is_none());
        assert_eq!((f.aspp.dims(), m.head.aspp_width()), (&[2, 40, h, h][..], 40));
        let (dec, lo) = m.head.tail(&f, Mode::Train, None)?;
        assert_eq!((dec.dims(), lo.dims()), (&[2, 8, h, h][..], &[2, 5, h, h][..]));
        assert_eq!(m.forward_t(&x, Mode::Eval)?.dims(), [2, 5, s, s]);
        assert!(!m.head.align_corners());
    }
    Ok(())
}

/// mmseg names: `backbone.stem.{0,1,3,4,6,7}`, no `backbone.bn1`, `decode_head.image_pool.1.{conv,bn}`,
/// `decode_head.aspp_modules.{0..3}`, `decode_head.bottleneck`, `decode_head.conv_seg` (weight and bias).
#[test]
fn deeplabv3_v1c_parameter_names_are_mmsegs() -> Result<()> {
    let store = ParamStore::new(1);
    let _m = DeepLabV3Plus::new(&v3(Backbone::Resnet50, 8), store.var_builder(DType::F32, &Device::Cpu))?;
    let vars = store.named_vars();
    let shape = |n: &str| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.dims().to_vec());
    assert_eq!(shape("backbone.stem.0.weight"), Some(vec![4, 3, 3, 3]));
    assert_eq!(shape("backbone.stem.6.weight"), Some(vec![8, 4, 3, 3]));
    assert_eq!(shape("backbone.stem.7.running_var"), Some(vec![8]));
    assert_eq!(shape("backbone.layer1.0.conv1.weight"), Some(vec![8, 8, 1, 1]));
    assert_eq!(shape("backbone.layer1.0.downsample.0.weight"), Some(vec![32, 8, 1, 1]));
    assert_eq!(shape("decode_head.image_pool.1.conv.weight"), Some(vec![8, 256, 1, 1]));
    assert_eq!(shape("decode_head.image_pool.1.bn.running_mean"), Some(vec![8]));
    assert_eq!(shape("decode_head.aspp_modules.0.conv.weight"), Some(vec![8, 256, 1, 1]));
    assert_eq!(shape("decode_head.aspp_modules.3.conv.weight"), Some(vec![8, 256, 3, 3]));
    assert_eq!(shape("decode_head.bottleneck.conv.weight"), Some(vec![8, 40, 3, 3]));
    assert_eq!(shape("decode_head.conv_seg.weight"), Some(vec![5, 8, 1, 1]));
    assert_eq!(shape("decode_head.conv_seg.bias"), Some(vec![5]));
    assert!(vars.iter().all(|(k, _)| !k.starts_with("backbone.bn1") && !k.starts_with("backbone.conv1")));
    assert!(vars.iter().all(|(k, _)| k.starts_with("backbone.") || k.starts_with("decode_head.")));
    // Only conv_seg has a bias among the head's convs; conv_seg is N(0, 0.01) with zero bias.
    let bias: Vec<f32> = store
        .named_vars()
        .into_iter()
        .find(|(k, _)| k == "decode_head.conv_seg.bias")
        .map(|(_, v)| v.as_tensor().to_vec1())
        .transpose()?
        .unwrap_or_default();
    assert!(bias.iter().all(|b| *b == 0.0));
    Ok(())
}

/// `features` + `tail` is the model's decoder; the tail's dropout is applied only with an RNG.
#[test]
fn two_stage_head_equals_forward_and_dropout_needs_an_rng() -> Result<()> {
    for head in [HeadKind::Deeplabv3, HeadKind::Deeplabv3plus] {
        let cfg = DeepLabConfig { head, base_width: 8, ..v3(Backbone::Resnet18, 8) };
        let store = ParamStore::new(2);
        let m = DeepLabV3Plus::new(&cfg, store.var_builder(DType::F32, &Device::Cpu))?;
        let x = input(2, 32)?;
        let out = m.forward_full(&x, Mode::Eval, None)?;
        let (_, lo) = m.head.tail(&m.head.features(&out.enc.c1, &out.enc.c4, Mode::Eval)?, Mode::Eval, None)?;
        let up = core_seg::ops::resize_bilinear(&lo, (32, 32), m.head.align_corners())?;
        let d = (up - &out.logits)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert_eq!(d, 0.0, "{head:?}");
        let f = m.head.features(&out.enc.c1, &out.enc.c4, Mode::Eval)?;
        let mut rng = SegRng::new(4);
        let (_, dropped) = m.head.tail(&f, Mode::Eval, Some((0.5, &mut rng)))?;
        let d = (dropped - &lo)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert!(d > 0.0, "{head:?}: dropout had no effect");
    }
    Ok(())
}
