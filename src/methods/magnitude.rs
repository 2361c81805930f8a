//! One-shot magnitude pruning with fine-tuning, `--method magnitude`: train dense for
//! `--prune-epoch` epochs (default: half the run), then prune every sparsified layer to the same
//! sparsity by magnitude (per-layer top-k, `Mask::top_k_magnitude`; layers kept dense by a flag
//! are made up by the others, and the counts are the exact uniform allocation, so the global
//! sparsity is round(S N) / N), and fine-tune the rest of the run with the masks fixed (mask
//! hygiene in `optim::step` keeps pruned weights and their optimiser state at exactly zero).

use crate::error::{Error, Result};
use crate::nn::Module;
use crate::sparsity::Mask;
use crate::train::config::TrainConfig;
use crate::train::method::Method;

use super::{Prunable, attach_uniform_masks, bake, uniform_prune_counts, update_masks};

/// The one-shot magnitude method.
pub struct Magnitude {
    target: f64,
    /// Dense epochs before pruning.
    prune_epoch: usize,
    first_layer_dense: bool,
    last_layer_dense: bool,
    layers: Vec<Prunable>,
}

impl Magnitude {
    pub fn from_train_config(config: &TrainConfig) -> Result<Self> {
        let s = &config.sparsity;
        let target = s
            .target_sparsity
            .ok_or_else(|| Error::invalid("--method magnitude needs --target-sparsity"))?;
        Ok(Magnitude {
            target,
            prune_epoch: s.prune_epoch.unwrap_or(default_prune_epoch(config.epochs)),
            first_layer_dense: s.first_layer_dense,
            last_layer_dense: s.last_layer_dense,
            layers: Vec::new(),
        })
    }

    /// The epoch count after which the network is pruned.
    pub fn prune_epoch(&self) -> usize {
        self.prune_epoch
    }
}

/// Half the run, at least one epoch.
pub fn default_prune_epoch(epochs: usize) -> usize {
    (epochs / 2).max(1)
}

impl Method for Magnitude {
    fn name(&self) -> &'static str {
        "magnitude"
    }

    /// All-ones masks from the start, so a checkpoint has the same tensors before and after
    /// pruning.
    fn prepare(&mut self, model: &mut dyn Module<f32>) -> Result<()> {
        self.layers = attach_uniform_masks(
            model,
            self.first_layer_dense,
            self.last_layer_dense,
            self.target,
        )?;
        Ok(())
    }

    fn after_epoch(&mut self, model: &mut dyn Module<f32>, epoch: usize) -> Vec<String> {
        if epoch + 1 != self.prune_epoch {
            return Vec::new();
        }
        let counts =
            uniform_prune_counts(&self.layers, self.target, true).expect("checked in prepare");
        update_masks(model, &self.layers, &counts, |_, mask, w, keep| {
            *mask = Mask::top_k_magnitude(w, keep);
            Ok(())
        })
        .expect("replacing a mask cannot fail");
        Vec::new()
    }

    fn finish(&mut self, model: &mut dyn Module<f32>) {
        bake(model);
    }
}
