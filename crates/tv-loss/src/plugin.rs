//! Registration with the run assembly: the `[tv]` and `[mrf]` tables and the TV term.

use core_seg::methods::{MethodPlugin, RunContext};
use core_seg::train::Trainer;
use core_seg::Result;

use crate::{MrfConfig, TvConfig};

/// The TV loss as a method plug-in: `[tv]` adds the term when `enabled`; `[mrf]` configures the MRF baseline of
/// the evaluation.
pub struct Plugin;

impl Plugin {
    /// `[tv]`, or `None` when absent.
    pub fn tv(run: &RunContext) -> Result<Option<TvConfig>> {
        run.section("tv")
    }

    /// `[mrf]`, or its defaults when absent.
    pub fn mrf(run: &RunContext) -> Result<MrfConfig> {
        Ok(run.section("mrf")?.unwrap_or_default())
    }
}

impl MethodPlugin for Plugin {
    fn name(&self) -> &'static str {
        "tv"
    }

    fn sections(&self) -> &'static [&'static str] {
        &["tv", "mrf"]
    }

    fn validate(&self, run: &RunContext) -> Result<()> {
        Self::mrf(run)?;
        match Self::tv(run)? {
            Some(tv) if tv.enabled => tv.validate(),
            _ => Ok(()),
        }
    }

    fn add_terms(&self, run: &RunContext, trainer: &mut Trainer) -> Result<()> {
        if let Some(tv) = Self::tv(run)?.filter(|tv| tv.enabled) {
            trainer.add_aux_term(|_vb| crate::build(&tv))?;
        }
        Ok(())
    }
}
