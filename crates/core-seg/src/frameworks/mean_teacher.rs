//! Mean teacher [design]: FixMatch's losses with the weak-view and mix pseudo-labels from an EMA teacher in
//! eval mode, `θ_t ← d·θ_t + (1 − d)·θ_s` after every step for parameters and BN statistics (d = 0.99).

use std::collections::HashMap;

use candle_core::Tensor;

use super::common::pseudo_label;
use super::fixmatch::fixmatch_step;
use super::SemiConfig;
use crate::batch::TrainBatch;
use crate::model::DeepLabV3Plus;
use crate::nn::{Mode, ParamStore};
use crate::plugin::{Framework, StepCtx, StepLosses};
use crate::{Error, Result};

/// `teacher ← decay·teacher + (1 − decay)·student` for every variable of the same name.
pub fn ema_update(teacher: &ParamStore, student: &ParamStore, decay: f64) -> Result<()> {
    let s: HashMap<String, candle_core::Var> = student.named_vars().into_iter().collect();
    for (name, t) in teacher.named_vars() {
        let sv = s.get(&name).ok_or_else(|| Error::Weights(format!("EMA: student has no `{name}`")))?;
        let v = ((t.as_tensor() * decay)? + (sv.as_tensor().detach() * (1.0 - decay))?)?;
        t.set(&v)?;
    }
    Ok(())
}

/// The mean-teacher framework; the teacher is created from the student at the first step.
pub struct MeanTeacher {
    pub cfg: SemiConfig,
    teacher: Option<(ParamStore, DeepLabV3Plus)>,
}

impl MeanTeacher {
    pub fn new(cfg: SemiConfig) -> Self {
        Self { cfg, teacher: None }
    }

    fn teacher(&mut self, student: &ParamStore, model: &DeepLabV3Plus) -> Result<&DeepLabV3Plus> {
        if self.teacher.is_none() {
            let first =
                student.named_vars().into_iter().next().ok_or_else(|| Error::Weights("empty student".into()))?;
            let store = ParamStore::new(0);
            let teacher = DeepLabV3Plus::new(&model.cfg, store.var_builder(first.1.dtype(), first.1.device()))?;
            ema_update(&store, student, 0.0)?;
            self.teacher = Some((store, teacher));
        }
        Ok(&self.teacher.as_ref().expect("initialised").1)
    }
}

impl Framework for MeanTeacher {
    fn name(&self) -> &str {
        "mean_teacher"
    }

    fn losses(&mut self, model: &DeepLabV3Plus, batch: &TrainBatch, ctx: &mut StepCtx) -> Result<StepLosses> {
        let (u, mix) = batch.unlabeled_pair()?;
        let teacher = self.teacher(ctx.store, model)?;
        let weak = pseudo_label(&teacher.forward_t(&u.weak, Mode::Eval)?)?;
        let mixp = pseudo_label(&teacher.forward_t(&mix.weak, Mode::Eval)?)?;
        fixmatch_step(&self.cfg, model, batch, mixp, Some(weak))
    }

    fn after_step(&mut self, student: &ParamStore) -> Result<()> {
        match &self.teacher {
            Some((t, _)) => ema_update(t, student, self.cfg.ema_decay),
            None => Ok(()),
        }
    }

    fn state_tensors(&self) -> Vec<(String, Tensor)> {
        match &self.teacher {
            Some((t, _)) => {
                t.named_vars().into_iter().map(|(n, v)| (format!("teacher.{n}"), v.as_tensor().detach())).collect()
            }
            None => Vec::new(),
        }
    }

    fn load_state_tensors(
        &mut self,
        student: &ParamStore,
        model: &DeepLabV3Plus,
        tensors: &HashMap<String, Tensor>,
    ) -> Result<()> {
        let stripped: HashMap<String, Tensor> = tensors
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("teacher.").map(|n| (n.to_string(), v.clone())))
            .collect();
        if stripped.is_empty() {
            return Ok(());
        }
        self.teacher(student, model)?;
        let (store, _) = self.teacher.as_ref().expect("initialised");
        crate::model::weights::load_tensors(store, &stripped, true)?;
        Ok(())
    }
}
