//! Committed results a recipe's rows are read against: rows of other recipes' `results.json` (3 seeds), embedded
//! at build time from `results/`, printed and reported beside this run's numbers.

use std::fmt::Write as _;

use crate::error::Context;
use crate::Result;

use super::recipes::find;
use super::report::{ResultRow, Results};

/// Where a row's reference comes from: row `method` of the committed `results` (the text of a `results.json`)
/// of recipe `recipe`.
#[derive(Debug, Clone, Copy)]
pub struct RowReference {
    pub recipe: &'static str,
    pub method: &'static str,
    pub results: &'static str,
}

/// A reference resolved for one row of this run.
#[derive(Debug, Clone)]
pub struct Reference {
    /// The row of this run.
    pub row: String,
    pub recipe: String,
    /// The committed row (mean ± std over its seeds).
    pub reference: ResultRow,
    /// Iterations and validation scenes of the reference runs.
    pub iters: usize,
    pub num_val: usize,
}

impl RowReference {
    /// Reads the committed row and the budget its recipe trains with; an error names what is missing.
    pub fn resolve(&self, row: &str) -> Result<Reference> {
        let origin = || format!("committed results of recipe {}", self.recipe);
        let res: Results = serde_json::from_str(self.results).with_context(origin)?;
        let reference = res
            .rows
            .into_iter()
            .find(|r| r.method == self.method)
            .with_context(|| format!("{}: no row `{}`", origin(), self.method))?;
        let recipe = find(self.recipe).with_context(|| format!("no recipe `{}`", self.recipe))?;
        let spec = recipe
            .rows
            .iter()
            .find(|r| r.method == self.method)
            .with_context(|| format!("recipe {} has no row `{}`", self.recipe, self.method))?;
        let cfg = super::row_config(&recipe, spec, 0)?;
        let (iters, num_val) = (cfg.train.iters, cfg.data.synthetic.num_val);
        Ok(Reference { row: row.to_string(), recipe: self.recipe.to_string(), reference, iters, num_val })
    }
}

/// This run's rows beside their references, as Markdown (empty without references).
pub fn table(res: &Results, refs: &[Reference]) -> String {
    if refs.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "| method | mIoU % (this run) | committed reference, mIoU % (mean ± std, seeds) | reference run |\n\
         |---|---|---|---|\n",
    );
    for r in refs {
        let ours = res.rows.iter().find(|x| x.method == r.row).map(|x| format!("{:.2}", x.miou_mean));
        let c = &r.reference;
        let _ = writeln!(
            s,
            "| {} | {} | {:.2} ± {:.2} ({}) | `{}` row `{}`, {} iterations, {} validation scenes |",
            r.row,
            ours.unwrap_or_else(|| "-".into()),
            c.miou_mean,
            c.miou_std,
            c.seeds.len(),
            r.recipe,
            c.method,
            r.iters,
            r.num_val
        );
    }
    s
}

/// What the references are, printed above their table.
pub const HEADING: &str = "Committed references (the same rows trained with their recipes' full budget, 3 seeds; \
                           read this run against them, not as a regression check):\n\n";

/// The report section of [`table`] (empty without references).
pub fn section(table: &str) -> String {
    if table.is_empty() {
        return String::new();
    }
    format!("\n## Committed references\n\n{HEADING}{table}")
}
