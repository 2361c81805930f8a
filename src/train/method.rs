//! How a sparsification method plugs into the training loop. The loop calls these hooks; a method
//! composes weight transforms (`crate::sparsity`) and never touches layer code.

use crate::error::Result;
use crate::nn::Module;
use crate::optim::ParamGroup;
use crate::tape::{Tape, Var};

/// Where the loop is when a hook runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepInfo {
    /// 0-based epoch.
    pub epoch: usize,
    /// 0-based global optimiser step (the one being taken, or just taken in `after_step`).
    pub step: usize,
    pub steps_per_epoch: usize,
    pub total_steps: usize,
}

/// A training-time sparsification method (`--method`).
pub trait Method {
    fn name(&self) -> &'static str;

    /// Called once on a freshly built model, before a checkpoint is loaded into it, so that the
    /// checkpoint finds the transforms' parameters (thresholds, masks) by name.
    fn prepare(&mut self, model: &mut dyn Module<f32>) -> Result<()> {
        let _ = model;
        Ok(())
    }

    /// Checks the method's settings against the run's length (pruning schedules in steps);
    /// called once before training starts and before the run directory is touched.
    fn check_run(&self, steps_per_epoch: usize, total_steps: usize) -> Result<()> {
        let _ = (steps_per_epoch, total_steps);
        Ok(())
    }

    /// Parameter groups the method needs (e.g. its thresholds' own weight decay); they take
    /// precedence over the loop's groups.
    fn param_groups(&self) -> Vec<ParamGroup> {
        Vec::new()
    }

    /// A term added to the training loss at every step (penalties, controllers).
    fn regulariser<'t>(
        &mut self,
        model: &dyn Module<f32>,
        tape: &'t Tape<f32>,
        info: &StepInfo,
    ) -> Option<Var<'t, f32>> {
        let _ = (model, tape, info);
        None
    }

    /// Runs after every optimiser step (pruning schedules, clamps).
    fn after_step(&mut self, model: &mut dyn Module<f32>, info: &StepInfo) -> Result<()> {
        let _ = (model, info);
        Ok(())
    }

    /// Runs after every epoch; returns warnings to log.
    fn after_epoch(&mut self, model: &mut dyn Module<f32>, epoch: usize) -> Vec<String> {
        let _ = (model, epoch);
        Vec::new()
    }

    /// Runs once after training, before export: bakes transforms into plain weights. The
    /// summary keeps the thresholds the transforms reported before `finish`.
    fn finish(&mut self, model: &mut dyn Module<f32>) {
        let _ = model;
    }
}

/// Plain dense training.
pub struct Dense;

impl Method for Dense {
    fn name(&self) -> &'static str {
        "dense"
    }
}
