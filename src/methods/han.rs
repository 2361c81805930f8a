//! Han et al. (NeurIPS 2015, "Learning both Weights and Connections for Efficient Neural
//! Networks"), `--method han`: train dense, prune, retrain the survivors, iterate.
//!
//! Round 0 trains the dense network for `--epochs` epochs. Each of the `--rounds` rounds after it
//! starts by pruning, in every sparsified layer l, the kept weights with
//! |w| < q_l * std(W_l) (the paper's Section 3: the threshold is a quality parameter times the
//! standard deviation of the layer's weights; `--han-q`, one value or one per prunable layer),
//! then retrains the survivors with the masks fixed for `--epochs` epochs at the learning rate
//! times `--han-lr-scale` (the paper retrains at lr / 10 for LeNet), with the schedule and the
//! optimiser state restarted. The L2 regularisation the paper recommends for retraining is the
//! run's `--weight-decay` (on by default, 5e-4). Mask hygiene in `optim::step` keeps pruned
//! weights, their gradients and their momentum at exactly zero.
//!
//! std(W_l) is the population standard deviation of the layer's **kept** weights (a pruned weight
//! is no longer a weight of the layer): in round 1 this is the std of the dense layer; in later
//! rounds the survivors' spread grows, so the same q prunes further, which is the iterative
//! pruning the paper recommends (its Figure 5). The summary's `method_details` has every round's
//! thresholds and kept fractions.

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::methods::options::{TrainContext, clap_defaults};
use crate::methods::plugin::{Method, MethodState, Plugin};
use crate::methods::prune::{Prunable, attach_masks, kept_fractions, mask_of};
use crate::nn::Module;
use crate::tape::Tensor;

/// Pruning rounds after the dense one when `--rounds` is not given.
pub const DEFAULT_ROUNDS: usize = 2;

/// Han's flags.
#[derive(Args, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[group(skip)]
#[serde(default)]
pub struct HanOptions {
    /// Han: prune |w| < q * std of the layer's kept weights; one q for every layer or one per
    /// prunable layer (comma-separated, in forward order).
    #[arg(long, value_delimiter = ',', default_values_t = [1.0])]
    pub han_q: Vec<f64>,
    /// Han: learning-rate multiplier of the retraining rounds (the paper: 0.1).
    #[arg(long, default_value_t = 0.1)]
    pub han_lr_scale: f64,
}

impl Default for HanOptions {
    fn default() -> Self {
        clap_defaults()
    }
}

/// One pruning round's outcome (summary and state).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HanRound {
    pub round: usize,
    /// Per layer: (name, threshold q * std, kept fraction after pruning).
    pub layers: Vec<(String, f64, f64)>,
}

/// The Han et al. method.
pub struct Han {
    q: Vec<f64>,
    lr_scale: f64,
    rounds: usize,
    first_layer_dense: bool,
    last_layer_dense: bool,
    layers: Vec<Prunable>,
    history: Vec<HanRound>,
}

/// `--rounds`, checked, or `default`.
pub fn pruning_rounds(rounds: Option<usize>, default: usize) -> Result<usize> {
    match rounds {
        Some(0) => Err(Error::invalid(
            "--rounds must be at least 1 (pruning rounds after the dense one)",
        )),
        Some(r) => Ok(r),
        None => Ok(default),
    }
}

impl Plugin<TrainContext> for Han {
    type Options = HanOptions;
    const SHARED: &'static [&'static str] = &["first_layer_dense", "last_layer_dense", "rounds"];

    fn build(options: &HanOptions, context: &TrainContext) -> Result<Self> {
        if options.han_q.is_empty() {
            return Err(Error::invalid("--han-q needs at least one value"));
        }
        if let Some(q) = options.han_q.iter().find(|q| !(q.is_finite() && **q > 0.0)) {
            return Err(Error::invalid(format!(
                "--han-q values must be positive, got {q}"
            )));
        }
        let s = options.han_lr_scale;
        if !(s.is_finite() && s > 0.0 && s <= 1.0) {
            return Err(Error::invalid(format!(
                "--han-lr-scale must be in (0, 1], got {s}"
            )));
        }
        Ok(Han {
            q: options.han_q.clone(),
            lr_scale: s,
            rounds: pruning_rounds(context.shared.rounds, DEFAULT_ROUNDS)?,
            first_layer_dense: context.shared.first_layer_dense,
            last_layer_dense: context.shared.last_layer_dense,
            layers: Vec::new(),
            history: Vec::new(),
        })
    }
}

/// Population standard deviation of the entries of `w` where `mask` is nonzero (0 if none).
pub fn kept_std(w: &Tensor<f32>, mask: &Tensor<f32>) -> f64 {
    let kept: Vec<f64> = w
        .iter()
        .zip(mask.iter())
        .filter(|(_, m)| **m != 0.0)
        .map(|(v, _)| *v as f64)
        .collect();
    if kept.is_empty() {
        return 0.0;
    }
    let n = kept.len() as f64;
    let mean = kept.iter().sum::<f64>() / n;
    (kept.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt()
}

impl Han {
    /// q of layer `l` (one value serves every layer).
    fn q_of(&self, l: usize) -> f64 {
        if self.q.len() == 1 {
            self.q[0]
        } else {
            self.q[l]
        }
    }

    /// The pruning step of a round: in every sparsified layer, drops the kept weights with
    /// |w| < q_l std(kept W_l) from the mask and zeroes them. Public for the tests.
    pub fn prune(&mut self, model: &mut dyn Module<f32>, round: usize) -> Result<()> {
        let mut layers = Vec::new();
        let mut l = 0;
        let mut failure = None;
        let qs: Vec<f64> = (0..self.layers.len()).map(|i| self.q_of(i)).collect();
        model.visit_weights_mut("", &mut |name, w| {
            let q = qs[l];
            l += 1;
            let raw = w.raw.value().clone();
            let Some(mask) = mask_of(w) else { return };
            let old = mask.values().clone();
            let threshold = q * kept_std(&raw, &old);
            let new = ndarray::Zip::from(&old).and(&raw).map_collect(|&m, &v| {
                if m != 0.0 && (v.abs() as f64) >= threshold {
                    1.0
                } else {
                    0.0
                }
            });
            let kept = new.iter().filter(|m| **m != 0.0).count() as f64 / new.len() as f64;
            if let Err(e) = mask.set(new) {
                failure.get_or_insert(Error::invalid(format!("{name}: {e}")));
            }
            w.reapply_mask();
            layers.push((name.to_string(), threshold, kept));
        });
        if let Some(e) = failure {
            return Err(e);
        }
        self.history.push(HanRound { round, layers });
        Ok(())
    }

    /// The pruning rounds done so far.
    pub fn history(&self) -> &[HanRound] {
        &self.history
    }
}

impl Method for Han {
    fn name(&self) -> &'static str {
        "han"
    }

    /// All-ones masks from the start (a checkpoint has the same tensors in every round); checks
    /// that `--han-q` has one value or one per prunable layer.
    fn attach(&mut self, model: &mut dyn Module<f32>) -> Result<()> {
        self.layers = attach_masks(model, self.first_layer_dense, self.last_layer_dense, None)?;
        if self.q.len() != 1 && self.q.len() != self.layers.len() {
            return Err(Error::invalid(format!(
                "--han-q has {} values; give one, or one per prunable layer ({})",
                self.q.len(),
                self.layers.len()
            )));
        }
        Ok(())
    }

    fn rounds(&self) -> usize {
        1 + self.rounds
    }

    /// Dense training at the run's learning rate, retraining at `--han-lr-scale` times it.
    fn round_lr_scale(&self, round: usize) -> f64 {
        if round == 0 { 1.0 } else { self.lr_scale }
    }

    fn start_round(&mut self, model: &mut dyn Module<f32>, round: usize) -> Result<()> {
        self.prune(model, round)
    }

    fn summary(&self, model: &dyn Module<f32>) -> serde_json::Value {
        serde_json::json!({
            "q": self.q,
            "lr_scale": self.lr_scale,
            "rounds": self.history,
            "final_kept": kept_fractions(model),
        })
    }

    fn state(&self) -> MethodState {
        MethodState::of(&self.history)
    }

    fn load_state(&mut self, state: &MethodState) -> Result<()> {
        self.history = state.read("han")?;
        Ok(())
    }
}
