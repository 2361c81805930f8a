//! The plugin shape every sparsification method has: the [`Method`] hooks the training and
//! post-training loops call, the [`Plugin`] constructor a registry line names, and what the hooks
//! are given ([`StepInfo`], [`RunShape`], [`InitData`]) or give back ([`MethodState`]).
//!
//! A method composes weight transforms (`crate::sparsity`) through `Module::visit_weights_mut`
//! and never touches layer code. The loops call, in order:
//!
//! ```text
//! attach          structural: transforms on weights (no data); also before a checkpoint loads
//! check_run       the method's settings against the run's length (before any file is written)
//! init            data-aware start on a fresh run (SNIP, GraSP, Wanda): batches of the training split
//! per step:       before_step (sees the batch), regulariser (added to the loss), backward,
//!                 after_backward (sees the gradients, incl. effective-weight ones), optimiser
//!                 step, after_step
//! per epoch:      after_epoch (warnings), after_evaluate (the epoch's accuracies)
//! start_round     iterative methods (rounds > 1): at the start of every round after the first
//! finish          bake transforms into plain weights; may report an exact fix-up
//! extra_exports   models written besides the final one (`model.{tag}.safetensors`)
//! state / load_state   the method's own state, in every checkpoint (resume stays bit-identical)
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::data::{Batch, Dataset, Normalize, gather};
use crate::error::{Error, Result};
use crate::grads::Grads;
use crate::methods::fixup::FixUp;
use crate::models::ModelSpec;
use crate::nn::Module;
use crate::optim::ParamGroup;
use crate::rng::derived;
use crate::tape::{Tape, Tensor, Var};

/// Named tensors (an export's or a state's).
pub type NamedTensors = Vec<(String, Tensor<f32>)>;

/// Where the loop is when a hook runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepInfo {
    /// 0-based epoch, counted over all rounds.
    pub epoch: usize,
    /// 0-based global optimiser step (the one being taken, or just taken in `after_step`).
    pub step: usize,
    pub steps_per_epoch: usize,
    /// Optimiser steps of the whole run (all rounds).
    pub total_steps: usize,
}

/// The length of a run, as `check_run` sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunShape {
    /// Epochs of one round (`--epochs`).
    pub epochs: usize,
    pub steps_per_epoch: usize,
    /// Rounds the method asked for ([`Method::rounds`]).
    pub rounds: usize,
}

impl RunShape {
    pub fn total_steps(&self) -> usize {
        self.epochs * self.steps_per_epoch * self.rounds
    }
}

/// The accuracies evaluated after an epoch, as `after_evaluate` sees them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochEval {
    /// 0-based epoch, counted over all rounds.
    pub epoch: usize,
    /// Optimiser steps taken so far (all rounds).
    pub steps_done: usize,
    pub val_acc: Option<f64>,
    pub test_acc: f64,
}

/// A method's own state, saved in every checkpoint: JSON (counters, schedules, flags) and named
/// tensors (snapshots, e.g. lottery tickets' rewind point), stored as `method.{name}`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MethodState {
    pub json: serde_json::Value,
    pub tensors: Vec<(String, Tensor<f32>)>,
}

impl MethodState {
    /// State made of one serialisable value and no tensors.
    pub fn of<T: Serialize>(value: &T) -> Self {
        MethodState {
            json: serde_json::to_value(value).expect("method state serialises"),
            tensors: Vec::new(),
        }
    }

    /// The JSON part read back as `T` (checkpoints written before a method had state give
    /// `null`, read as `T::default()`).
    pub fn read<T: DeserializeOwned + Default>(&self, method: &str) -> Result<T> {
        if self.json.is_null() {
            return Ok(T::default());
        }
        serde_json::from_value(self.json.clone()).map_err(|e| {
            Error::invalid(format!(
                "the checkpoint's state of method {method} is invalid ({e})"
            ))
        })
    }
}

/// The data a method's `init` may look at: the run's own training split (never validation or
/// test images), normalised as the run normalises it.
pub struct InitData<'a> {
    pub data: &'a Dataset,
    /// Indices of the training split (post-training: the calibration set).
    pub indices: &'a [usize],
    pub norm: &'a Normalize,
    pub batch_size: usize,
    pub seed: u64,
    /// A freshly initialised model of the run's architecture from another seed (SNIP's option of
    /// scoring on another initialisation than the one trained).
    pub fresh_model: &'a dyn Fn(u64) -> Result<Box<dyn Module<f32>>>,
    /// The run's architecture, for twins of other element types (GraSP's `Dual64` twin for
    /// Hessian-vector products, `models::build_as`).
    pub spec: ModelSpec,
}

/// RNG stream of the batches `init` draws (see `rng::derived`).
const INIT_BATCH_STREAM: u64 = 0x494e_4954;

impl InitData<'_> {
    /// `count` batches of `batch_size` images drawn without replacement from the indices with
    /// the run seed (a stream of its own, so the training order is unchanged).
    pub fn batches(&self, count: usize) -> Vec<Batch<f32>> {
        let mut order = self.indices.to_vec();
        rand::seq::SliceRandom::shuffle(
            order.as_mut_slice(),
            &mut derived(self.seed, INIT_BATCH_STREAM),
        );
        order
            .chunks(self.batch_size.max(1))
            .take(count)
            .map(|idx| gather(self.data, idx, self.norm))
            .collect()
    }

    /// One batch of `per_class` images of every class (the first ones of each class in the
    /// seeded order), as GraSP's authors sample; fails if a class has fewer images.
    pub fn per_class(&self, per_class: usize) -> Result<Batch<f32>> {
        let mut order = self.indices.to_vec();
        rand::seq::SliceRandom::shuffle(
            order.as_mut_slice(),
            &mut derived(self.seed, INIT_BATCH_STREAM),
        );
        let mut picked = Vec::new();
        for class in 0..self.data.classes {
            let of_class: Vec<usize> = order
                .iter()
                .copied()
                .filter(|&i| self.data.labels[i] as usize == class)
                .take(per_class)
                .collect();
            if of_class.len() < per_class {
                return Err(Error::invalid(format!(
                    "class {class} has {} training images, fewer than the {per_class} asked for",
                    of_class.len()
                )));
            }
            picked.extend(of_class);
        }
        Ok(gather(self.data, &picked, self.norm))
    }
}

/// A sparsification method: the hooks of a training or post-training run (see the module
/// documentation for when each runs). Every hook has a default that does nothing.
pub trait Method {
    /// The registry name (`--method`).
    fn name(&self) -> &'static str;

    /// Puts the method's transforms on the model's weights (structural, no data). Called on a
    /// freshly built model, and again before a checkpoint is loaded into one, so that the
    /// checkpoint finds the transforms' parameters (thresholds, masks) by name.
    fn attach(&mut self, model: &mut dyn Module<f32>) -> Result<()> {
        let _ = model;
        Ok(())
    }

    /// Checks the method's settings against the run's length; before the run directory is
    /// touched.
    fn check_run(&self, run: &RunShape) -> Result<()> {
        let _ = run;
        Ok(())
    }

    /// Rounds of `--epochs` epochs each (iterative pruning); the loop restarts the learning-rate
    /// schedule and the optimiser's state at every round and calls [`Method::start_round`].
    fn rounds(&self) -> usize {
        1
    }

    /// The learning-rate multiplier of round `round` (0-based; Han et al. retrain at lr / 10).
    fn round_lr_scale(&self, round: usize) -> f64 {
        let _ = round;
        1.0
    }

    /// Parameter groups the method needs (e.g. its thresholds' own weight decay); they take
    /// precedence over the loop's groups.
    fn param_groups(&self) -> Vec<ParamGroup> {
        Vec::new()
    }

    /// Data-aware start of a fresh run (not of a resumed one: its result is in the checkpoint):
    /// may run forward and backward passes on batches of the training split.
    fn init(&mut self, model: &mut dyn Module<f32>, data: &InitData) -> Result<()> {
        let _ = (model, data);
        Ok(())
    }

    /// Sees the step's training batch before the forward pass, for methods that run passes of
    /// their own on it (sensitivity: a backward pass from the network's outputs, not the loss).
    /// Called by the training loop only.
    fn before_step(
        &mut self,
        model: &mut dyn Module<f32>,
        batch: &Batch<f32>,
        info: &StepInfo,
    ) -> Result<()> {
        let _ = (model, batch, info);
        Ok(())
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

    /// Whether the loop should keep the gradients with respect to the effective weights in the
    /// next forward pass (see `Weight::effective_grad`); asked before every step.
    fn wants_effective_grads(&self, info: &StepInfo) -> bool {
        let _ = info;
        false
    }

    /// Sees the gradients before the optimiser step (and may change them).
    fn after_backward(
        &mut self,
        model: &mut dyn Module<f32>,
        grads: &mut Grads<f32>,
        info: &StepInfo,
    ) -> Result<()> {
        let _ = (model, grads, info);
        Ok(())
    }

    /// Runs after every optimiser step (pruning schedules, regrowth).
    fn after_step(&mut self, model: &mut dyn Module<f32>, info: &StepInfo) -> Result<()> {
        let _ = (model, info);
        Ok(())
    }

    /// Runs after every epoch (after `after_step` of its last step, before evaluation); returns
    /// warnings to log.
    fn after_epoch(&mut self, model: &mut dyn Module<f32>, epoch: usize) -> Result<Vec<String>> {
        let _ = (model, epoch);
        Ok(Vec::new())
    }

    /// Sees the accuracies evaluated after every epoch (before its checkpoint is written, so
    /// what it records is resumed): per-round reports such as lottery tickets' iteration of
    /// best validation accuracy.
    fn after_evaluate(&mut self, eval: &EpochEval) {
        let _ = eval;
    }

    /// Runs at the start of round `round` >= 1 (iterative pruning: prune, rewind).
    fn start_round(&mut self, model: &mut dyn Module<f32>, round: usize) -> Result<()> {
        let _ = (model, round);
        Ok(())
    }

    /// Runs once after training, before export: bakes transforms into plain weights. Returns
    /// the exact fix-up, for methods that make the final sparsity exact. The summary keeps the
    /// thresholds the transforms reported before `finish`.
    fn finish(&mut self, model: &mut dyn Module<f32>) -> Result<Option<FixUp>> {
        crate::methods::bake(model);
        Ok(None)
    }

    /// Models the method exports besides the final one, after `finish`: (tag, tensors in the
    /// export's form, `io::checkpoint::export_tensors`), each written to
    /// `model.{tag}.safetensors` in the run directory (AC/DC: its last dense model). The tag is
    /// lowercase letters, digits and `-`.
    fn extra_exports(&self) -> Vec<(String, NamedTensors)> {
        Vec::new()
    }

    /// Method-specific figures for the summary (`null`: none).
    fn summary(&self, model: &dyn Module<f32>) -> serde_json::Value {
        let _ = model;
        serde_json::Value::Null
    }

    /// The method's own state for a checkpoint.
    fn state(&self) -> MethodState {
        MethodState::default()
    }

    /// Restores [`Method::state`] when a run resumes.
    fn load_state(&mut self, state: &MethodState) -> Result<()> {
        let _ = state;
        Ok(())
    }
}

/// How a registry builds a method: its typed options (a clap `Args` struct: its own flags, and
/// its part of the run's saved config) and the shared settings it reads besides them.
/// `C` is the subcommand's context ([`TrainContext`](crate::methods::TrainContext) or
/// [`PosttrainContext`](crate::methods::PosttrainContext)).
pub trait Plugin<C>: Method + Sized + 'static {
    type Options: clap::Args
        + clap::FromArgMatches
        + Serialize
        + DeserializeOwned
        + Default
        + Clone
        + std::fmt::Debug
        + PartialEq;

    /// The shared settings (field names of the subcommand's shared options) the method reads.
    /// Every other method setting must stay at its default: a flag the method would ignore is
    /// refused.
    const SHARED: &'static [&'static str];

    fn build(options: &Self::Options, context: &C) -> Result<Self>;
}

/// The options of a method that has none of its own.
#[derive(Clone, Debug, Default, PartialEq, clap::Args, serde::Serialize, serde::Deserialize)]
#[group(skip)]
pub struct NoOptions {}
