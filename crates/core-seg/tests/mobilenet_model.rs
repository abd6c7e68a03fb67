//! DeepLabV3+ on MobileNetV2 in the frameworks and the configuration: one UniMatch step (with the FP stream) and
//! one supervised step train it end to end; `backbone = "mobilenet_v2"` and `width_mult` parse, ResNet-only keys
//! are refused; a bare torchvision MobileNetV2 file loads under `backbone.` with a report.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use core_seg::batch::BatchSource;
use core_seg::frameworks::{self, Method, SemiConfig};
use core_seg::model::{weights, Backbone, DeepLabConfig, DeepLabV3Plus, HeadKind};
use core_seg::nn::{Mode, ParamStore};
use core_seg::plugin::StepCtx;
use core_seg::rng::SegRng;
use core_seg::testing::{uniform_values, ToySemiSource};
use core_seg::Result;

/// MobileNetV2 width 0.1 (c1..c4 = 8, 8, 16, 32 channels), OS 16, narrow decoder, 3 classes.
fn tiny_mnv2() -> DeepLabConfig {
    DeepLabConfig {
        backbone: Backbone::MobilenetV2,
        width_mult: 0.1,
        output_stride: 16,
        aspp_channels: Some(8),
        reduce_channels: 8,
        fuse_channels: 16,
        nclass: 3,
        ..DeepLabConfig::default()
    }
}

/// One step of `method`: finite terms, and a finite, non-zero gradient on the stem conv and the classifier.
#[test]
fn unimatch_and_supervised_steps_train_deeplab_mnv2() -> Result<()> {
    for method in [Method::Unimatch, Method::Supervised] {
        let store = ParamStore::new(3);
        let model = DeepLabV3Plus::new(&tiny_mnv2(), store.var_builder(DType::F32, &Device::Cpu))?;
        let batch = ToySemiSource { batch: 2, size: 32 }.batch(0)?;
        let cfg = SemiConfig { method: method.clone(), conf_thresh: 0.0, ..Default::default() };
        let mut fw = frameworks::build(&cfg)?;
        let mut rng = SegRng::new(4);
        let losses =
            fw.losses(&model, &batch, &mut StepCtx { iter: 0, total_iters: 1, rng: &mut rng, store: &store })?;
        let names: Vec<&str> = losses.terms.iter().map(|(n, _)| n.as_str()).collect();
        if method == Method::Unimatch {
            assert!(names.contains(&"loss_w_fp"), "UniMatch terms {names:?}");
        }
        for (n, v) in &losses.terms {
            let v = v.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            assert!(v.is_finite(), "{method:?} {n} = {v}");
        }
        let total = losses.total.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        assert!(total.is_finite() && total > 0.0, "{method:?} total {total}");
        let grads = losses.total.backward()?;
        for name in ["backbone.features.0.0.weight", "backbone.features.17.conv.1.0.weight", "classifier.weight"] {
            let var = store.named_vars().into_iter().find(|(n, _)| n == name).map(|(_, v)| v);
            let Some(var) = var else { panic!("{name} is not a model variable") };
            let Some(g) = grads.get(var.as_tensor()) else { panic!("{method:?}: no gradient reaches {name}") };
            let norm = g.to_dtype(DType::F64)?.sqr()?.sum_all()?.sqrt()?.to_scalar::<f64>()?;
            assert!(norm.is_finite() && norm > 0.0, "{method:?}: |∂L/∂{name}| = {norm}");
        }
    }
    Ok(())
}

/// Forward shapes at both output strides, for DeepLabV3+ and mmseg's DeepLabV3 head; the encoder features' strides.
#[test]
fn deeplab_mnv2_shapes_at_os16_and_os8() -> Result<()> {
    for (os, head) in [(16, HeadKind::Deeplabv3plus), (8, HeadKind::Deeplabv3plus), (8, HeadKind::Deeplabv3)] {
        let store = ParamStore::new(1);
        let cfg = DeepLabConfig { output_stride: os, head, ..tiny_mnv2() };
        let m = DeepLabV3Plus::new(&cfg, store.var_builder(DType::F32, &Device::Cpu))?;
        let x = Tensor::from_vec(uniform_values(2 * 3 * 64 * 48, 5, -2.0, 2.0), (2, 3, 64, 48), &Device::Cpu)?
            .to_dtype(DType::F32)?;
        let enc = m.backbone.forward_t(&x, Mode::Train)?;
        let (h, w) = (64 / os, 48 / os);
        assert_eq!(enc.c1.dims(), [2, 8, 16, 12]);
        assert_eq!(enc.c2.dims(), [2, 8, 8, 6]);
        assert_eq!(enc.c3.dims(), [2, 16, h, w]);
        assert_eq!(enc.c4.dims(), [2, 32, h, w]);
        assert_eq!(m.backbone.channels(), [8, 8, 16, 32]);
        assert_eq!(m.forward_t(&x, Mode::Eval)?.dims(), [2, 3, 64, 48], "OS {os} {head:?}");
    }
    Ok(())
}

/// `backbone = "mobilenet_v2"` with `width_mult` parses; ResNet-only keys on MobileNetV2 and `width_mult` on a
/// ResNet are errors naming the key, as is a zero layer width (the model is not built); an unknown backbone is a
/// parse error.
#[test]
fn backbone_config_keys() -> Result<()> {
    let cfg: DeepLabConfig =
        serde_json::from_str(r#"{"backbone": "mobilenet_v2", "width_mult": 0.5, "aspp_channels": 128}"#)
            .map_err(|e| core_seg::Error::InvalidArgument(e.to_string()))?;
    assert_eq!((cfg.backbone, cfg.width_mult, cfg.aspp_channels), (Backbone::MobilenetV2, 0.5, Some(128)));
    assert_eq!(cfg.encoder_channels()?, [16, 16, 48, 160]);
    let r18: DeepLabConfig = serde_json::from_str(r#"{"backbone": "resnet18"}"#)
        .map_err(|e| core_seg::Error::InvalidArgument(e.to_string()))?;
    assert_eq!((r18.backbone, r18.width_mult), (Backbone::Resnet18, 1.0));
    for b in [Backbone::Resnet18, Backbone::Resnet34, Backbone::Resnet50, Backbone::Resnet101, Backbone::MobilenetV2] {
        assert_eq!(serde_json::to_value(b).ok(), Some(serde_json::json!(b.name())));
    }
    let err = |c: &DeepLabConfig| c.encoder_channels().err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err(&DeepLabConfig { backbone: Backbone::MobilenetV2, ..r18.clone() }).is_empty());
    let not_resnet = DeepLabConfig { backbone: Backbone::MobilenetV2, ..r18.clone() }.resnet().err();
    assert!(not_resnet.map(|e| e.to_string()).unwrap_or_default().contains("mobilenet_v2 is not a ResNet"));
    assert!(err(&DeepLabConfig { width_mult: 0.5, ..r18.clone() }).contains("width_mult"));
    assert!(err(&DeepLabConfig { base_width: 16, ..cfg.clone() }).contains("base_width"));
    assert!(err(&DeepLabConfig { width_mult: 0.0, ..cfg.clone() }).contains("width_mult"));
    assert!(err(&DeepLabConfig { output_stride: 32, ..cfg.clone() }).contains("output_stride"));
    let store = ParamStore::new(0);
    let bad = DeepLabConfig { width_mult: f64::NAN, ..cfg.clone() };
    let bad = DeepLabV3Plus::new(&bad, store.var_builder(DType::F32, &Device::Cpu));
    assert!(bad.err().map(|e| e.to_string()).unwrap_or_default().contains("width_mult"));
    for (key, zero) in [
        ("base_width", DeepLabConfig { base_width: 0, ..r18.clone() }),
        ("aspp_channels", DeepLabConfig { aspp_channels: Some(0), ..cfg.clone() }),
        ("reduce_channels", DeepLabConfig { reduce_channels: 0, ..r18.clone() }),
        ("fuse_channels", DeepLabConfig { fuse_channels: 0, ..cfg.clone() }),
        ("nclass", DeepLabConfig { nclass: 0, ..r18.clone() }),
    ] {
        assert!(err(&zero).contains(&format!("model.{key} must be at least 1")), "{key}: {}", err(&zero));
        let built = DeepLabV3Plus::new(&zero, store.var_builder(DType::F32, &Device::Cpu));
        assert!(built.err().map(|e| e.to_string()).unwrap_or_default().contains(key), "{key}");
    }
    let unknown = serde_json::from_str::<DeepLabConfig>(r#"{"backbone": "mobilenet_v3"}"#);
    assert!(unknown.err().map(|e| e.to_string()).unwrap_or_default().contains("mobilenet_v3"));
    Ok(())
}

/// A bare torchvision MobileNetV2 state dict (`features.*` including `features.18`, `classifier.1.*`,
/// `num_batches_tracked`) loads under `backbone.`: every encoder variable set, the decoder missing-free (it is
/// not the file's scope), `features.18.*` and `classifier.*` reported as unexpected.
#[test]
fn bare_torchvision_mobilenet_file_loads_under_backbone() -> Result<()> {
    let (src, dst) = (ParamStore::new(1), ParamStore::new(2));
    let dev = Device::Cpu;
    let _a = DeepLabV3Plus::new(&tiny_mnv2(), src.var_builder(DType::F32, &dev))?;
    let _b = DeepLabV3Plus::new(&tiny_mnv2(), dst.var_builder(DType::F32, &dev))?;
    let mut t: HashMap<String, Tensor> = src
        .named_vars()
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix("backbone.").map(|s| (s.to_string(), v.as_tensor().copy())))
        .map(|(k, v)| v.map(|v| (k, v)))
        .collect::<candle_core::Result<_>>()?;
    let n_backbone = t.len();
    t.insert("features.18.0.weight".into(), Tensor::zeros((1280, 32, 1, 1), DType::F32, &dev)?);
    t.insert("features.0.1.num_batches_tracked".into(), Tensor::new(0i64, &dev)?);
    t.insert("classifier.1.weight".into(), Tensor::zeros((1000, 1280), DType::F32, &dev)?);
    let rep = weights::load_tensors(&dst, &t, false)?;
    assert_eq!(rep.loaded.len(), n_backbone);
    assert!(rep.loaded.iter().all(|n| n.starts_with("backbone.features.")));
    assert!(rep.missing.is_empty(), "{:?}", rep.missing);
    assert_eq!(rep.unexpected, vec!["classifier.1.weight".to_string(), "features.18.0.weight".to_string()]);
    assert_eq!(rep.ignored, vec!["features.0.1.num_batches_tracked".to_string()]);
    let w = |s: &ParamStore| -> Result<Vec<f32>> {
        let v = s.named_vars().into_iter().find(|(n, _)| n == "backbone.features.16.conv.1.0.weight");
        Ok(v.map(|(_, v)| v.as_tensor().flatten_all())
            .transpose()?
            .map(|t| t.to_vec1())
            .transpose()?
            .unwrap_or_default())
    };
    let (a, b) = (w(&src)?, w(&dst)?);
    assert!(!a.is_empty() && a == b, "the depthwise weight was copied");
    Ok(())
}
