//! Registration with the run assembly: `semi.method = "guidedmix"`, the `[guidedmix]` table and the framework.

use candle_nn::VarBuilder;
use core_seg::methods::{MethodPlugin, RunContext};
use core_seg::plugin::Framework;
use core_seg::{Error, Result};

use crate::{GuidedMixConfig, Pairing};

/// GuidedMix-Net as a method plug-in: the framework `guidedmix` (defaults of `[guidedmix]` = the official code);
/// its mixed head (`decode_head_mix.*` / `head_mix.*`) and MITrans (`mitrans.*`) are training-only.
pub struct Plugin;

impl Plugin {
    /// `[guidedmix]`, or its defaults when absent.
    pub fn config(run: &RunContext) -> Result<GuidedMixConfig> {
        Ok(run.section("guidedmix")?.unwrap_or_default())
    }
}

impl MethodPlugin for Plugin {
    fn name(&self) -> &'static str {
        "guidedmix"
    }

    fn sections(&self) -> &'static [&'static str] {
        &["guidedmix"]
    }

    fn frameworks(&self) -> &'static [&'static str] {
        &["guidedmix"]
    }

    fn training_only_prefixes(&self) -> &'static [&'static str] {
        &["decode_head_mix.", "head_mix.", "mitrans."]
    }

    fn validate(&self, run: &RunContext) -> Result<()> {
        let gm = Self::config(run)?;
        gm.validate()?;
        if run.semi.method.name() == "guidedmix" && gm.pairing == Pairing::Random && run.batch_size != run.batch_size_u
        {
            return Err(Error::Config(format!(
                "guidedmix.pairing = random pairs the batch with a permutation of itself: loader.batch_size {} \
                 must equal loader.batch_size_u {}",
                run.batch_size, run.batch_size_u
            )));
        }
        Ok(())
    }

    fn build_framework(&self, _name: &str, run: &RunContext, vb: VarBuilder<'static>) -> Result<Box<dyn Framework>> {
        crate::build(&Self::config(run)?, run.model, vb)
    }
}
