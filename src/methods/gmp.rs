//! GMP: gradual magnitude pruning (Zhu & Gupta 2017, "To prune, or not to prune"), `--method gmp`:
//! magnitude score x any distribution x the cubic schedule.
//!
//! Sparsity follows the cubic schedule of the paper's eq. (1),
//! s(t) = s_f + (s_i - s_f) (1 - p)^3 with p = clip((t - t_begin) / (t_end - t_begin), 0, 1),
//! s_i = 0, s_f = `--target-sparsity` ([`PolynomialSchedule`]). Every `--prune-every` optimiser
//! steps between t_begin (`--prune-start`) and t_end (`--prune-end`), and at t_end itself, each
//! sparsified layer keeps its largest-|w| weights among those still kept: masks only shrink, and
//! the masked weights stay exactly zero (mask hygiene in `optim::step`). The target is spread
//! over the layers by `--distribution` (the paper: uniform; layers kept dense by a flag are made
//! up by the others).
//!
//! Exactness: at t_end the per-layer counts are the exact allocation of s_f, so the global
//! sparsity is round(s_f N) / N. Before it each layer prunes the floor of its real-valued share,
//! capped at its final count: a layer never goes past the count it must end at, since masks
//! never un-prune (without the cap, the rounding of the final split could hand a remainder to a
//! layer already past it, ending one weight off). The global rankings count already pruned
//! weights first, so they are exact at every step.

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::methods::options::{TrainContext, clap_defaults};
use crate::methods::plugin::{Method, Plugin, RunShape, StepInfo};
use crate::methods::prune::{
    Prunable, PruneTarget, Score, masked_out, prune_counts, scores, shrink_masks,
};
use crate::methods::schedule::PolynomialSchedule;
use crate::nn::Module;
use crate::rng::derived;

/// Default t_begin and t_end as fractions of the run's optimiser steps.
pub const DEFAULT_START_FRACTION: f64 = 0.1;
pub const DEFAULT_END_FRACTION: f64 = 0.7;

/// GMP's flags.
#[derive(Args, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[group(skip)]
#[serde(default)]
pub struct GmpOptions {
    /// GMP: first optimiser step of the pruning schedule (default: 10% of the run).
    #[arg(long)]
    pub prune_start: Option<usize>,
    /// GMP: last optimiser step of the pruning schedule (default: 70% of the run).
    #[arg(long)]
    pub prune_end: Option<usize>,
    /// GMP: optimiser steps between prunings.
    #[arg(long, default_value_t = 100)]
    pub prune_every: usize,
}

impl Default for GmpOptions {
    fn default() -> Self {
        clap_defaults()
    }
}

/// The GMP method.
pub struct Gmp {
    options: GmpOptions,
    prune: PruneTarget,
    layers: Vec<Prunable>,
}

impl Plugin<TrainContext> for Gmp {
    type Options = GmpOptions;
    const SHARED: &'static [&'static str] = PruneTarget::SETTINGS;

    fn build(options: &GmpOptions, context: &TrainContext) -> Result<Self> {
        let prune = PruneTarget::required(context, "gmp")?;
        if options.prune_every == 0 {
            return Err(Error::invalid("--prune-every must be at least 1"));
        }
        if let (Some(a), Some(b)) = (options.prune_start, options.prune_end)
            && a >= b
        {
            return Err(Error::invalid(format!(
                "--prune-start ({a}) must be before --prune-end ({b})"
            )));
        }
        Ok(Gmp {
            options: options.clone(),
            prune,
            layers: Vec::new(),
        })
    }
}

impl Gmp {
    /// The schedule of a run of `total_steps` optimiser steps (defaults: t_begin = 10% and
    /// t_end = 70% of the steps).
    pub fn schedule(&self, total_steps: usize) -> PolynomialSchedule {
        let begin = self
            .options
            .prune_start
            .unwrap_or((DEFAULT_START_FRACTION * total_steps as f64).floor() as usize);
        let end = self.options.prune_end.unwrap_or(
            ((DEFAULT_END_FRACTION * total_steps as f64).round() as usize).min(total_steps),
        );
        PolynomialSchedule::cubic(self.prune.sparsity, begin, end, self.options.prune_every)
    }

    /// The per-layer prune counts at a mask update to sparsity `target`, from the magnitude
    /// `scores` (see the module documentation on exactness).
    pub fn counts_at(
        &self,
        model: &dyn Module<f32>,
        scores: &[Vec<f64>],
        target: f64,
        last: bool,
    ) -> Result<Vec<usize>> {
        let pruned = masked_out(model);
        let counts = prune_counts(
            &self.layers,
            self.prune.distribution,
            scores,
            &pruned,
            target,
            last,
        )?;
        if last || self.prune.distribution.ranks_scores() {
            return Ok(counts);
        }
        let finals = self.prune.counts(&self.layers, scores, &pruned)?;
        Ok(counts
            .into_iter()
            .zip(finals)
            .map(|(c, f)| c.min(f))
            .collect())
    }
}

impl Method for Gmp {
    fn name(&self) -> &'static str {
        "gmp"
    }

    fn attach(&mut self, model: &mut dyn Module<f32>) -> Result<()> {
        self.layers = self.prune.attach_masks(model)?;
        Ok(())
    }

    fn check_run(&self, run: &RunShape) -> Result<()> {
        let total_steps = run.total_steps();
        let schedule = self.schedule(total_steps);
        let run = format!("{total_steps} = epochs x {} steps", run.steps_per_epoch);
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
        let Some((target, last)) = self.schedule(info.total_steps).target_after(info.step + 1)
        else {
            return Ok(());
        };
        // Magnitude scores draw nothing from the generator.
        let scores = scores(model, Score::Magnitude, &mut derived(0, 0));
        let counts = self.counts_at(model, &scores, target, last)?;
        shrink_masks(model, &self.layers, &scores, &counts)
            .map_err(|e| Error::invalid(format!("GMP, {e}")))
    }
}
