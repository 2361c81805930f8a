//! DNW: discovering neural wirings (Wortsman et al., NeurIPS 2019), `--method dnw`, in its
//! static-graph form (the paper's section on sparse networks; allenai/dnw `ChooseTopEdges`):
//! the forward pass uses only the k largest |w| of each layer, the backward pass updates every
//! weight (straight-through, `sparsity::TopKStraightThrough`), so a pruned weight that keeps
//! receiving gradient comes back when its |w| overtakes a kept one.
//!
//! k per layer: the `--distribution` allocation of `--target-sparsity` (the authors: the same
//! rate in every layer, `int(prune_rate * numel)` pruned; here exact counts whose sum is
//! round(s N)). With `--distribution global` (or `lamp`) the per-layer counts follow one ranking
//! of |w| over all layers, recomputed after every optimiser step, so the forward pass uses the
//! global top-k. At the end the top-k is baked: the export has exact zeros.
//!
//! The summary counts, per epoch, the weights in the top-k at the epoch's end that were not at
//! the previous epoch's end (`returned_per_epoch`): pruned weights do come back.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::methods::options::TrainContext;
use crate::methods::plugin::{Method, MethodState, NoOptions, Plugin, StepInfo};
use crate::methods::prune::{Prunable, PruneTarget, prunable_weights, uniform_prune_counts};
use crate::nn::Module;
use crate::sparsity::TopKStraightThrough;
use crate::tape::Tensor;

/// The DNW method.
pub struct Dnw {
    prune: PruneTarget,
    layers: Vec<Prunable>,
    /// The forward masks at the end of the last epoch (`mask.{layer}` in the state).
    last_masks: Vec<(String, Tensor<f32>)>,
    log: DnwLog,
}

/// What the summary reports (and the checkpoint keeps).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DnwLog {
    /// Per epoch: weights in the forward top-k at its end that were outside it at the end of
    /// the previous epoch (the first epoch compares with the start).
    pub returned_per_epoch: Vec<usize>,
}

impl Plugin<TrainContext> for Dnw {
    type Options = NoOptions;
    const SHARED: &'static [&'static str] = PruneTarget::SETTINGS;

    fn build(_: &NoOptions, context: &TrainContext) -> Result<Self> {
        let prune = PruneTarget::required(context, "dnw")?;
        Ok(Dnw {
            prune,
            layers: Vec::new(),
            last_masks: Vec::new(),
            log: DnwLog::default(),
        })
    }
}

impl Dnw {
    /// Sets every sparsified layer's k from the allocation of the target over the current |w|.
    fn allocate(&self, model: &mut dyn Module<f32>) -> Result<()> {
        // |w| of the raw weights: the forward pass's top-k is taken on them (the effective
        // weight is 0 where the top-k prunes).
        let mut magnitudes = Vec::new();
        model.visit_weights("", &mut |_, w| {
            magnitudes.push(
                w.raw
                    .value()
                    .iter()
                    .map(|v| v.abs() as f64)
                    .collect::<Vec<f64>>(),
            )
        });
        let counts = self.prune.counts(&self.layers, &magnitudes, &[])?;
        let mut l = 0;
        model.visit_weights_mut("", &mut |_, w| {
            let keep = self.layers[l].len() - counts[l];
            l += 1;
            if let Some(top) = w
                .transform
                .as_mut()
                .and_then(|t| t.as_any_mut().downcast_mut::<TopKStraightThrough<f32>>())
            {
                top.set_keep(keep);
            }
        });
        Ok(())
    }

    /// The forward masks of the sparsified layers now.
    fn masks(model: &dyn Module<f32>) -> Vec<(String, Tensor<f32>)> {
        let mut out = Vec::new();
        model.visit_weights("", &mut |name, w| {
            let top = w
                .transform
                .as_ref()
                .and_then(|t| t.as_any().downcast_ref::<TopKStraightThrough<f32>>());
            if let Some(top) = top {
                out.push((name.to_string(), top.mask_of(w.raw.value())));
            }
        });
        out
    }
}

impl Method for Dnw {
    fn name(&self) -> &'static str {
        "dnw"
    }

    fn attach(&mut self, model: &mut dyn Module<f32>) -> Result<()> {
        self.layers = prunable_weights(
            model,
            self.prune.first_layer_dense,
            self.prune.last_layer_dense,
        )?;
        uniform_prune_counts(&self.layers, self.prune.sparsity, true)?;
        let mut l = 0;
        model.visit_weights_mut("", &mut |_, w| {
            if self.layers[l].sparsified {
                w.transform = Some(Box::new(TopKStraightThrough::<f32>::new(w.raw.len())));
            }
            l += 1;
        });
        self.allocate(model)?;
        self.last_masks = Self::masks(model);
        Ok(())
    }

    fn after_step(&mut self, model: &mut dyn Module<f32>, _info: &StepInfo) -> Result<()> {
        if self.prune.distribution.ranks_scores() {
            self.allocate(model)?;
        }
        Ok(())
    }

    fn after_epoch(&mut self, model: &mut dyn Module<f32>, _epoch: usize) -> Result<Vec<String>> {
        let now = Self::masks(model);
        let returned = now
            .iter()
            .zip(&self.last_masks)
            .map(|((_, new), (_, old))| {
                new.iter()
                    .zip(old.iter())
                    .filter(|(n, o)| **n != 0.0 && **o == 0.0)
                    .count()
            })
            .sum();
        self.log.returned_per_epoch.push(returned);
        self.last_masks = now;
        Ok(Vec::new())
    }

    fn summary(&self, _model: &dyn Module<f32>) -> serde_json::Value {
        serde_json::to_value(&self.log).expect("log serialises")
    }

    fn state(&self) -> MethodState {
        let mut state = MethodState::of(&self.log);
        state.tensors = self
            .last_masks
            .iter()
            .map(|(n, m)| (format!("mask.{n}"), m.clone()))
            .collect();
        state
    }

    fn load_state(&mut self, state: &MethodState) -> Result<()> {
        self.log = state.read("dnw")?;
        for (name, mask) in &mut self.last_masks {
            let key = format!("mask.{name}");
            match state.tensors.iter().find(|(n, _)| *n == key) {
                Some((_, saved)) if saved.shape() == mask.shape() => *mask = saved.clone(),
                _ => {
                    return Err(Error::invalid(format!(
                        "the checkpoint's state of method dnw has no mask {key} of shape {:?}",
                        mask.shape()
                    )));
                }
            }
        }
        Ok(())
    }
}
