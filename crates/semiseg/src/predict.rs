//! Prediction on image files: palette masks and overlays.

use std::path::{Path, PathBuf};

use crate::error::{bail, fs};
use crate::Result;
use candle_core::{Device, Tensor};
use core_seg::nn::Mode;

use crate::config::RunConfig;
use crate::eval::load_model;

/// Writes `<stem>_mask.png` (dataset palette) and `<stem>_overlay.png` into `out` for every input image, with the
/// model of `cfg` and the weights of `checkpoint`; returns the written files, per input.
pub fn predict_files(
    cfg: &RunConfig,
    checkpoint: &Path,
    inputs: &[PathBuf],
    out: &Path,
) -> Result<Vec<(PathBuf, PathBuf)>> {
    if inputs.is_empty() {
        bail!("no --input images");
    }
    let device = Device::Cpu;
    let model = load_model(cfg, checkpoint, &device)?;
    let palette = match cfg.data.dataset {
        data::DatasetKind::Cityscapes => data::palette::cityscapes_palette(),
        // The dataset's own colours: its preset's class table, or classes.csv under the config's root.
        data::DatasetKind::Folder => {
            data::folder::label_map(&cfg.data.folder, cfg.data.root.as_deref(), Some(cfg.model.nclass))?.palette()
        }
        _ => data::palette::voc_palette(),
    };
    fs::create_dir_all(out)?;
    let mut written = Vec::new();
    for path in inputs {
        let img = data::io::read_image(path)?;
        let (w, h) = (img.width, img.height);
        let x = Tensor::from_vec(data::augment::normalize_image(&img), (1, 3, h, w), &device)?;
        let labels: Vec<u32> =
            core_seg::eval::predict_labels(&x, &cfg.eval, &|t: &Tensor| model.forward_t(t, Mode::Eval))?
                .flatten_all()?
                .to_vec1()?;
        let mask = data::Mask { width: w, height: h, data: labels.iter().map(|&v| v as u8).collect() };
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
        let (mask_path, overlay_path) = (out.join(format!("{stem}_mask.png")), out.join(format!("{stem}_overlay.png")));
        data::io::write_paletted_png(&mask_path, &mask, &palette)?;
        let overlay: Vec<u8> = img
            .data
            .chunks(3)
            .zip(&mask.data)
            .flat_map(|(px, &l)| (0..3).map(move |c| ((px[c] as u16 + palette[l as usize][c] as u16) / 2) as u8))
            .collect();
        data::io::write_rgb(&overlay_path, &data::RgbImage { width: w, height: h, data: overlay })?;
        written.push((mask_path, overlay_path));
    }
    Ok(written)
}
