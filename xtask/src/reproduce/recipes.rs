//! The recipe registry: a recipe is a base run config plus rows, each row a TOML patch over the base.

/// One row of a results table.
#[derive(Debug, Clone)]
pub struct RowSpec {
    /// `supervised`, `fixmatch`, `unimatch`, `unimatch+mim`, …
    pub method: &'static str,
    /// TOML merged over the base config (tables merge key by key).
    pub patch: &'static str,
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

const SYNTHETIC: &str = include_str!("../../../configs/synthetic.toml");
const VOC: &str = include_str!("../../../configs/voc.toml");
const CITYSCAPES: &str = include_str!("../../../configs/cityscapes.toml");

fn frameworks() -> Vec<RowSpec> {
    vec![
        RowSpec { method: "supervised", patch: "[semi]\nmethod = \"supervised\"\n" },
        RowSpec { method: "fixmatch", patch: "[semi]\nmethod = \"fixmatch\"\n" },
        RowSpec { method: "unimatch", patch: "[semi]\nmethod = \"unimatch\"\n" },
    ]
}

/// Every recipe, in `cargo xtask list` order.
pub fn all() -> Vec<Recipe> {
    vec![
        Recipe {
            name: "quick",
            description: "synthetic scenes, 1/16 labels: supervised, FixMatch, UniMatch at a reduced budget, one seed",
            dataset: "synthetic (embedded)",
            cpu_time: "≤ 10 min",
            base: SYNTHETIC,
            budget: "[train]\niters = 300\neval_every = 0\n[data.synthetic]\nnum_val = 200\n",
            rows: frameworks(),
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
                RowSpec { method: "supervised", patch: "[semi]\nmethod = \"supervised\"\n" },
                RowSpec { method: "unimatch", patch: "[semi]\nmethod = \"unimatch\"\n" },
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
                RowSpec { method: "supervised", patch: "[semi]\nmethod = \"supervised\"\n" },
                RowSpec {
                    method: "supervised-all-labels",
                    patch: "[semi]\nmethod = \"supervised\"\n[data.synthetic]\nnum_labeled = 2000\n",
                },
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
            budget: "",
            rows: {
                let mut r = frameworks();
                r.push(RowSpec { method: "mean_teacher", patch: "[semi]\nmethod = \"mean_teacher\"\n" });
                r
            },
            seeds: 3,
            reference: &[],
            reference_source: "",
        },
        Recipe {
            name: "unimatch-voc",
            description: "UniMatch on PASCAL VOC 2012, classic 92-label split, R-101 deep stem, crop 321",
            dataset: "PASCAL VOC 2012 + SBD",
            cpu_time: "≈ 20 h on 4 GPUs (not a CPU recipe)",
            base: VOC,
            budget: "",
            rows: vec![
                RowSpec { method: "supervised", patch: "[semi]\nmethod = \"supervised\"\n" },
                RowSpec { method: "unimatch", patch: "[semi]\nmethod = \"unimatch\"\n" },
            ],
            seeds: 1,
            reference: &[("supervised", 45.1), ("unimatch", 75.2)],
            reference_source: "UniMatch README / unimatch.md §8 (VOC classic 92, R-101, crop 321; re-run mean 75.0)",
        },
        Recipe {
            name: "unimatch-cityscapes",
            description: "UniMatch on Cityscapes 1/16 (186 labels), R-101, crop 801, OHEM, sliding-window eval",
            dataset: "Cityscapes",
            cpu_time: "GPU days (not a CPU recipe)",
            base: CITYSCAPES,
            budget: "",
            rows: vec![
                RowSpec { method: "supervised", patch: "[semi]\nmethod = \"supervised\"\n" },
                RowSpec { method: "unimatch", patch: "[semi]\nmethod = \"unimatch\"\n" },
            ],
            seeds: 1,
            reference: &[("supervised", 66.3), ("unimatch", 76.6)],
            reference_source: "UniMatch README / unimatch.md §8 (Cityscapes 1/16, R-101)",
        },
    ]
}

/// Looks a recipe up by name.
pub fn find(name: &str) -> Option<Recipe> {
    all().into_iter().find(|r| r.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row of every recipe merges into a valid run config with the row's method.
    #[test]
    fn every_recipe_row_parses() -> anyhow::Result<()> {
        for r in all() {
            for row in &r.rows {
                let cfg = super::super::row_config(&r, row, 3)?;
                assert_eq!(cfg.train.seed, 3);
                let method = serde_json::to_value(cfg.semi.method)?;
                let m = method.as_str().unwrap_or_default();
                assert!(row.method == m || row.method.starts_with(&format!("{m}-")), "{} / {}", r.name, row.method);
            }
        }
        assert!(find("quick").is_some() && find("nope").is_none());
        Ok(())
    }
}
