//! The papers' own settings (VOC, Cityscapes, ResNet-101): GPU-scale recipes, listed for completeness and run with
//! `--device cuda` (or `--gpus N`) where GPUs are available.

use super::recipes::{paper_mim_rows, recon_rows, row, tv_rows, Recipe, GM_SUPERVISED};

const VOC: &str = include_str!("../../../../configs/voc.toml");
const CITYSCAPES: &str = include_str!("../../../../configs/cityscapes.toml");
const TV_VOC: &str = include_str!("../../../../configs/tv-voc.toml");
const MIM_VOC: &str = include_str!("../../../../configs/mim-voc.toml");
const MIM_CITYSCAPES: &str = include_str!("../../../../configs/mim-cityscapes.toml");
const RECON_VOC: &str = include_str!("../../../../configs/recon-voc.toml");
const RECON_CITYSCAPES: &str = include_str!("../../../../configs/recon-cityscapes.toml");
const GM_VOC: &str = include_str!("../../../../configs/guidedmix-voc.toml");
const GM_CITYSCAPES: &str = include_str!("../../../../configs/guidedmix-cityscapes.toml");

/// The GPU-scale recipes, in `cargo xtask list` order.
pub fn all() -> Vec<Recipe> {
    vec![
        Recipe {
            name: "tv-voc",
            description: "TV loss on VOC with sparse pixel labels (rows as tv-synthetic)",
            dataset: "PASCAL VOC 2012 + SBD",
            cpu_time: "GPU days (not a CPU recipe)",
            base: TV_VOC,
            budget: "",
            rows: tv_rows(),
            seeds: 1,
            reference: &[],
            reference_source: "",
        },
        Recipe {
            name: "mim-voc",
            description: "S4MIM on UniMatch, VOC classic split (92 by default; 92…1464 via data.split), R-101",
            dataset: "PASCAL VOC 2012 + SBD",
            cpu_time: "≈ 20 h per run on 4 GPUs",
            base: MIM_VOC,
            budget: "",
            rows: paper_mim_rows(),
            seeds: 1,
            reference: &[("unimatch", 75.2)],
            reference_source:
                "UniMatch README and logs (VOC classic 92, R-101; re-run mean 75.0). No verified S4MIM number exists",
        },
        Recipe {
            name: "mim-cityscapes",
            description: "S4MIM on UniMatch, Cityscapes 1/16, R-101, crop 801",
            dataset: "Cityscapes",
            cpu_time: "GPU days (not a CPU recipe)",
            base: MIM_CITYSCAPES,
            budget: "",
            rows: paper_mim_rows(),
            seeds: 1,
            reference: &[("unimatch", 76.6)],
            reference_source: "UniMatch README (Cityscapes 1/16, R-101). No verified S4MIM number exists",
        },
        Recipe {
            name: "recon-voc",
            description:
                "reconstruction on each base (base, + recon, + fgbg), VOC classic 183 (366 via data.split), R-101",
            dataset: "PASCAL VOC 2012 + SBD",
            cpu_time: "≈ 20 h per run on 4 GPUs",
            base: RECON_VOC,
            budget: "",
            rows: recon_rows(),
            seeds: 1,
            reference: &[("supervised", 55.3), ("unimatch", 77.2)],
            reference_source: "UniMatch README (VOC classic 183, R-101). No paper number for the \
                               reconstruction branch exists",
        },
        Recipe {
            name: "recon-cityscapes",
            description: "reconstruction on each base (base, + recon, + fgbg), Cityscapes 1/16, R-101, crop 801",
            dataset: "Cityscapes",
            cpu_time: "GPU days (not a CPU recipe)",
            base: RECON_CITYSCAPES,
            budget: "",
            rows: recon_rows(),
            seeds: 1,
            reference: &[("supervised", 66.3), ("unimatch", 76.6)],
            reference_source: "UniMatch README (Cityscapes 1/16, R-101). No paper number for the \
                               reconstruction branch exists",
        },
        Recipe {
            name: "guidedmix-voc",
            description:
                "GuidedMix-Net (official code) on VOC 1464, DeepLabV3 ResNetV1c-50 OS 8, crop 512, 20k iterations",
            dataset: "PASCAL VOC 2012 + SBD",
            cpu_time: "GPU hours (not a CPU recipe)",
            base: GM_VOC,
            budget: "",
            rows: vec![row("supervised", GM_SUPERVISED), row("guidedmix", "")],
            seeds: 1,
            reference: &[],
            reference_source: "No verified GuidedMix number exists (the papers' tables are not available)",
        },
        Recipe {
            name: "guidedmix-cityscapes",
            description:
                "GuidedMix-Net (official code) on Cityscapes 372 labels, DeepLabV3 ResNetV1c-101 OS 8, crop 769",
            dataset: "Cityscapes",
            cpu_time: "GPU days (not a CPU recipe)",
            base: GM_CITYSCAPES,
            budget: "",
            rows: vec![row("supervised", GM_SUPERVISED), row("guidedmix", "")],
            seeds: 1,
            reference: &[],
            reference_source: "No verified GuidedMix number exists (the papers' tables are not available)",
        },
        Recipe {
            name: "unimatch-voc",
            description: "UniMatch on PASCAL VOC 2012, classic 92-label split, R-101 deep stem, crop 321",
            dataset: "PASCAL VOC 2012 + SBD",
            cpu_time: "≈ 20 h on 4 GPUs (not a CPU recipe)",
            base: VOC,
            budget: "",
            rows: vec![
                row("supervised", "[semi]\nmethod = \"supervised\"\n"),
                row("unimatch", "[semi]\nmethod = \"unimatch\"\n"),
            ],
            seeds: 1,
            reference: &[("supervised", 45.1), ("unimatch", 75.2)],
            reference_source: "UniMatch README and training logs (VOC classic 92, R-101, crop 321; re-run mean 75.0)",
        },
        Recipe {
            name: "unimatch-cityscapes",
            description: "UniMatch on Cityscapes 1/16 (186 labels), R-101, crop 801, OHEM, sliding-window eval",
            dataset: "Cityscapes",
            cpu_time: "GPU days (not a CPU recipe)",
            base: CITYSCAPES,
            budget: "",
            rows: vec![
                row("supervised", "[semi]\nmethod = \"supervised\"\n"),
                row("unimatch", "[semi]\nmethod = \"unimatch\"\n"),
            ],
            seeds: 1,
            reference: &[("supervised", 66.3), ("unimatch", 76.6)],
            reference_source: "UniMatch README (Cityscapes 1/16, R-101)",
        },
    ]
}
