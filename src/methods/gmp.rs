//! GMP: gradual magnitude pruning (Zhu & Gupta 2017, "To prune, or not to prune"), `--method gmp`.
//!
//! Sparsity follows the cubic schedule of the paper's eq. (1),
//! s(t) = s_f + (s_i - s_f) (1 - p)^3 with p = clip((t - t_begin) / (t_end - t_begin), 0, 1),
//! s_i = 0, s_f = `--target-sparsity`. Every `--prune-every` optimiser steps between t_begin
//! (`--prune-start`) and t_end (`--prune-end`), and at t_end itself, each sparsified layer keeps
//! its largest-|w| weights among those still kept (`Mask::shrink_to_top_k`): masks only shrink,
//! and the masked weights stay exactly zero (mask hygiene in `optim::step`). Every layer gets the
//! same sparsity (layers kept dense by a flag are made up by the others); at t_end the per-layer
//! counts are the exact uniform allocation, so the global sparsity is round(s_f N) / N.

use crate::error::{Error, Result};
use crate::nn::Module;
use crate::train::config::TrainConfig;
use crate::train::method::{Method, StepInfo};

use super::{Prunable, attach_uniform_masks, bake, uniform_prune_counts, update_masks};

/// Default t_begin and t_end as fractions of the run's optimiser steps.
pub const DEFAULT_START_FRACTION: f64 = 0.1;
pub const DEFAULT_END_FRACTION: f64 = 0.7;

/// The cubic sparsity schedule of Zhu & Gupta (2017), eq. (1), in optimiser steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GmpSchedule {
    pub initial: f64,
    pub target: f64,
    pub begin: usize,
    pub end: usize,
}

impl GmpSchedule {
    /// s(t) = s_f + (s_i - s_f)(1 - p)^3, p = clip((t - t_begin) / (t_end - t_begin), 0, 1).
    pub fn sparsity_at(&self, t: usize) -> f64 {
        let span = self.end.saturating_sub(self.begin).max(1) as f64;
        let p = ((t as f64 - self.begin as f64) / span).clamp(0.0, 1.0);
        self.target + (self.initial - self.target) * (1.0 - p).powi(3)
    }

    /// Whether the masks are updated after `t` steps: every `every` steps from t_begin, and at
    /// t_end.
    pub fn prunes_at(&self, t: usize, every: usize) -> bool {
        t >= self.begin
            && t <= self.end
            && ((t - self.begin).is_multiple_of(every) || t == self.end)
    }
}

/// The GMP method.
pub struct Gmp {
    target: f64,
    every: usize,
    start: Option<usize>,
    end: Option<usize>,
    first_layer_dense: bool,
    last_layer_dense: bool,
    layers: Vec<Prunable>,
}

impl Gmp {
    pub fn from_train_config(config: &TrainConfig) -> Result<Self> {
        let s = &config.sparsity;
        let target = s
            .target_sparsity
            .ok_or_else(|| Error::invalid("--method gmp needs --target-sparsity"))?;
        Ok(Gmp {
            target,
            every: s.prune_every,
            start: s.prune_start,
            end: s.prune_end,
            first_layer_dense: s.first_layer_dense,
            last_layer_dense: s.last_layer_dense,
            layers: Vec::new(),
        })
    }

    /// The schedule of a run of `total_steps` optimiser steps (defaults: t_begin = 10% and
    /// t_end = 70% of the steps).
    pub fn schedule(&self, total_steps: usize) -> GmpSchedule {
        let begin = self
            .start
            .unwrap_or((DEFAULT_START_FRACTION * total_steps as f64).floor() as usize);
        let end = self.end.unwrap_or(
            ((DEFAULT_END_FRACTION * total_steps as f64).round() as usize).min(total_steps),
        );
        GmpSchedule {
            initial: 0.0,
            target: self.target,
            begin,
            end,
        }
    }
}

impl Method for Gmp {
    fn name(&self) -> &'static str {
        "gmp"
    }

    fn prepare(&mut self, model: &mut dyn Module<f32>) -> Result<()> {
        self.layers = attach_uniform_masks(
            model,
            self.first_layer_dense,
            self.last_layer_dense,
            self.target,
        )?;
        Ok(())
    }

    fn check_run(&self, steps_per_epoch: usize, total_steps: usize) -> Result<()> {
        let schedule = self.schedule(total_steps);
        let run = format!("{total_steps} = epochs x {steps_per_epoch} steps");
        if schedule.end > total_steps {
            return Err(Error::invalid(format!(
                "--prune-end ({}) is past the run's last optimiser step ({run})",
                schedule.end
            )));
        }
        if schedule.begin >= schedule.end {
            return Err(Error::invalid(format!(
                "--prune-start ({}) must be before --prune-end ({}) (the run has {run})",
                schedule.begin, schedule.end
            )));
        }
        Ok(())
    }

    fn after_step(&mut self, model: &mut dyn Module<f32>, info: &StepInfo) -> Result<()> {
        let schedule = self.schedule(info.total_steps);
        let t = info.step + 1; // steps taken
        if !schedule.prunes_at(t, self.every) {
            return Ok(());
        }
        let counts =
            uniform_prune_counts(&self.layers, schedule.sparsity_at(t), t >= schedule.end)?;
        update_masks(model, &self.layers, &counts, |name, mask, w, keep| {
            mask.shrink_to_top_k(w, keep)
                .map_err(|e| Error::invalid(format!("GMP, {name}: {e}")))
        })
    }

    /// Bakes the masks into the weights (already zero where pruned) and drops them.
    fn finish(&mut self, model: &mut dyn Module<f32>) {
        bake(model);
    }
}
