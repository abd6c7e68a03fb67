//! Evaluation of a model on the validation set (plain, and with the MRF post-processing of the TV paper's baseline)
//! and loading trained models for inference.

use std::path::Path;

use crate::error::{bail, Context};
use crate::Result;
use candle_core::{DType, Device, Tensor};
use core_seg::eval::{evaluate, EvalReport};
use core_seg::model::{weights, DeepLabV3Plus};
use core_seg::nn::{Mode, ParamStore};
use data::Dataset;

use crate::config::RunConfig;

/// Evaluates `model` on `val` with the run's eval settings.
pub fn evaluate_model(
    model: &DeepLabV3Plus,
    val: &Dataset,
    cfg: &RunConfig,
    device: &Device,
) -> core_seg::Result<EvalReport> {
    let samples = data::val_samples(val.clone(), device.clone(), 4).map(|r| Ok(r.map(|s| (s.image, s.mask))?));
    evaluate(samples, cfg.model.nclass, &cfg.eval, &|x: &Tensor| model.forward_t(x, Mode::Eval))
}

/// Validation mIoU with MRF post-processing of the probabilities.
pub fn evaluate_mrf(
    model: &DeepLabV3Plus,
    val: &Dataset,
    cfg: &RunConfig,
    mrf: &tv_loss::MrfConfig,
    device: &Device,
) -> Result<EvalReport> {
    let mut cm = core_seg::metrics::ConfusionMatrix::new(cfg.model.nclass);
    for s in data::val_samples(val.clone(), device.clone(), 4) {
        let s = s?;
        let probs = core_seg::eval::predict_probs(&s.image, &cfg.eval, &|x: &Tensor| model.forward_t(x, Mode::Eval))?;
        let rgb = tv_loss::rgb_from_normalized(&s.image, data::augment::MEAN, data::augment::STD)?;
        let labels: Vec<u32> = tv_loss::mrf_labels(&probs, Some(&rgb), mrf)?.flatten_all()?.to_vec1()?;
        cm.update(&labels, &s.mask.flatten_all()?.to_vec1::<u32>()?)?;
    }
    Ok(EvalReport {
        miou: 100.0 * cm.miou(cfg.eval.miou_skip_empty),
        iou: cm.iou().iter().map(|v| 100.0 * v).collect(),
        pixel_accuracy: 100.0 * cm.pixel_accuracy(),
        confusion: cm,
    })
}

/// MRF evaluation with β given or chosen on the validation set; returns (β, report).
pub fn evaluate_mrf_tuned(
    model: &DeepLabV3Plus,
    val: &Dataset,
    cfg: &RunConfig,
    beta: Option<f64>,
    device: &Device,
) -> Result<(f64, EvalReport)> {
    let mut mrf: tv_loss::MrfConfig = cfg.section("mrf")?.unwrap_or_default();
    let beta = match beta {
        Some(b) => b,
        None => {
            let mut err = None;
            let pick = tv_loss::select_beta(&mrf.clone(), |b| {
                let m = tv_loss::MrfConfig { beta: b, ..mrf.clone() };
                evaluate_mrf(model, val, cfg, &m, device).map(|r| r.miou).or_else(|e| {
                    err.get_or_insert(e);
                    Ok(f64::NEG_INFINITY)
                })
            })?;
            if let Some(e) = err {
                return Err(e);
            }
            pick.0
        }
    };
    mrf.beta = beta;
    Ok((beta, evaluate_mrf(model, val, cfg, &mrf, device)?))
}

/// Loads a checkpoint for inference: every model variable must be set; the only extra keys allowed are those of
/// training-only branches of the method plug-ins ([`crate::methods::training_only_prefixes`]).
pub fn load_inference_weights(store: &ParamStore, path: &Path) -> Result<()> {
    let r = weights::load_safetensors(store, path, false)?;
    let training_only = crate::methods::training_only_prefixes();
    let unexpected: Vec<&String> =
        r.unexpected.iter().filter(|k| !training_only.iter().any(|p| k.starts_with(p))).collect();
    if !r.missing.is_empty() || !unexpected.is_empty() {
        bail!("{}: strict load: missing {:?}, unexpected {:?}", path.display(), r.missing, unexpected);
    }
    Ok(())
}

/// The model of `cfg` with the weights of `weights_path` (eval use).
pub fn load_model(cfg: &RunConfig, weights_path: &Path, device: &Device) -> Result<DeepLabV3Plus> {
    let store = ParamStore::new(0);
    let model = DeepLabV3Plus::new(&cfg.model, store.var_builder(DType::F32, device))?;
    load_inference_weights(&store, weights_path)?;
    Ok(model)
}

/// The run config: `config` when given, else the one a `train` checkpoint stores.
pub fn config_of(config: Option<&Path>, checkpoint: &Path, device: &Device) -> Result<RunConfig> {
    match config {
        Some(p) => RunConfig::load(p),
        None => {
            let ck = core_seg::train::load_checkpoint(checkpoint, device)
                .with_context(|| "no --config given, and the checkpoint holds no run config")?;
            serde_json::from_value(ck.state.config).context("checkpoint's stored config")
        }
    }
}
