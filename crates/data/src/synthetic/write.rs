//! Writes synthetic scenes to disk in VOC layout (`cargo xtask gen-data synthetic`).
//!
//! ```text
//! OUT/JPEGImages/<id>.png            lossless RGB (the split lists name the file, so the extension is free)
//! OUT/SegmentationClass/<id>.png     8-bit paletted, VOC palette
//! OUT/ImageSets/Segmentation/{train,val}.txt
//! OUT/splits/val.txt, OUT/splits/1_<d>/{labeled,unlabeled}.txt
//! ```

use std::path::Path;

use rayon::prelude::*;

use super::{SynthConfig, SyntheticDataset};
use crate::error::{Error, Result};
use crate::io;
use crate::palette::voc_palette;

/// What to write.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Generator settings.
    pub cfg: SynthConfig,
    /// Train scenes use `seed`, val scenes `seed + 1`.
    pub seed: u64,
    /// Number of training scenes.
    pub num_train: usize,
    /// Number of validation scenes.
    pub num_val: usize,
    /// Label fractions `1/d` to write split folders for (the first `ceil(N/d)` train ids are labelled).
    pub fractions: Vec<usize>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self { cfg: SynthConfig::default(), seed: 1, num_train: 2000, num_val: 500, fractions: vec![16, 8, 4, 2] }
    }
}

fn mkdir(p: &Path) -> Result<()> {
    std::fs::create_dir_all(p).map_err(|e| Error::io(p, e))
}

fn write_text(p: &Path, lines: &[String]) -> Result<()> {
    let mut s = lines.join("\n");
    s.push('\n');
    std::fs::write(p, s).map_err(|e| Error::io(p, e))
}

/// Writes `ds` under `out` with ids `<prefix>_NNNNNN`; returns the split lines.
fn write_set(out: &Path, ds: &SyntheticDataset, prefix: &str) -> Result<Vec<String>> {
    let pal = voc_palette();
    (0..ds.len())
        .into_par_iter()
        .map(|i| {
            let s = ds.sample(i)?;
            let id = format!("{prefix}_{i:06}");
            let img = format!("JPEGImages/{id}.png");
            let msk = format!("SegmentationClass/{id}.png");
            io::write_rgb(&out.join(&img), &s.image)?;
            if let Some(m) = &s.mask {
                io::write_paletted_png(&out.join(&msk), m, &pal)?;
            }
            Ok(format!("{img} {msk}"))
        })
        .collect()
}

fn ids(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| l.split(' ').next())
        .map(|p| p.trim_start_matches("JPEGImages/").trim_end_matches(".png").to_string())
        .collect()
}

/// Generates and writes a synthetic dataset in VOC layout with UniMatch-style split folders.
pub fn write_voc_layout(out: &Path, opts: &WriteOptions) -> Result<()> {
    opts.cfg.validate()?;
    for d in ["JPEGImages", "SegmentationClass", "ImageSets/Segmentation", "splits"] {
        mkdir(&out.join(d))?;
    }
    let train = SyntheticDataset::new(opts.cfg.clone(), opts.seed, opts.num_train)?;
    let val = SyntheticDataset::new(opts.cfg.clone(), opts.seed.wrapping_add(1), opts.num_val)?;
    let train_lines = write_set(out, &train, "synth_train")?;
    let val_lines = write_set(out, &val, "synth_val")?;
    write_text(&out.join("ImageSets/Segmentation/train.txt"), &ids(&train_lines))?;
    write_text(&out.join("ImageSets/Segmentation/val.txt"), &ids(&val_lines))?;
    write_text(&out.join("splits/val.txt"), &val_lines)?;
    for &d in &opts.fractions {
        if d == 0 {
            return Err(Error::Config("label fraction denominator must be > 0".into()));
        }
        let n_l = opts.num_train.div_ceil(d).min(opts.num_train);
        let dir = out.join(format!("splits/1_{d}"));
        mkdir(&dir)?;
        write_text(&dir.join("labeled.txt"), &train_lines[..n_l])?;
        write_text(&dir.join("unlabeled.txt"), &train_lines[n_l..])?;
    }
    Ok(())
}
