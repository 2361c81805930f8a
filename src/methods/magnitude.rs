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
use crate::methods::prune::{Prunable, PruneTarget, Score, masked_out, scores};
use crate::nn::Module;
use crate::rng::derived;

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
    prune: PruneTarget,
    /// Dense epochs before pruning.
    prune_epoch: usize,
    layers: Vec<Prunable>,
}

/// Half the run, at least one epoch.
pub fn default_prune_epoch(epochs: usize) -> usize {
    (epochs / 2).max(1)
}

impl Plugin<TrainContext> for Magnitude {
    type Options = MagnitudeOptions;
    const SHARED: &'static [&'static str] = PruneTarget::SETTINGS;

    fn build(options: &MagnitudeOptions, context: &TrainContext) -> Result<Self> {
        let prune = PruneTarget::required(context, "magnitude")?;
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
            prune,
            prune_epoch: options
                .prune_epoch
                .unwrap_or(default_prune_epoch(context.epochs)),
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
        self.layers = self.prune.attach_masks(model)?;
        Ok(())
    }

    /// Prunes once, after epoch `--prune-epoch`.
    fn after_epoch(&mut self, model: &mut dyn Module<f32>, epoch: usize) -> Result<Vec<String>> {
        if epoch + 1 != self.prune_epoch {
            return Ok(Vec::new());
        }
        // Magnitude scores draw nothing from the generator.
        let scores = scores(model, Score::Magnitude, &mut derived(0, 0));
        let pruned = masked_out(model);
        self.prune.prune(model, &self.layers, &scores, &pruned)?;
        Ok(Vec::new())
    }
}
