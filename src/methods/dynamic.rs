//! Sparse training from a random mask: RigL (Evci et al. 2020, "Rigging the lottery"), SET
//! (Mocanu et al. 2018) and the static control, `--method rigl | set | static`; one method type
//! [`DynamicSparse`] whose options type says how the mask moves ([`MaskRule`]).
//!
//! - Start (all three): every sparsified layer gets a uniformly random mask keeping its count of
//!   the `--distribution` allocation of `--target-sparsity` (ERK in the paper; exact counts,
//!   `prune::prune_counts`); the masked weights are zeroed. The draw uses its own RNG stream of
//!   the run seed, so the model's initialisation is unchanged.
//! - `rigl`: every ΔT = `--rigl-update-every` steps until `--rigl-end-fraction` of the run, drop
//!   the fraction f(t) (cosine decay from `--rigl-drop-fraction`) of each layer's active weights
//!   with the smallest |w| and grow as many with the largest |dL/d(W m)| (the dense gradient of
//!   the masked weight on the step's batch, kept by the loop on update steps) — `drop_grow`.
//! - `set`: the same with a uniform draw as the grow score (SET drops by magnitude too).
//! - `static`: the random mask stays.
//!
//! The optimiser step comes first, then the mask update (the authors' `apply_gradients` then
//! `cond_mask_update_op`). Per-layer counts never change. Grown weights start at 0 with zero
//! momentum (mask hygiene, see `drop_grow`).

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::grads::Grads;
use crate::methods::drop_grow::{DropSchedule, Moved, drop_and_grow};
use crate::methods::options::{TrainContext, clap_defaults};
use crate::methods::plugin::{Method, MethodState, Plugin, RunShape, StepInfo};
use crate::methods::prune::{Prunable, PruneTarget, Score, mask_of, scores, shrink_masks};
use crate::nn::Module;
use crate::rng::{derived, uniform};
use crate::tape::Tensor;

/// RNG stream of the initial random masks (see `rng::derived`).
const MASK_STREAM: u64 = 0x5249_474c;
/// RNG stream of SET's grow scores; the update's step is mixed in, so no state is needed.
const GROW_STREAM: u64 = 0x5345_5447;

/// How a layer's inactive weights are ranked for growth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grow {
    /// |dL/d(W m)| (RigL).
    Gradient,
    /// A uniform draw (SET).
    Random,
}

/// The mask-update settings of one of the three methods (its options type).
pub trait MaskRule {
    const NAME: &'static str;
    /// The update schedule's settings (every, alpha, end fraction) and the grow score; `None`:
    /// the mask never moves.
    fn updates(&self) -> Option<(usize, f64, f64, Grow)>;
}

/// RigL's flags.
#[derive(Args, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[group(skip)]
#[serde(default)]
pub struct RiglOptions {
    /// RigL: optimiser steps between mask updates (ΔT).
    #[arg(long, default_value_t = 100)]
    pub rigl_update_every: usize,
    /// RigL: initial drop fraction alpha, decayed by cosine to 0 at the end of the updates.
    #[arg(long, default_value_t = 0.3)]
    pub rigl_drop_fraction: f64,
    /// RigL: fraction of the run's steps after which the mask stops changing (T_end).
    #[arg(long, default_value_t = 0.75)]
    pub rigl_end_fraction: f64,
}

/// SET's flags (the same schedule as RigL's, growth at random).
#[derive(Args, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[group(skip)]
#[serde(default)]
pub struct SetOptions {
    /// SET: optimiser steps between mask updates.
    #[arg(long, default_value_t = 100)]
    pub set_update_every: usize,
    /// SET: initial drop fraction, decayed by cosine to 0 at the end of the updates.
    #[arg(long, default_value_t = 0.3)]
    pub set_drop_fraction: f64,
    /// SET: fraction of the run's steps after which the mask stops changing.
    #[arg(long, default_value_t = 0.75)]
    pub set_end_fraction: f64,
}

/// The static control has no flags of its own.
#[derive(Args, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[group(skip)]
pub struct StaticOptions {}

impl Default for RiglOptions {
    fn default() -> Self {
        clap_defaults()
    }
}

impl Default for SetOptions {
    fn default() -> Self {
        clap_defaults()
    }
}

impl MaskRule for RiglOptions {
    const NAME: &'static str = "rigl";
    fn updates(&self) -> Option<(usize, f64, f64, Grow)> {
        let o = self;
        Some((
            o.rigl_update_every,
            o.rigl_drop_fraction,
            o.rigl_end_fraction,
            Grow::Gradient,
        ))
    }
}

impl MaskRule for SetOptions {
    const NAME: &'static str = "set";
    fn updates(&self) -> Option<(usize, f64, f64, Grow)> {
        let o = self;
        Some((
            o.set_update_every,
            o.set_drop_fraction,
            o.set_end_fraction,
            Grow::Random,
        ))
    }
}

impl MaskRule for StaticOptions {
    const NAME: &'static str = "static";
    fn updates(&self) -> Option<(usize, f64, f64, Grow)> {
        None
    }
}

/// What the updates did so far (the method's checkpointed state and its summary).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateLog {
    pub updates: usize,
    /// Weights dropped (= grown) over all updates.
    pub dropped: usize,
    /// Grown weights that were inactive before their update.
    pub revived: usize,
    pub last_drop_fraction: Option<f64>,
}

/// RigL, SET or static, by its options type.
pub struct DynamicSparse<O> {
    options: O,
    prune: PruneTarget,
    seed: u64,
    layers: Vec<Prunable>,
    /// |dL/d(W m)| per layer, kept on an update step by `after_backward` (RigL).
    grow_scores: Vec<Option<Vec<f64>>>,
    log: UpdateLog,
}

impl<O> Plugin<TrainContext> for DynamicSparse<O>
where
    O: MaskRule
        + clap::Args
        + clap::FromArgMatches
        + Serialize
        + serde::de::DeserializeOwned
        + Default
        + Clone
        + std::fmt::Debug
        + PartialEq
        + 'static,
{
    type Options = O;
    const SHARED: &'static [&'static str] = PruneTarget::SETTINGS;

    fn build(options: &O, context: &TrainContext) -> Result<Self> {
        let name = O::NAME;
        let prune = PruneTarget::required(context, name)?;
        if let Some((every, alpha, end, _)) = options.updates() {
            if every == 0 {
                return Err(Error::invalid(format!(
                    "--{name}-update-every must be at least 1"
                )));
            }
            if !(alpha > 0.0 && alpha < 1.0) {
                return Err(Error::invalid(format!(
                    "--{name}-drop-fraction must be in (0, 1), got {alpha}"
                )));
            }
            if !(end > 0.0 && end <= 1.0) {
                return Err(Error::invalid(format!(
                    "--{name}-end-fraction must be in (0, 1], got {end}"
                )));
            }
        }
        Ok(DynamicSparse {
            options: options.clone(),
            prune,
            seed: context.seed,
            layers: Vec::new(),
            grow_scores: Vec::new(),
            log: UpdateLog::default(),
        })
    }
}

impl<O: MaskRule> DynamicSparse<O> {
    /// The update schedule of a run of `total_steps` steps and the grow score (`None`: static).
    pub fn schedule(&self, total_steps: usize) -> Option<(DropSchedule, Grow)> {
        let (every, alpha, end, grow) = self.options.updates()?;
        let end = (end * total_steps as f64).round() as usize;
        Some((DropSchedule { every, alpha, end }, grow))
    }

    fn fraction_after(&self, info: &StepInfo) -> Option<(f64, Grow)> {
        let (schedule, grow) = self.schedule(info.total_steps)?;
        Some((schedule.drop_fraction_after(info.step + 1)?, grow))
    }

    /// What the updates did so far.
    pub fn log(&self) -> &UpdateLog {
        &self.log
    }
}

impl<O: MaskRule> Method for DynamicSparse<O> {
    fn name(&self) -> &'static str {
        O::NAME
    }

    /// All-ones masks, then the random start mask at the allocation's exact per-layer counts.
    fn attach(&mut self, model: &mut dyn Module<f32>) -> Result<()> {
        self.layers = self.prune.attach_masks(model)?;
        let random = scores(model, Score::Random, &mut derived(self.seed, MASK_STREAM));
        let counts = self.prune.counts(&self.layers, &random, &[])?;
        shrink_masks(model, &self.layers, &random, &counts)
            .map_err(|e| Error::invalid(format!("{}, {e}", O::NAME)))
    }

    fn check_run(&self, run: &RunShape) -> Result<()> {
        let Some((schedule, _)) = self.schedule(run.total_steps()) else {
            return Ok(());
        };
        if schedule.every > schedule.end {
            let name = O::NAME;
            return Err(Error::invalid(format!(
                "--{name}-update-every ({}) is past the last mask update step ({} = --{name}-end-fraction x {} steps): the mask would never change",
                schedule.every,
                schedule.end,
                run.total_steps()
            )));
        }
        Ok(())
    }

    fn wants_effective_grads(&self, info: &StepInfo) -> bool {
        matches!(self.fraction_after(info), Some((_, Grow::Gradient)))
    }

    fn after_backward(
        &mut self,
        model: &mut dyn Module<f32>,
        grads: &mut Grads<f32>,
        info: &StepInfo,
    ) -> Result<()> {
        if !self.wants_effective_grads(info) {
            return Ok(());
        }
        let mut out = Vec::new();
        let mut missing = None;
        model.visit_weights("", &mut |name, w| {
            if w.transform.is_none() {
                out.push(None);
                return;
            }
            match w.effective_grad(grads) {
                Some(g) => out.push(Some(g.iter().map(|v| v.abs() as f64).collect())),
                None => {
                    missing.get_or_insert_with(|| name.to_string());
                    out.push(None);
                }
            }
        });
        if let Some(name) = missing {
            return Err(Error::invalid(format!(
                "rigl: no gradient of the masked weight {name} was kept on an update step"
            )));
        }
        self.grow_scores = out;
        Ok(())
    }

    fn after_step(&mut self, model: &mut dyn Module<f32>, info: &StepInfo) -> Result<()> {
        let Some((fraction, grow)) = self.fraction_after(info) else {
            return Ok(());
        };
        let grow_scores = std::mem::take(&mut self.grow_scores);
        let mut rng = derived(self.seed, GROW_STREAM ^ (info.step as u64).rotate_left(32));
        let mut total = Moved::default();
        let mut result = Ok(());
        let mut l = 0;
        model.visit_weights_mut("", &mut |name, w| {
            let layer = l;
            l += 1;
            let raw: Vec<f64> = w.raw.value().iter().map(|v| v.abs() as f64).collect();
            let Some(mask) = mask_of(w) else { return };
            let kept: Vec<bool> = mask.values().iter().map(|&m| m != 0.0).collect();
            let scores = match grow {
                Grow::Gradient => match grow_scores.get(layer).cloned().flatten() {
                    Some(s) => s,
                    None => {
                        result = Err(Error::invalid(format!("rigl: no grow scores for {name}")));
                        return;
                    }
                },
                Grow::Random => raw.iter().map(|_| uniform(&mut rng, 0.0, 1.0)).collect(),
            };
            // Drop scores |w m|: the raw weight is zero where the mask is.
            let (next, moved) = drop_and_grow(&kept, &raw, &scores, fraction);
            let values = Tensor::from_shape_vec(
                mask.values().raw_dim(),
                next.iter().map(|&k| if k { 1.0 } else { 0.0 }).collect(),
            )
            .expect("same length as the mask");
            if let Err(e) = mask.set(values) {
                result = Err(e);
            }
            w.reapply_mask();
            total.dropped += moved.dropped;
            total.revived += moved.revived;
        });
        result?;
        self.log.updates += 1;
        self.log.dropped += total.dropped;
        self.log.revived += total.revived;
        self.log.last_drop_fraction = Some(fraction);
        Ok(())
    }

    fn summary(&self, _model: &dyn Module<f32>) -> serde_json::Value {
        if self.options.updates().is_none() {
            return serde_json::Value::Null;
        }
        serde_json::to_value(&self.log).expect("log serialises")
    }

    fn state(&self) -> MethodState {
        MethodState::of(&self.log)
    }

    fn load_state(&mut self, state: &MethodState) -> Result<()> {
        self.log = state.read(O::NAME)?;
        Ok(())
    }
}
