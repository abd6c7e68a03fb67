//! Benchmark cases shared by `cargo bench -p semiseg-bench` and `cargo xtask bench`.
//!
//! A case is a whole training step (supervised or UniMatch) or an eval forward of DeepLabV3+ at a given
//! backbone, crop and batch. `cargo xtask bench` runs each case in its own process (so peak RSS is the
//! case's own) and, with `--compare-pytorch`, runs `tools/bench/torch_bench.py` on the identical model and
//! step, printing ms/step, peak RSS and the ratio ours/PyTorch. `--device cuda` runs both on the GPU
//! (a `--features cuda` build); the `gpu` cases (ResNet-101 at 321², the paper's setting) are only run there.

use candle_core::{DType, Device, Tensor};
use core_seg::batch::{BatchSource, LabeledBatch, TrainBatch, UnlabeledBatch};
use core_seg::frameworks::{self, Method, SemiConfig};
use core_seg::model::{Backbone, DeepLabConfig};
use core_seg::nn::Mode;
use core_seg::rng::SegRng;
use core_seg::train::{Precision, TrainConfig, Trainer};
use serde::{Deserialize, Serialize};

/// One benchmark case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Case {
    pub name: String,
    pub backbone: Backbone,
    /// Crop height (and width unless `width` is given).
    pub size: usize,
    /// Crop width when it differs from `size`.
    #[serde(default)]
    pub width: Option<usize>,
    pub batch: usize,
    /// supervised | unimatch | eval
    pub kind: String,
    /// The CPU-sized model of the synthetic recipes (width 16, OS 8, 6 classes) instead of the paper's.
    #[serde(default)]
    pub cpu_sized: bool,
    /// Too large for the CPU: selected by default only with `--device cuda`.
    #[serde(default)]
    pub gpu: bool,
}

/// The standard cases (`step-r18-128-b4` is the headline).
pub fn cases() -> Vec<Case> {
    let c = |name: &str, backbone, size, batch, kind: &str| Case {
        name: name.into(),
        backbone,
        size,
        batch,
        kind: kind.into(),
        width: None,
        cpu_sized: false,
        gpu: false,
    };
    let synth = |name: &str, kind: &str| Case { cpu_sized: true, ..c(name, Backbone::Resnet18, 64, 8, kind) };
    let g = |name: &str, backbone, size, batch, kind: &str| Case { gpu: true, ..c(name, backbone, size, batch, kind) };
    vec![
        c("step-r18-128-b4", Backbone::Resnet18, 128, 4, "supervised"),
        c("step-r50-128-b4", Backbone::Resnet50, 128, 4, "supervised"),
        c("unimatch-r18-128-b4", Backbone::Resnet18, 128, 4, "unimatch"),
        c("step-r18-321-b2", Backbone::Resnet18, 321, 2, "supervised"),
        c("eval-r18-321-b1", Backbone::Resnet18, 321, 1, "eval"),
        synth("step-synth-64-b8", "supervised"),
        synth("unimatch-synth-64-b8", "unimatch"),
        // DeepLabV3+ on MobileNetV2 (width 1, OS 16, ASPP 128): training at a 160² crop, 8 (+ 8) images, and an
        // eval forward of one 480×360 image.
        c("step-mnv2-160-b8", Backbone::MobilenetV2, 160, 8, "supervised"),
        c("unimatch-mnv2-160-b8", Backbone::MobilenetV2, 160, 8, "unimatch"),
        Case { width: Some(480), ..c("eval-mnv2-480x360-b1", Backbone::MobilenetV2, 360, 1, "eval") },
        // UniMatch's VOC setting (DeepLabV3+ R-101, crop 321): 8 labelled + 8 unlabelled per step, and the
        // per-GPU share of the 4-GPU recipe (2 + 2).
        g("unimatch-r101-321-b8", Backbone::Resnet101, 321, 8, "unimatch"),
        g("unimatch-r101-321-b2", Backbone::Resnet101, 321, 2, "unimatch"),
        g("step-r101-321-b8", Backbone::Resnet101, 321, 8, "supervised"),
        g("eval-r101-321-b1", Backbone::Resnet101, 321, 1, "eval"),
    ]
}

/// The model of a case: DeepLabV3+ (UniMatch layout, deep stem, OS 16, 21 classes; on MobileNetV2 with a
/// 128-channel ASPP), or the CPU-sized model of `configs/synthetic.toml` (width 16, OS 8, ASPP rates 2/4/6,
/// 6 classes).
pub fn model_config(case: &Case) -> DeepLabConfig {
    if case.cpu_sized {
        return DeepLabConfig {
            backbone: case.backbone,
            base_width: 16,
            output_stride: 8,
            dilations: Some([2, 4, 6]),
            aspp_channels: Some(64),
            reduce_channels: 24,
            fuse_channels: 64,
            nclass: SYNTH_CLASSES,
            ..Default::default()
        };
    }
    if case.backbone == Backbone::MobilenetV2 {
        return DeepLabConfig {
            backbone: case.backbone,
            aspp_channels: Some(MNV2_ASPP),
            nclass: 21,
            ..Default::default()
        };
    }
    DeepLabConfig { backbone: case.backbone, nclass: 21, ..Default::default() }
}

/// ASPP width of the MobileNetV2 cases.
const MNV2_ASPP: usize = 128;

const SYNTH_CLASSES: usize = 6;

/// A fixed random batch (labelled, unlabelled and mix) of the case's shape.
pub struct RandomSource {
    batch: TrainBatch,
}

impl RandomSource {
    pub fn new(b: usize, s: usize, nclass: usize, semi: bool) -> core_seg::Result<Self> {
        Self::on_device(b, s, nclass, semi, &Device::Cpu)
    }

    /// The batch on `dev`.
    pub fn on_device(b: usize, s: usize, nclass: usize, semi: bool, dev: &Device) -> core_seg::Result<Self> {
        Self::sized(b, (s, s), nclass, semi, dev)
    }

    /// A batch of `b` images of `h × w` on `dev`.
    pub fn sized(b: usize, (h, w): (usize, usize), nclass: usize, semi: bool, dev: &Device) -> core_seg::Result<Self> {
        let dev = dev.clone();
        let mut rng = SegRng::new(1);
        let mut img = |rng: &mut SegRng| -> core_seg::Result<Tensor> {
            let v: Vec<f32> = (0..b * 3 * h * w).map(|_| rng.normal() as f32).collect();
            Ok(Tensor::from_vec(v, (b, 3, h, w), &dev)?)
        };
        let labeled = LabeledBatch {
            image: img(&mut rng)?,
            mask: Tensor::from_vec(
                (0..b * h * w).map(|_| rng.below(nclass as u64) as u32).collect::<Vec<_>>(),
                (b, h, w),
                &dev,
            )?,
            valid: Tensor::ones((b, h, w), DType::U8, &dev)?,
            ids: (0..b).map(|i| format!("random{i}")).collect(),
        };
        let unl = |rng: &mut SegRng,
                   img: &mut dyn FnMut(&mut SegRng) -> core_seg::Result<Tensor>|
         -> core_seg::Result<UnlabeledBatch> {
            let boxes = Tensor::from_vec(
                (0..b * h * w).map(|i| u8::from((i % w) < w / 2)).collect::<Vec<_>>(),
                (b, h, w),
                &dev,
            )?;
            Ok(UnlabeledBatch {
                weak: img(rng)?,
                strong1: img(rng)?,
                strong2: img(rng)?,
                ignore: Tensor::zeros((b, h, w), DType::U32, &dev)?,
                box1: boxes.clone(),
                box2: boxes,
                valid: Tensor::ones((b, h, w), DType::U8, &dev)?,
                ids: (0..b).map(|i| format!("random{i}")).collect(),
            })
        };
        let (unlabeled, mix) =
            if semi { (Some(unl(&mut rng, &mut img)?), Some(unl(&mut rng, &mut img)?)) } else { (None, None) };
        Ok(Self { batch: TrainBatch { labeled, unlabeled, mix } })
    }
}

impl BatchSource for RandomSource {
    fn batch(&mut self, _iter: usize) -> core_seg::Result<TrainBatch> {
        Ok(self.batch.clone())
    }
}

/// Result of running one case in this process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Timing {
    pub case: String,
    pub ms: f64,
    pub peak_mib: f64,
    pub steps: usize,
    /// GPU memory in use (driver's total − free) after the last step, MiB; CUDA only.
    #[serde(default)]
    pub gpu_mib: Option<f64>,
}

/// Peak resident set size of this process (Linux `VmHWM`), MiB.
pub fn peak_rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// Runs `warmup + steps` iterations of the case on the CPU in f32 and returns the mean time of the timed ones.
pub fn run_case(case: &Case, warmup: usize, steps: usize) -> core_seg::Result<Timing> {
    run_case_on(case, warmup, steps, &Device::Cpu, Precision::F32)
}

/// [`run_case`] on `dev` with `precision`; each timed step ends with a device synchronisation.
pub fn run_case_on(
    case: &Case,
    warmup: usize,
    steps: usize,
    dev: &Device,
    precision: Precision,
) -> core_seg::Result<Timing> {
    let semi = case.kind == "unimatch";
    let nclass = model_config(case).nclass;
    let hw = (case.size, case.width.unwrap_or(case.size));
    let mut src = RandomSource::sized(case.batch, hw, nclass, semi, dev)?;
    let method = if semi { Method::Unimatch } else { Method::Supervised };
    let fw = frameworks::build(&SemiConfig { method, ..Default::default() })?;
    let cfg = TrainConfig { iters: warmup + steps, lr: 0.01, precision, ..Default::default() };
    let mut t = Trainer::new(&model_config(case), cfg, fw, DType::F32, dev)?;
    let mut times = Vec::new();
    for i in 0..warmup + steps {
        let t0 = std::time::Instant::now();
        if case.kind == "eval" {
            let x = src.batch(0)?.labeled.image;
            let _guard = core_seg::nn::AutocastGuard::new(precision.autocast());
            let _ = t.model.forward_t(&x, Mode::Eval)?.argmax(1)?;
        } else {
            t.step(&mut src)?;
        }
        dev.synchronize()?;
        if i >= warmup {
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    let ms = times.iter().sum::<f64>() / times.len().max(1) as f64;
    Ok(Timing { case: case.name.clone(), ms, peak_mib: peak_rss_mib(), steps, gpu_mib: gpu_used_mib(dev) })
}

/// Device memory in use on `dev` (total − free, MiB); `None` on the CPU or without the `cuda` feature.
pub fn gpu_used_mib(dev: &Device) -> Option<f64> {
    #[cfg(feature = "cuda")]
    if dev.is_cuda() {
        use candle_core::cuda_backend::cudarc::driver::result::mem_get_info;
        return mem_get_info().ok().map(|(free, total)| (total - free) as f64 / (1024.0 * 1024.0));
    }
    let _ = dev;
    None
}
