//! How a method crate plugs into a run: [`MethodPlugin`] names the config tables it owns, the auxiliary terms or
//! the framework it adds, and the parameters only training needs. The run assembly (the `semiseg` crate) keeps one
//! list of plug-ins and asks each of them; core-seg itself names no method.

use std::collections::BTreeMap;

use candle_nn::VarBuilder;
use serde::de::DeserializeOwned;

use crate::frameworks::SemiConfig;
use crate::model::DeepLabConfig;
use crate::plugin::Framework;
use crate::train::Trainer;
use crate::{Error, Result};

/// What a plug-in sees of the run: the model, the framework settings, the batch sizes, and the method tables of
/// the run config (`[tv]`, `[mim]`, …) as JSON values.
#[derive(Debug, Clone)]
pub struct RunContext<'a> {
    pub model: &'a DeepLabConfig,
    pub semi: &'a SemiConfig,
    /// Labelled and unlabelled images per step.
    pub batch_size: usize,
    pub batch_size_u: usize,
    /// Training steps per epoch (`None` while the config is only being checked).
    pub steps_per_epoch: Option<usize>,
    pub sections: &'a BTreeMap<String, serde_json::Value>,
}

impl RunContext<'_> {
    /// The table `[name]` as `T` (`None` when the config has no such table); an error names the table and the key.
    pub fn section<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        self.sections
            .get(name)
            .map(|v| serde_json::from_value(v.clone()).map_err(|e| Error::Config(format!("[{name}]: {e}"))))
            .transpose()
    }
}

/// A method crate's registration with the run assembly.
pub trait MethodPlugin: Sync {
    /// The method's name (`tv`, `mim`, …).
    fn name(&self) -> &'static str;
    /// The top-level config tables it owns (`["tv", "mrf"]`); a table no plug-in owns is a config error.
    fn sections(&self) -> &'static [&'static str];
    /// The `semi.method` values whose framework it builds ([`MethodPlugin::build_framework`]).
    fn frameworks(&self) -> &'static [&'static str] {
        &[]
    }
    /// Name prefixes of training-only parameters (saved in checkpoints for resume, ignored by inference).
    fn training_only_prefixes(&self) -> &'static [&'static str] {
        &[]
    }
    /// Checks its tables against the rest of the run; errors name the key.
    fn validate(&self, _run: &RunContext) -> Result<()> {
        Ok(())
    }
    /// Adds its auxiliary terms to the trainer (none when its tables are absent or switch it off).
    fn add_terms(&self, _run: &RunContext, _trainer: &mut Trainer) -> Result<()> {
        Ok(())
    }
    /// The framework `semi.method = name` selects, built on the model's store (see [`Trainer::with_framework`]).
    fn build_framework(&self, name: &str, _run: &RunContext, _vb: VarBuilder<'static>) -> Result<Box<dyn Framework>> {
        Err(Error::Config(format!("method plug-in `{}` builds no framework `{name}`", self.name())))
    }
}
