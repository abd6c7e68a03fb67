//! The recipe registry: a recipe is a base run config plus rows, each row a TOML patch over the base.

use super::references::RowReference;

/// One row of a results table.
#[derive(Debug, Clone)]
pub struct RowSpec {
    /// `supervised`, `fixmatch`, `unimatch`, `unimatch+mim`, …
    pub method: &'static str,
    /// The row's own base config, merged over the recipe's base before the recipe's budget (e.g. a method's
    /// synthetic config in `quick`).
    pub base: Option<&'static str>,
    /// TOML merged over the base config and the budget (tables merge key by key).
    pub patch: &'static str,
    /// Instead of training: evaluate the named row's checkpoints with Potts-MRF post-processing.
    pub mrf_of: Option<&'static str>,
    /// A committed result to read the row against.
    pub reference: Option<RowReference>,
}

pub(super) const fn row(method: &'static str, patch: &'static str) -> RowSpec {
    RowSpec { method, base: None, patch, mrf_of: None, reference: None }
}

/// A reproducible experiment.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub name: &'static str,
    pub description: &'static str,
    pub dataset: &'static str,
    /// Expected wall time on this project's 2-core CPU (or "GPU days" for paper recipes).
    pub cpu_time: &'static str,
    pub base: &'static str,
    /// Extra TOML applied to the base before the rows (budget of this recipe).
    pub budget: &'static str,
    pub rows: Vec<RowSpec>,
    pub seeds: usize,
    /// Verified reference numbers for the report: (row label, mIoU %) with the source.
    pub reference: &'static [(&'static str, f64)],
    pub reference_source: &'static str,
}

const SYNTHETIC: &str = include_str!("../../../../configs/synthetic.toml");
const TV_SYNTHETIC: &str = include_str!("../../../../configs/tv-synthetic.toml");
const MIM_SYNTHETIC: &str = include_str!("../../../../configs/mim-synthetic.toml");
const RECON_SYNTHETIC: &str = include_str!("../../../../configs/recon-synthetic.toml");
const GM_SYNTHETIC: &str = include_str!("../../../../configs/guidedmix-synthetic.toml");

/// The committed 3-seed results the `quick` rows are read against.
const SYNTHETIC_TABLE_RESULTS: &str = include_str!("../../../../results/synthetic-table/results.json");
const TV_SYNTHETIC_RESULTS: &str = include_str!("../../../../results/tv-synthetic/results.json");
const RECON_SYNTHETIC_RESULTS: &str = include_str!("../../../../results/recon-synthetic/results.json");
const MIM_SYNTHETIC_RESULTS: &str = include_str!("../../../../results/mim-synthetic/results.json");
const GM_SYNTHETIC_RESULTS: &str = include_str!("../../../../results/guidedmix-synthetic/results.json");

/// TV-paper rows: supervised, supervised + MRF (same checkpoints), the same MRF without its contrast term
/// (plain Potts smoothing: separates the MRF's smoothing from its image-edge alignment), supervised + TV,
/// UniMatch + TV.
pub(super) fn tv_rows() -> Vec<RowSpec> {
    let mrf = |method, patch| RowSpec { mrf_of: Some("supervised"), ..row(method, patch) };
    vec![
        row("supervised", "[semi]\nmethod = \"supervised\"\n[tv]\nenabled = false\n"),
        mrf("supervised+mrf", "[semi]\nmethod = \"supervised\"\n"),
        mrf("supervised+mrf-potts", "[semi]\nmethod = \"supervised\"\n[mrf]\ncontrast = false\n"),
        row("supervised+tv", "[semi]\nmethod = \"supervised\"\n[tv]\nenabled = true\n"),
        row("unimatch+tv", "[semi]\nmethod = \"unimatch\"\n[tv]\nenabled = true\n"),
    ]
}

/// Every MIM term off: the UniMatch baseline of the MIM recipes.
const MIM_OFF: &str = "[mim]\nmode = \"off\"\n[mim.fa]\nmode = \"off\"\n[mim.sem]\nmode = \"off\"\n";

/// The paper recipes' rows: UniMatch and UniMatch + full S4MIM.
pub(super) fn paper_mim_rows() -> Vec<RowSpec> {
    vec![row("unimatch", MIM_OFF), row("unimatch+s4mim", "")]
}

/// S4MIM ablation rows (`docs/aux-mim.md`).
pub(super) fn mim_rows() -> Vec<RowSpec> {
    vec![
        row("unimatch", MIM_OFF),
        row("unimatch+plain-mim", "[mim]\nmode = \"plain\"\n[mim.fa]\nmode = \"off\"\n[mim.sem]\nmode = \"off\"\n"),
        row("unimatch+classwise-mim", "[mim.fa]\nmode = \"off\"\n[mim.sem]\nmode = \"off\"\n"),
        row("unimatch+classwise-mim+fa", "[mim.sem]\nmode = \"off\"\n"),
        row("unimatch+s4mim", ""),
    ]
}

/// Reconstruction rows (`docs/aux-recon.md`): for each base, the base alone, + recon (plain), + disentangled
/// recon (fgbg).
macro_rules! recon_rows_of {
    ($($base:literal),*) => {
        vec![$(
            row($base, concat!("[semi]\nmethod = \"", $base, "\"\n[recon]\nenabled = false\n")),
            row(
                concat!($base, "+recon"),
                concat!("[semi]\nmethod = \"", $base, "\"\n[recon]\nenabled = true\nmode = \"plain\"\n"),
            ),
            row(
                concat!($base, "+recon-fgbg"),
                concat!("[semi]\nmethod = \"", $base, "\"\n[recon]\nenabled = true\nmode = \"fgbg\"\n"),
            ),
        )*]
    };
}

pub(super) use recon_rows_of;

pub(super) fn recon_rows() -> Vec<RowSpec> {
    recon_rows_of!("supervised", "mean_teacher", "fixmatch", "unimatch")
}

/// The supervised baseline of GuidedMix's own code: same network, batches and BN, `L_uns = 0`.
pub(super) const GM_SUPERVISED: &str = "[guidedmix]\nunsup_weight = 0.0\n";

/// GuidedMix rows (`docs/guidedmix.md`): supervised, the official code, and each paper reading on its own.
fn guidedmix_rows() -> Vec<RowSpec> {
    vec![
        row("supervised", GM_SUPERVISED),
        row("guidedmix", ""),
        row("guidedmix-similar", "[guidedmix]\npairing = \"similar\"\n"),
        row("guidedmix-image", "[guidedmix]\nmix_space = \"image\"\n"),
        row("guidedmix-mitrans", "[guidedmix]\nmitrans = true\nmitrans_channels = 64\n"),
        row("guidedmix-paper", "[guidedmix]\ndirection = \"paper\"\n"),
        row("supervised-dlv3p", "[model]\nhead = \"deeplabv3plus\"\n[guidedmix]\nunsup_weight = 0.0\n"),
        row("guidedmix-dlv3p", "[model]\nhead = \"deeplabv3plus\"\n"),
    ]
}

fn frameworks() -> Vec<RowSpec> {
    vec![
        row("supervised", "[semi]\nmethod = \"supervised\"\n"),
        row("fixmatch", "[semi]\nmethod = \"fixmatch\"\n"),
        row("unimatch", "[semi]\nmethod = \"unimatch\"\n"),
    ]
}

/// `quick`: the frameworks, and each method crate on its natural base (its synthetic recipe's config: supervised
/// with TV on 1% labelled pixels, UniMatch + reconstruction, UniMatch + S4MIM, GuidedMix on DeepLabV3+), each read
/// against the committed 3-seed result of that row.
fn quick_rows() -> Vec<RowSpec> {
    let reference = |recipe, method, results| Some(RowReference { recipe, method, results });
    let method = |method, base, recipe, results| RowSpec {
        base: Some(base),
        reference: reference(recipe, method, results),
        ..row(method, "")
    };
    let mut rows: Vec<RowSpec> = frameworks()
        .into_iter()
        .map(|r| RowSpec { reference: reference("synthetic-table", r.method, SYNTHETIC_TABLE_RESULTS), ..r })
        .collect();
    rows.extend([
        method("supervised+tv", TV_SYNTHETIC, "tv-synthetic", TV_SYNTHETIC_RESULTS),
        method("unimatch+recon", RECON_SYNTHETIC, "recon-synthetic", RECON_SYNTHETIC_RESULTS),
        method("unimatch+s4mim", MIM_SYNTHETIC, "mim-synthetic", MIM_SYNTHETIC_RESULTS),
        RowSpec {
            base: Some(GM_SYNTHETIC),
            reference: reference("guidedmix-synthetic", "guidedmix-dlv3p", GM_SYNTHETIC_RESULTS),
            ..row("guidedmix", "[model]\nhead = \"deeplabv3plus\"\n")
        },
    ]);
    rows
}

/// Every recipe, in `cargo xtask list` order: synthetic, real photos (CPU), then the GPU-scale paper recipes.
pub fn all() -> Vec<Recipe> {
    let mut all = cpu_synthetic();
    all.extend(super::recipes_real::all());
    all.extend(super::recipes_paper::all());
    all
}

fn cpu_synthetic() -> Vec<Recipe> {
    vec![
        Recipe {
            name: "quick",
            description: "synthetic scenes at a reduced budget, one seed: supervised, FixMatch, UniMatch, and each method \
                          on its natural base (supervised + TV, UniMatch + recon, UniMatch + S4MIM, GuidedMix), beside \
                          the committed 3-seed results",
            dataset: "synthetic (embedded)",
            cpu_time: "≤ 10 min",
            base: SYNTHETIC,
            budget: "pretrained = \"@synthetic-encoder\"\n[train]\niters = 150\neval_every = 50\n[data.synthetic]\nnum_val = 200\n",
            rows: quick_rows(),
            seeds: 1,
            reference: &[],
            reference_source: "",
        },
        Recipe {
            name: "smoke",
            description: "a seconds-long run of the whole reproduce pipeline (tests, CI)",
            dataset: "synthetic (embedded)",
            cpu_time: "≈ 10 s",
            base: SYNTHETIC,
            budget:
                "[train]\niters = 2\neval_every = 0\n[data.synthetic]\nnum_train = 32\nnum_labeled = 8\nnum_val = 4\n\
                     [loader]\nbatch_size = 2\nbatch_size_u = 2\n[model]\nbase_width = 8\naspp_channels = 8\n\
                     reduce_channels = 8\nfuse_channels = 8\n",
            rows: vec![
                row("supervised", "[semi]\nmethod = \"supervised\"\n"),
                row("unimatch", "[semi]\nmethod = \"unimatch\"\n"),
            ],
            seeds: 2,
            reference: &[],
            reference_source: "",
        },
        Recipe {
            name: "synthetic-gap",
            description:
                "the label gap semi-supervised methods must close: supervised on 1/16 vs all labels, from scratch",
            dataset: "synthetic (embedded)",
            cpu_time: "≈ 20 min",
            base: SYNTHETIC,
            budget: "[train]\neval_every = 250\n",
            rows: vec![
                row("supervised", "[semi]\nmethod = \"supervised\"\n"),
                row("supervised-all-labels", "[semi]\nmethod = \"supervised\"\n[data.synthetic]\nnum_labeled = 2000\n"),
            ],
            seeds: 1,
            reference: &[],
            reference_source: "",
        },
        Recipe {
            name: "synthetic-table",
            description: "the full synthetic benchmark: every framework, 3 seeds, mean ± std",
            dataset: "synthetic (embedded)",
            cpu_time: "≈ 2 h",
            base: SYNTHETIC,
            budget: "pretrained = \"@synthetic-encoder\"\n",
            rows: {
                let mut r = frameworks();
                r.push(row("mean_teacher", "[semi]\nmethod = \"mean_teacher\"\n"));
                r
            },
            seeds: 3,
            reference: &[],
            reference_source: "",
        },
        Recipe {
            name: "tv-synthetic",
            description: "TV loss, 1% labelled pixels per image: supervised, + MRF (and its Potts part alone), + TV, UniMatch + TV (3 seeds)",
            dataset: "synthetic (embedded)",
            cpu_time: "≈ 1.5 h",
            base: TV_SYNTHETIC,
            budget: "",
            rows: tv_rows(),
            seeds: 3,
            reference: &[],
            reference_source: "",
        },
        Recipe {
            name: "mim-synthetic",
            description: "S4MIM ablation on UniMatch, 1/16 labels: + plain MIM, + class-wise MIM, + FA, + semantic MIM",
            dataset: "synthetic (embedded)",
            cpu_time: "≈ 3 h",
            base: MIM_SYNTHETIC,
            budget: "",
            rows: mim_rows(),
            seeds: 3,
            reference: &[],
            reference_source: "",
        },
        Recipe {
            name: "recon-synthetic",
            description: "image reconstruction as an auxiliary task, 1/16 labels: base, + recon, + fgbg recon for \
                          supervised, mean teacher, FixMatch, UniMatch (3 seeds, 300 iterations)",
            dataset: "synthetic (embedded)",
            cpu_time: "≈ 2 h",
            base: RECON_SYNTHETIC,
            budget: "",
            rows: recon_rows(),
            seeds: 3,
            reference: &[],
            reference_source: "",
        },
        Recipe {
            name: "guidedmix-synthetic",
            description: "GuidedMix-Net, 1/16 labels: supervised, the official code, and each paper switch (DeepLabV3 head)",
            dataset: "synthetic (embedded)",
            cpu_time: "≈ 6 h (8 rows × 3 seeds × 1000 iterations; ≈ 8 min a run)",
            base: GM_SYNTHETIC,
            budget: "",
            rows: guidedmix_rows(),
            seeds: 3,
            reference: &[],
            reference_source: "",
        },
    ]
}

/// Looks a recipe up by name.
pub fn find(name: &str) -> Option<Recipe> {
    all().into_iter().find(|r| r.name == name)
}

#[cfg(test)]
#[path = "recipes_tests.rs"]
mod tests;
