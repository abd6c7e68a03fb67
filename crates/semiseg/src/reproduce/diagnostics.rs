//! Diagnostics a recipe's report carries beside its table: the reconstruction channel diagnostic (`docs/aux-recon.md`,
//! `cargo xtask diagnose recon-channels`) on the best checkpoint of every seed of every row that trains the
//! reconstruction branch (synthetic recipes; on VOC/Cityscapes run the command yourself — it is CPU-only).

use std::fmt::Write;
use std::path::{Path, PathBuf};

use crate::error::{fs, Context};
use crate::Result;
use data::DatasetKind;

use crate::config::RunConfig;
use crate::diagnose::{recon_channels, ReconChannelsOptions};

/// Mean over classes of the best channel IoU, for the trained decoder, its random-init control and the
/// segmentation decoder's `fuse` features, on one seed's checkpoint.
pub struct ChannelSummary {
    pub row: String,
    pub seed: u64,
    pub trained: f64,
    pub random: f64,
    pub fuse: f64,
}

/// Whether `cfg` trains the reconstruction branch on a dataset the diagnostic runs on here.
pub fn wants_recon_channels(cfg: &RunConfig) -> Result<bool> {
    let enabled = cfg.section::<aux_recon::ReconConfig>("recon")?.is_some_and(|r| r.enabled);
    Ok(cfg.data.dataset == DatasetKind::Synthetic && enabled)
}

/// Runs (or with `resume`, reuses) the diagnostic of `run_dir/best.safetensors` into `run_dir/diagnose`.
pub fn recon_channel_summary(
    row: &str,
    seed: u64,
    run_dir: &Path,
    data_root: Option<&PathBuf>,
    resume: bool,
) -> Result<ChannelSummary> {
    let out = run_dir.join("diagnose");
    let scores = out.join("scores.json");
    if !(resume && scores.exists()) {
        recon_channels(ReconChannelsOptions {
            checkpoint: run_dir.join("best.safetensors"),
            config: None,
            data_root: data_root.cloned(),
            out: out.clone(),
            layer: None,
            quantile: None,
            max_images: None,
            top: 8,
            seed: None,
        })?;
    }
    let json: serde_json::Value = serde_json::from_slice(&fs::read(&scores)?)
        .with_context(|| format!("{}: not a diagnostic scores.json", scores.display()))?;
    let subject = |i: usize| -> Result<f64> {
        json["subjects"][i]["mean_over_classes_of_max_iou"]
            .as_f64()
            .with_context(|| format!("{}: subject {i} has no score", scores.display()))
    };
    Ok(ChannelSummary { row: row.to_string(), seed, trained: subject(0)?, random: subject(1)?, fuse: subject(2)? })
}

/// The report section for `summaries` (empty when there are none).
pub fn recon_channels_section(summaries: &[ChannelSummary], quantile: Option<f64>) -> String {
    if summaries.is_empty() {
        return String::new();
    }
    let mut s = String::from("\n## Reconstruction channel diagnostic\n\n");
    let q = quantile.map(|q| format!(" at activation quantile {q}")).unwrap_or_default();
    let _ = writeln!(
        s,
        "Mean over classes of the best channel IoU{q} on the validation set (`diagnose/` in each run directory \
         holds scores.json and the PNG grids).\n\n| row | seed | recon (trained) | recon (random init) | seg \
         decoder fuse |\n|---|---|---|---|---|"
    );
    for c in summaries {
        let _ = writeln!(s, "| {} | {} | {:.4} | {:.4} | {:.4} |", c.row, c.seed, c.trained, c.random, c.fuse);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_lists_every_seed_and_is_empty_without_runs() {
        assert!(recon_channels_section(&[], Some(0.9)).is_empty());
        let c = |seed| ChannelSummary { row: "supervised+recon".into(), seed, trained: 0.15, random: 0.1, fuse: 0.25 };
        let s = recon_channels_section(&[c(0), c(1)], Some(0.9));
        assert!(s.contains("quantile 0.9"));
        assert!(s.contains("| supervised+recon | 0 | 0.1500 | 0.1000 | 0.2500 |"));
        assert!(s.contains("| supervised+recon | 1 |"));
    }
}
