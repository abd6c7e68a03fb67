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
const MIM_ON: &str = "[semi]\nmethod = \"unimatch\"\n[mim]\nmode = \"classwise\"\n";

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

/// The label gap on Stanford Background: supervised on 1/32, 1/16, 1/8 and all of the 500 training photos (the
/// other 72 ids of its train list validate).
fn stanford_gap_rows() -> Vec<RowSpec> {
    vec![
        row("supervised-16", "[semi]\nmethod = \"supervised\"\n[data.folder]\nnum_labeled = 16\n"),
        row("supervised-31", "[semi]\nmethod = \"supervised\"\n[data.folder]\nnum_labeled = 31\n"),
        row("supervised-62", "[semi]\nmethod = \"supervised\"\n[data.folder]\nnum_labeled = 62\n"),
        row("supervised-500", "[semi]\nmethod = \"supervised\"\n[data.folder]\nnum_labeled = 500\n"),
    ]
}

/// The semi-supervised table (CamVid or Stanford Background): the frameworks, the ceiling (every training frame labelled) and each seed method on UniMatch
/// (the S4MIM ablation rows as in `mim-synthetic`).
/// `all_labels`: the patch that labels every training image (the ceiling row); `gm_weight`: name and patch of
/// the GuidedMix row whose unlabelled weight is rescaled to the dataset's class count.
fn table_rows(all_labels: &'static str, gm_weight: (&'static str, &'static str)) -> Vec<RowSpec> {
    let mut rows = vec![
        row("supervised", SUPERVISED),
        row("supervised-all-labels", all_labels),
        row("fixmatch", "[semi]\nmethod = \"fixmatch\"\n"),
        row("mean_teacher", "[semi]\nmethod = \"mean_teacher\"\n"),
    ];
    // The ablation's patches switch parts of a [mim] table off; here that table starts from the crate's defaults.
    rows.extend(super::recipes::mim_rows().into_iter().map(|r| RowSpec { base: Some(MIM_ON), ..r }));
    rows.extend([
        row("unimatch+recon", "[semi]\nmethod = \"unimatch\"\n[recon]\nenabled = true\nmode = \"plain\"\n"),
        row("unimatch+recon-fgbg", "[semi]\nmethod = \"unimatch\"\n[recon]\nenabled = true\nmode = \"fgbg\"\n"),
        row("guidedmix", "[semi]\nmethod = \"guidedmix\"\n"),
        row("guidedmix-mitrans", "[semi]\nmethod = \"guidedmix\"\n[guidedmix]\nmitrans = true\n"),
        // Follow-ups on GuidedMix's harm here. (1) L_uns moving the labelled logits through −λ·z_l.
        row("guidedmix-detach", "[semi]\nmethod = \"guidedmix\"\n[guidedmix]\ndetach_labeled = true\n"),
        // (2) The loss weight: the focal loss is a mean over classes too, so weight 10 (the code's, tuned with
        // VOC's 21 classes) weighs each pixel 21/C times as much with C classes: `gm_weight` is 10·C/21.
        row(gm_weight.0, gm_weight.1),
    ]);
    rows
}

/// The TV paper's setting: every training image labelled at a fraction of its pixels (1% and 0.1%): supervised,
/// + MRF post-processing (with and without its contrast term, β chosen on validation), + TV (variants A, B, C).
fn tv_real_rows() -> Vec<RowSpec> {
    macro_rules! at_ratio {
        ($tag:literal, $ratio:literal) => {
            [
                row(concat!("supervised-", $tag), concat!("[semi]\nmethod = \"supervised\"\n", $ratio)),
                RowSpec {
                    mrf_of: Some(concat!("supervised-", $tag)),
                    ..row(concat!("supervised-", $tag, "+mrf"), concat!("[semi]\nmethod = \"supervised\"\n", $ratio))
                },
                RowSpec {
                    mrf_of: Some(concat!("supervised-", $tag)),
                    ..row(
                        concat!("supervised-", $tag, "+mrf-potts"),
                        concat!("[semi]\nmethod = \"supervised\"\n[mrf]\ncontrast = false\n", $ratio),
                    )
                },
                row(
                    concat!("supervised-", $tag, "+tv"),
                    concat!("[semi]\nmethod = \"supervised\"\n[tv]\nenabled = true\nvariant = \"A\"\n", $ratio),
                ),
                row(
                    concat!("supervised-", $tag, "+tv-isotropic"),
                    concat!("[semi]\nmethod = \"supervised\"\n[tv]\nenabled = true\nvariant = \"B\"\n", $ratio),
                ),
                row(
                    concat!("supervised-", $tag, "+tv-vectorial"),
                    concat!("[semi]\nmethod = \"supervised\"\n[tv]\nenabled = true\nvariant = \"C\"\n", $ratio),
                ),
            ]
        };
    }
    let mut rows = at_ratio!("1pct", "[data.sparse]\nratio = 0.01\n").to_vec();
    rows.extend(at_ratio!("0.1pct", "[data.sparse]\nratio = 0.001\n"));
    rows
}

/// The reconstruction paper's object-centric claim: supervised and UniMatch, each alone, + plain and +
/// object/background reconstruction.
fn recon_horse_rows() -> Vec<RowSpec> {
    super::recipes::recon_rows_of!("supervised", "unimatch")
}

/// The TV paper's setting on one dataset (rows: [`tv_real_rows`]).
macro_rules! tv_recipe {
    ($name:literal, $title:literal, $dataset:literal, $base:expr) => {
        Recipe {
            name: $name,
            description: concat!(
                "TV loss on ",
                $title,
                ", 1% and 0.1% of each training photo's pixels labelled: supervised, + MRF (± contrast), + TV \
                 (variants A, B, C)"
            ),
            dataset: $dataset,
            cpu_time: "≈ 5 h",
            base: $base,
            budget: "",
            rows: tv_real_rows(),
            seeds: 3,
            reference: &[],
            reference_source: "",
        }
    };
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
            name: "camvid-table",
            description: "CamVid, 23 of 367 frames labelled (1/16): supervised, all labels, FixMatch, UniMatch, mean \
                          teacher, UniMatch + recon (plain, fgbg), UniMatch + S4MIM ablation, GuidedMix (± MITrans)",
            dataset: "CamVid (SegNet layout)",
            cpu_time: "≈ 30 h (15 rows × 3 seeds; split with --rows / --only-seeds, continue with --resume)",
            base: CAMVID,
            budget: "[data.folder]\nnum_labeled = 23\n",
            rows: table_rows(
                "[semi]\nmethod = \"supervised\"\n[data.folder]\nnum_labeled = 367\n",
                ("guidedmix-w5.2", "[semi]\nmethod = \"guidedmix\"\n[guidedmix]\nunsup_weight = 5.2\n"), // 11 classes
            ),
            seeds: 3,
            reference: &[],
            reference_source: "",
        },
        Recipe {
            name: "stanford-table",
            description: "Stanford Background, 62 of 500 photos labelled (1/8): the rows of camvid-table",
            dataset: "Stanford Background",
            cpu_time: "≈ 35 h (15 rows × 3 seeds; split with --rows / --only-seeds, continue with --resume)",
            base: STANFORD,
            budget: "[data.folder]\nnum_labeled = 62\n",
            rows: table_rows(
                "[semi]\nmethod = \"supervised\"\n[data.folder]\nnum_labeled = 500\n",
                ("guidedmix-w3.8", "[semi]\nmethod = \"guidedmix\"\n[guidedmix]\nunsup_weight = 3.8\n"), // 8 classes
            ),
            seeds: 3,
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
        Recipe {
            name: "stanford-gap",
            description: "Stanford Background label gap: supervised on 16, 31, 62 and all 500 labelled training photos",
            dataset: "Stanford Background",
            cpu_time: "≈ 45 min",
            base: STANFORD,
            budget: "",
            rows: stanford_gap_rows(),
            seeds: 1,
            reference: &[],
            reference_source: "",
        },
        tv_recipe!("tv-horse", "Weizmann Horse", "Weizmann Horse (folder)", HORSE),
        tv_recipe!("tv-stanford", "Stanford Background", "Stanford Background", STANFORD),
        Recipe {
            name: "recon-horse",
            description: "reconstruction on Weizmann Horse, 22 of 172 photos labelled: supervised and UniMatch, each \
                          alone, + plain and + object/background reconstruction",
            dataset: "Weizmann Horse (folder)",
            cpu_time: "≈ 8 h",
            base: HORSE,
            budget: "[data.folder]\nnum_labeled = 22\n",
            rows: recon_horse_rows(),
            seeds: 3,
            reference: &[],
            reference_source: "",
        },
    ]
}
