//! The method plug-ins of a run: every method crate registers here with one line ([`METHODS`]); the run
//! assembly asks them for their config tables, terms, frameworks and training-only parameters.

use crate::error::bail;
use crate::Result;
use candle_nn::VarBuilder;
use core_seg::frameworks::Method;
use core_seg::methods::{MethodPlugin, RunContext};
use core_seg::plugin::Framework;
use core_seg::train::Trainer;

/// Every method crate, in the order their terms join a run.
pub static METHODS: &[&dyn MethodPlugin] =
    &[&tv_loss::Plugin, &aux_mim::Plugin, &aux_recon::Plugin, &guidedmix::Plugin];

/// The plug-in whose framework `semi.method` names (`None` for core-seg's own frameworks).
pub fn framework_plugin(method: &Method) -> Result<Option<&'static dyn MethodPlugin>> {
    let Method::Other(name) = method else { return Ok(None) };
    match METHODS.iter().find(|p| p.frameworks().contains(&name.as_str())) {
        Some(p) => Ok(Some(*p)),
        None => {
            let mut known: Vec<&str> = Method::BUILTIN.iter().map(|m| m.name()).collect();
            known.extend(METHODS.iter().flat_map(|p| p.frameworks().iter().copied()));
            bail!("semi.method = {name}: no such framework (frameworks: {})", known.join(", "))
        }
    }
}

/// Checks that each method table has a plug-in, that `semi.method` has a framework, and every plug-in's tables.
pub fn validate(run: &RunContext) -> Result<()> {
    let sections: Vec<&str> = METHODS.iter().flat_map(|p| p.sections().iter().copied()).collect();
    if let Some(bad) = run.sections.keys().find(|k| !sections.contains(&k.as_str())) {
        bail!("unknown key `{bad}` (method tables: {})", sections.join(", "));
    }
    framework_plugin(&run.semi.method)?;
    for p in METHODS {
        p.validate(run)?;
    }
    Ok(())
}

/// The builder of the framework `semi.method` names, for [`Trainer::with_framework`].
pub fn framework_builder<'a>(
    run: &'a RunContext<'a>,
) -> Result<impl FnOnce(VarBuilder<'static>) -> core_seg::Result<Box<dyn Framework>> + 'a> {
    let plugin = framework_plugin(&run.semi.method)?;
    Ok(move |vb| match plugin {
        Some(p) => p.build_framework(run.semi.method.name(), run, vb),
        None => core_seg::frameworks::build(run.semi),
    })
}

/// Adds every plug-in's auxiliary terms to the trainer.
pub fn add_terms(run: &RunContext, trainer: &mut Trainer) -> Result<()> {
    for p in METHODS {
        p.add_terms(run, trainer)?;
    }
    Ok(())
}

/// Name prefixes of the training-only parameters of every plug-in (checkpoints keep them for resume; inference
/// ignores them).
pub fn training_only_prefixes() -> Vec<&'static str> {
    METHODS.iter().flat_map(|p| p.training_only_prefixes().iter().copied()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plug-ins own distinct tables, none named like a core key of the run config, and frameworks that do not
    /// shadow core-seg's; their training-only prefixes are collected in registration order.
    #[test]
    fn plugins_do_not_collide() -> anyhow::Result<()> {
        let mut tables: Vec<&str> = METHODS.iter().flat_map(|p| p.sections().iter().copied()).collect();
        let n = tables.len();
        tables.sort_unstable();
        tables.dedup();
        assert_eq!(tables.len(), n, "{tables:?}");
        let core = crate::RunConfig::from_toml("[data]\ndataset = \"synthetic\"\n[model]\nnclass = 6\n", "t".as_ref())?;
        let json = serde_json::to_value(&core)?;
        let keys: Vec<&String> = json.as_object().map(|o| o.keys().collect()).unwrap_or_default();
        assert!(keys.len() >= 10 && keys.iter().all(|k| !tables.contains(&k.as_str())), "{keys:?}");
        for p in METHODS {
            assert!(p.frameworks().iter().all(|f| Method::BUILTIN.iter().all(|m| m.name() != *f)), "{}", p.name());
        }
        let prefixes = training_only_prefixes();
        assert_eq!(prefixes, ["mim_head.", "recon.", "decode_head_mix.", "head_mix.", "mitrans."]);
        Ok(())
    }
}
