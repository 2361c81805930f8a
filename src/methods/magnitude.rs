//! One-shot magnitude pruning with fine-tuning, `--method magnitude`: magnitude score x any
//! distribution x a one-shot schedule. Train dense for `--prune-epoch` epochs (default: half the
//! run), then prune to `--target-sparsity`, spread over the layers by `--distribution` (uniform:
//! the same sparsity in every sparsified layer, layers kept dense by a flag made up by the
//! others), keeping each layer's largest |w|; the counts are exact, so the global sparsity is
//! round(S N) / N. Fine-tune the rest of the run with the masks fixed (mask hygiene in
//! `optim::step` keeps pruned weights and their optimiser state at exactly zero).

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::methods::options::{TrainContext, clap_defaults};
use crate::methods::plugin::{Method, Plugin};
use crate::methods::prune::{
    Prunable, Score, attach_masks, masked_out, prune_counts, scores, shrink_masks,
};
use crate::nn::Module;
use crate::rng::derived;
use crate::sparsity::budget::Distribution;

/// The magnitude method's flags.
#[derive(Args, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[group(skip)]
#[serde(default)]
pub struct MagnitudeOptions {
    /// Magnitude: prune after this many epochs, then fine-tune (default: half the run).
    #[arg(long)]
    pub prune_epoch: Option<usize>,
}

impl Default for MagnitudeOptions {
    fn default() -> Self {
        clap_defaults()
    }
}

/// The one-shot magnitude method.
pub struct Magnitude {
    target: f64,
    /// Dense epochs before pruning.
    prune_epoch: usize,
    distribution: Distribution,
    first_layer_dense: bool,
    last_layer_dense: bool,
    layers: Vec<Prunable>,
}

/// Half the run, at least one epoch.
pub fn default_prune_epoch(epochs: usize) -> usize {
    (epochs / 2).max(1)
}

impl Plugin<TrainContext> for Magnitude {
    type Options = MagnitudeOptions;
    const SHARED: &'static [&'static str] = &[
        "target_sparsity",
        "distribution",
        "first_layer_dense",
        "last_layer_dense",
    ];

    fn build(options: &MagnitudeOptions, context: &TrainContext) -> Result<Self> {
        let shared = &context.shared;
        let target = shared
            .target_sparsity
            .ok_or_else(|| Error::invalid("--method magnitude needs --target-sparsity"))?;
        if options.prune_epoch == Some(0) {
            return Err(Error::invalid(
                "--prune-epoch must be at least 1 (the epochs trained dense before pruning)",
            ));
        }
        if context.epochs < 2 {
            return Err(Error::invalid(format!(
                "--method magnitude needs --epochs 2 or more (dense training, then fine-tuning), got {}",
                context.epochs
            )));
        }
        if let Some(e) = options.prune_epoch
            && e >= context.epochs
        {
            return Err(Error::invalid(format!(
                "--prune-epoch ({e}) must be before the last epoch (--epochs {})",
                context.epochs
            )));
        }
        Ok(Magnitude {
            target,
            prune_epoch: options
                .prune_epoch
                .unwrap_or(default_prune_epoch(context.epochs)),
            distribution: shared.distribution,
            first_layer_dense: shared.first_layer_dense,
            last_layer_dense: shared.last_layer_dense,
            layers: Vec::new(),
        })
    }
}

impl Magnitude {
    /// The epoch count after which the network is pruned.
    pub fn prune_epoch(&self) -> usize {
        self.prune_epoch
    }
}

impl Method for Magnitude {
    fn name(&self) -> &'static str {
        "magnitude"
    }

    /// All-ones masks from the start, so a checkpoint has the same tensors before and after
    /// pruning.
    fn attach(&mut self, model: &mut dyn Module<f32>) -> Result<()> {
        self.layers = attach_masks(
            model,
            self.first_layer_dense,
            self.last_layer_dense,
            Some(self.target),
        )?;
        Ok(())
    }

    /// Prunes once, after epoch `--prune-epoch`.
    fn after_epoch(&mut self, model: &mut dyn Module<f32>, epoch: usize) -> Result<Vec<String>> {
        if epoch + 1 != self.prune_epoch {
            return Ok(Vec::new());
        }
        // Magnitude scores draw nothing from the generator.
        let scores = scores(model, Score::Magnitude, &mut derived(0, 0));
        let counts = prune_counts(
            &self.layers,
            self.distribution,
            &scores,
            &masked_out(model),
            self.target,
            true,
        )?;
        shrink_masks(model, &self.layers, &scores, &counts)?;
        Ok(Vec::new())
    }
}
