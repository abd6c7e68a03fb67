//! Recipes on real photos (CamVid, Weizmann Horse, Stanford Background) with the ImageNet MobileNetV2 encoder.
//!
//! Each reads its data from `--data-root` (or `$SEMISEG_DATA`) as distributed, and stops before any training
//! when the folders are absent, naming what it expects and where the data comes from. The encoder is
//! `@mobilenet_v2` (`cargo xtask fetch-weights mobilenet_v2`). Budgets: `docs/real-data.md`.

use super::recipes::{row, Recipe, RowSpec};

const CAMVID: &str = include_str!("../../../../configs/camvid.toml");
const HORSE: &str = include_str!("../../../../configs/horse.toml");
const STANFORD: &str = include_str!("../../../../configs/stanford.toml");

const SUPERVISED: &str = "[semi]\nmethod = \"supervised\"\n";
const UNIMATCH: &str = "[semi]\nmethod = \"unimatch\"\n";

/// Supervised on the labelled subset and UniMatch on it plus the rest of train as unlabelled images.
fn base_rows() -> Vec<RowSpec> {
    vec![row("supervised", SUPERVISED), row("unimatch", UNIMATCH)]
}

/// The label gap on CamVid: supervised on 1/32, 1/16, 1/8 and all of the 367 training frames, and 1/8 from a
/// randomly initialised encoder (what the ImageNet encoder is worth at this budget).
fn camvid_gap_rows() -> Vec<RowSpec> {
    vec![
        row("supervised-12", "[semi]\nmethod = \"supervised\"\n[data.folder]\nnum_labeled = 12\n"),
        row("supervised-23", "[semi]\nmethod = \"supervised\"\n[data.folder]\nnum_labeled = 23\n"),
        row("supervised-46", "[semi]\nmethod = \"supervised\"\n[data.folder]\nnum_labeled = 46\n"),
        row("supervised-367", "[semi]\nmethod = \"supervised\"\n[data.folder]\nnum_labeled = 367\n"),
        row(
            "supervised-46-random-init",
            "pretrained = \"@none\"\n[semi]\nmethod = \"supervised\"\n[data.folder]\nnum_labeled = 46\n",
        ),
    ]
}

/// The real-photo recipes, in `cargo xtask list` order.
pub fn all() -> Vec<Recipe> {
    vec![
        Recipe {
            name: "camvid",
            description:
                "CamVid, 46 of 367 frames labelled (1/8), ImageNet MobileNetV2 DeepLabV3+: supervised, UniMatch",
            dataset: "CamVid (SegNet layout)",
            cpu_time: "≈ 2 h per seed",
            base: CAMVID,
            budget: "",
            rows: base_rows(),
            seeds: 3,
            reference: &[],
            reference_source: "",
        },
        Recipe {
            name: "camvid-gap",
            description:
                "CamVid label gap: supervised on 12, 23, 46 and all 367 labelled frames, and 46 from random init",
            dataset: "CamVid (SegNet layout)",
            cpu_time: "≈ 1 h",
            base: CAMVID,
            budget: "",
            rows: camvid_gap_rows(),
            seeds: 1,
            reference: &[],
            reference_source: "",
        },
        Recipe {
            name: "horse",
            description: "Weizmann Horse, 22 of 172 photos labelled (1/8), ImageNet MobileNetV2: supervised, UniMatch",
            dataset: "Weizmann Horse (folder)",
            cpu_time: "≈ 1.5 h per seed",
            base: HORSE,
            budget: "[data.folder]\nnum_labeled = 22\n",
            rows: base_rows(),
            seeds: 3,
            reference: &[],
            reference_source: "",
        },
        Recipe {
            name: "stanford",
            description:
                "Stanford Background, 62 of 500 photos labelled (1/8), ImageNet MobileNetV2: supervised, UniMatch",
            dataset: "Stanford Background",
            cpu_time: "≈ 1.5 h per seed",
            base: STANFORD,
            budget: "[data.folder]\nnum_labeled = 62\n",
            rows: base_rows(),
            seeds: 3,
            reference: &[],
            reference_source: "",
        },
    ]
}
