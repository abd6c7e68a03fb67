//! The reconstruction channel diagnostic (`cargo xtask diagnose recon-channels`): do the reconstruction decoder's
//! channels align with semantic classes (`docs/aux-recon.md`)? Scores every channel of an intermediate layer of R
//! (default `u2`) against every class's ground-truth mask on the validation set — IoU after thresholding at the channel's 0.995 quantile, and the
//! point-biserial correlation — for the trained decoder and two controls: the same decoder at its random
//! initialisation (R's own stream of the run seed: exactly the weights the run started from) and the segmentation
//! decoder's `fuse` map. Prints the summaries and the top channels per class, writes `scores.json`, and renders
//! the top channels (image | activation heat map | class mask) as PNG grids.

use std::path::PathBuf;

use crate::error::{bail, fs, Context};
use crate::Result;
use aux_recon::channels::{ChannelScores, ChannelStats, DEFAULT_BINS, IOU_HIT};
use aux_recon::{layer_index, ReconDecoder, PREFIX};
use candle_core::{DType, Device, Tensor};
use core_seg::model::{weights, DeepLabV3Plus};
use core_seg::nn::{Mode, ParamStore};
use core_seg::ops::{resize_bilinear, IGNORE_INDEX};

use crate::config::RunConfig;
use crate::plots::{channel_grid, GridRow};

#[derive(Debug, Clone)]
pub struct ReconChannelsOptions {
    /// A checkpoint written by `train`/`reproduce` with the reconstruction branch on (holds `recon.*`).
    pub checkpoint: PathBuf,
    /// Run configuration (default: the one stored in the checkpoint).
    pub config: Option<PathBuf>,
    pub data_root: Option<PathBuf>,
    pub out: PathBuf,
    /// Layer of R: z0, u1 … u<stages> (default: recon.diagnose.layer).
    pub layer: Option<String>,
    /// Activation quantile that switches a channel on (default: recon.diagnose.quantile).
    pub quantile: Option<f64>,
    /// Score only the first N validation images.
    pub max_images: Option<usize>,
    /// Channels in each PNG grid.
    pub top: usize,
    /// Seed of the random-initialisation control (default: the run's train.seed).
    pub seed: Option<u64>,
}

/// The networks whose activations are scored.
struct Nets {
    model: DeepLabV3Plus,
    trained: ReconDecoder,
    random: ReconDecoder,
    layer: usize,
    input: aux_recon::ReconInput,
}

const SUBJECTS: [&str; 3] = ["recon (trained)", "recon (random init)", "seg decoder fuse"];

impl Nets {
    /// Activations `[K, H·W]` of each subject for one image, bilinearly resized to the label size.
    fn activations(&self, x: &Tensor, which: Option<usize>) -> Result<Vec<Option<Vec<f32>>>> {
        let (_, _, h, w) = x.dims4()?;
        let out = self.model.forward_full(x, Mode::Eval, None)?;
        let f = match self.input {
            aux_recon::ReconInput::C4 => &out.enc.c4,
            aux_recon::ReconInput::Aspp => &out.aspp,
        };
        let host = |t: &Tensor| -> Result<Vec<f32>> {
            Ok(resize_bilinear(t, (h, w), true)?.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?)
        };
        let mut res = Vec::new();
        for s in 0..SUBJECTS.len() {
            if which.is_some_and(|k| k != s) {
                res.push(None);
                continue;
            }
            let t = match s {
                0 => self.trained.features_to(f, Mode::Eval, self.layer)?.swap_remove(self.layer),
                1 => self.random.features_to(f, Mode::Eval, self.layer)?.swap_remove(self.layer),
                _ => out.dec.clone(),
            };
            res.push(Some(host(&t)?));
        }
        Ok(res)
    }
}

fn load(a: &ReconChannelsOptions, device: &Device) -> Result<(RunConfig, Nets)> {
    let cfg = crate::eval::config_of(a.config.as_deref(), &a.checkpoint, device)?;
    let mut rc: aux_recon::ReconConfig = cfg.section("recon")?.unwrap_or_default();
    if let Some(l) = &a.layer {
        rc.diagnose.layer = l.clone();
    }
    if let Some(q) = a.quantile {
        rc.diagnose.quantile = q;
    }
    let g = rc.geometry(&cfg.model)?;
    let layer = layer_index(&rc.diagnose.layer, g.stages())?;
    let store = ParamStore::new(0);
    let model = DeepLabV3Plus::new(&cfg.model, store.var_builder(DType::F32, device))?;
    let trained = ReconDecoder::new(&g, store.var_builder(DType::F32, device).pp(PREFIX))?;
    let report = weights::load_safetensors(&store, &a.checkpoint, false)?;
    if report.missing.iter().any(|n| n.starts_with("recon.")) {
        bail!(
            "{}: no reconstruction decoder of this shape (missing {:?}); train with [recon] enabled = true, or pass the \
             run's --config",
            a.checkpoint.display(),
            report.missing.iter().filter(|n| n.starts_with("recon.")).take(3).collect::<Vec<_>>()
        );
    }
    if !report.missing.is_empty() {
        bail!("{}: missing model weights {:?}", a.checkpoint.display(), report.missing);
    }
    let (random, _) = random_init_decoder(&g, a.seed.unwrap_or(cfg.train.seed), device)?;
    Ok((cfg, Nets { model, trained, random, layer, input: rc.input }))
}

/// R as a run with `seed` initialised it (its own stream, [`aux_recon::var_builder`]), and the store holding it.
pub fn random_init_decoder(g: &aux_recon::Geometry, seed: u64, device: &Device) -> Result<(ReconDecoder, ParamStore)> {
    let store = ParamStore::new(0);
    let r = ReconDecoder::new(g, aux_recon::var_builder(&store, seed, DType::F32, device).pp(PREFIX))?;
    Ok((r, store))
}

pub fn recon_channels(a: ReconChannelsOptions) -> Result<()> {
    let device = Device::Cpu;
    let (cfg, nets) = load(&a, &device)?;
    let rc: aux_recon::ReconConfig = cfg.section("recon")?.unwrap_or_default();
    let layer_name = a.layer.clone().unwrap_or(rc.diagnose.layer.clone());
    let quantile = a.quantile.unwrap_or(rc.diagnose.quantile);
    let val = crate::datasets::build(&cfg, a.data_root.as_ref(), false)?.val;
    let n = a.max_images.unwrap_or(usize::MAX).min(val.len());
    let nclass = cfg.model.nclass;
    let mut stats: Vec<Option<ChannelStats>> = vec![None; SUBJECTS.len()];
    for _pass in 0..3 {
        for (i, s) in data::val_samples(val.clone(), device.clone(), 4).take(n).enumerate() {
            let s = s?;
            let labels: Vec<u32> = s.mask.flatten_all()?.to_vec1()?;
            for (j, act) in nets.activations(&s.image, None)?.into_iter().enumerate() {
                let act = act.unwrap_or_default();
                if stats[j].is_none() {
                    let k = act.len() / labels.len().max(1);
                    stats[j] = Some(ChannelStats::new(k, nclass, quantile, DEFAULT_BINS, IGNORE_INDEX)?);
                }
                stats[j].as_mut().context("channel statistics")?.observe(i, &act, &labels)?;
            }
        }
        if stats.iter().any(|s| s.is_none()) {
            bail!("no validation images");
        }
        stats.iter_mut().flatten().for_each(|s| s.next_phase());
    }
    let scores: Vec<ChannelScores> = stats.iter().flatten().map(|s| s.scores()).collect::<core_seg::Result<_>>()?;
    let names = val.class_names();
    println!("layer {layer_name}, quantile {quantile}, {n} validation images, {} classes", nclass);
    println!("{:<22} {:>9} {:>24} {:>22}", "subject", "channels", format!("best IoU > {IOU_HIT}"), "mean_c max_k IoU");
    for (name, s) in SUBJECTS.iter().zip(&scores) {
        println!("{name:<22} {:>9} {:>24} {:>22.4}", s.channels, s.channels_above(IOU_HIT), s.mean_best_iou());
    }
    for (name, s) in SUBJECTS.iter().zip(&scores).take(2) {
        println!("\n{name}: top channels per class (channel IoU r)");
        for (c, cname) in names.iter().enumerate() {
            let top: Vec<String> = s
                .top_for_class(c, 3)
                .iter()
                .map(|&k| format!("{k:>3} {:.3} {:+.2}", s.iou[k * nclass + c], s.corr[k * nclass + c]))
                .collect();
            println!("  {cname:<20} {}", top.join(" | "));
        }
    }
    fs::create_dir_all(&a.out)?;
    let json = serde_json::json!({
        "checkpoint": a.checkpoint.display().to_string(),
        "layer": layer_name,
        "quantile": quantile,
        "images": n,
        "classes": names,
        "iou_hit": IOU_HIT,
        "subjects": SUBJECTS.iter().zip(&scores).map(|(name, s)| serde_json::json!({
            "name": name,
            "channels": s.channels,
            "channels_above_iou_hit": s.channels_above(IOU_HIT),
            "mean_over_classes_of_max_iou": s.mean_best_iou(),
            "best_class": s.best_class(),
            "iou": s.iou,
            "corr": s.corr,
        })).collect::<Vec<_>>(),
    });
    fs::write_atomic(&a.out.join("scores.json"), serde_json::to_string_pretty(&json)?)?;
    for (j, file) in [(0, "recon-channels.png"), (1, "recon-channels-random.png")] {
        let rows = grid_rows(&nets, j, &scores[j], &val, &names, a.top)?;
        channel_grid(&a.out.join(file), &rows, &format!("{} — layer {layer_name}", SUBJECTS[j]))?;
    }
    println!("\nscores.json, recon-channels.png, recon-channels-random.png in {}", a.out.display());
    Ok(())
}

/// The top channels of one subject, each on the validation image where it overlaps its best class most.
fn grid_rows(
    nets: &Nets,
    subject: usize,
    s: &ChannelScores,
    val: &data::Dataset,
    names: &[String],
    top: usize,
) -> Result<Vec<GridRow>> {
    let best = s.best_class();
    let mut rows = Vec::new();
    for k in s.top_channels(top) {
        let (c, iou) = best[k];
        let raw = val.sample(s.best_image[k * s.classes + c])?;
        let mask = raw.mask.as_ref().context("validation sample without mask")?;
        let (w, h) = (raw.image.width, raw.image.height);
        let x = Tensor::from_vec(data::augment::normalize_image(&raw.image), (1, 3, h, w), &Device::Cpu)?;
        let act = nets.activations(&x, Some(subject))?.swap_remove(subject).unwrap_or_default();
        let heat = act[k * h * w..(k + 1) * h * w].to_vec();
        let name = names.get(c).cloned().unwrap_or_else(|| format!("class {c}"));
        rows.push(GridRow {
            image: raw.image.clone(),
            heat,
            mask: mask.data.iter().map(|&v| v as usize == c).collect(),
            caption: format!("ch {k} → {name}: IoU {iou:.3}, r {:+.2}", s.corr[k * s.classes + c]),
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The random-initialisation control is exactly the decoder a training run with the same seed starts from.
    #[test]
    fn random_init_control_equals_the_runs_initial_decoder() -> anyhow::Result<()> {
        let mut cfg: RunConfig = toml::from_str(include_str!("../../../configs/recon-synthetic.toml"))?;
        cfg.model = core_seg::testing::tiny_model(3);
        cfg.train.seed = 17;
        let t_cfg = core_seg::train::TrainConfig { iters: 1, ..cfg.train.clone() };
        let fw = core_seg::frameworks::build(&cfg.semi)?;
        let mut t = core_seg::train::Trainer::new(&cfg.model, t_cfg, fw, DType::F32, &Device::Cpu)?;
        crate::methods::add_terms(&cfg.context(Some(1)), &mut t)?;
        let g = cfg.section::<aux_recon::ReconConfig>("recon")?.unwrap_or_default().geometry(&cfg.model)?;
        let (_, store) = random_init_decoder(&g, 17, &Device::Cpu)?;
        let values = |s: &ParamStore| -> anyhow::Result<Vec<(String, Vec<f32>)>> {
            let mut v = Vec::new();
            for (n, var) in s.named_vars().into_iter().filter(|(n, _)| n.starts_with("recon.")) {
                v.push((n, var.as_tensor().flatten_all()?.to_vec1::<f32>()?));
            }
            Ok(v)
        };
        let (run, control) = (values(&t.store)?, values(&store)?);
        assert!(!run.is_empty());
        assert_eq!(run, control);
        let (_, other) = random_init_decoder(&g, 18, &Device::Cpu)?;
        assert_ne!(values(&other)?, control);
        Ok(())
    }
}
