//! Registration with the run assembly: the `[mim]` table and the S4MIM term.

use core_seg::methods::{MethodPlugin, RunContext};
use core_seg::train::Trainer;
use core_seg::Result;

use crate::{MimConfig, MimMode};

/// S4MIM as a method plug-in: `[mim]` adds the term unless `mode = "off"`; its reconstruction head (`mim_head.*`)
/// is training-only.
pub struct Plugin;

impl Plugin {
    /// `[mim]` when it switches the term on.
    fn enabled(run: &RunContext) -> Result<Option<MimConfig>> {
        Ok(run.section::<MimConfig>("mim")?.filter(|m| m.mode != MimMode::Off))
    }
}

impl MethodPlugin for Plugin {
    fn name(&self) -> &'static str {
        "mim"
    }

    fn sections(&self) -> &'static [&'static str] {
        &["mim"]
    }

    fn training_only_prefixes(&self) -> &'static [&'static str] {
        &["mim_head."]
    }

    /// Parses `[mim]`; the rest of its checks need the epoch length and run when the term is built.
    fn validate(&self, run: &RunContext) -> Result<()> {
        Self::enabled(run).map(|_| ())
    }

    fn add_terms(&self, run: &RunContext, trainer: &mut Trainer) -> Result<()> {
        if let Some(mut mim) = Self::enabled(run)? {
            mim.iters_per_epoch = run.steps_per_epoch;
            trainer.add_aux_term(|vb| crate::build_with_semi(&mim, run.semi, run.model, vb))?;
        }
        Ok(())
    }
}
