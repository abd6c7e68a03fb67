//! Registration with the run assembly: the `[recon]` table and the reconstruction term.

use core_seg::methods::{MethodPlugin, RunContext};
use core_seg::train::Trainer;
use core_seg::Result;

use crate::ReconConfig;

/// Image reconstruction as a method plug-in: `[recon]` adds the term when `enabled`; the decoder R (`recon.*`) is
/// training-only and draws its initial weights from its own stream of the run seed ([`crate::var_builder`]).
pub struct Plugin;

impl MethodPlugin for Plugin {
    fn name(&self) -> &'static str {
        "recon"
    }

    fn sections(&self) -> &'static [&'static str] {
        &["recon"]
    }

    fn training_only_prefixes(&self) -> &'static [&'static str] {
        &["recon."]
    }

    fn validate(&self, run: &RunContext) -> Result<()> {
        if let Some(r) = run.section::<ReconConfig>("recon")? {
            r.geometry(run.model)?;
        }
        Ok(())
    }

    fn add_terms(&self, run: &RunContext, trainer: &mut Trainer) -> Result<()> {
        if let Some(recon) = run.section::<ReconConfig>("recon")?.filter(|r| r.enabled) {
            let (store, seed) = (trainer.store.clone(), trainer.cfg.seed);
            trainer.add_aux_term(|vb| {
                let vb = crate::var_builder(&store, seed, vb.dtype(), vb.device());
                crate::build(&recon, Some(run.semi), run.model, vb)
            })?;
        }
        Ok(())
    }
}
