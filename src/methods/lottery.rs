//! Lottery tickets (Frankle & Carbin, ICLR 2019): iterative magnitude pruning with rewinding,
//! `--method lottery`.
//!
//! Round 0 trains the dense network for `--epochs` epochs. Each of the `--rounds` rounds after it
//! prunes the smallest-|w| `--prune-fraction` of the weights still kept (the paper's Algorithm /
//! "iterative pruning", Section 2), then resets every parameter (weights, biases, batch-norm
//! parameters and statistics) to its value at the rewind point and trains again; pruned weights
//! stay exactly zero. The rewind point is the initialisation θ_0 (the paper), or the values after
//! `--rewind-step` optimiser steps of round 0 (late rewinding, Frankle et al. 2019; open_lth's
//! `rewinding_steps`). Counts are ceil(fraction x kept), as open_lth rounds.
//!
//! `--lottery-scope layer` (the paper): every layer prunes its own fraction, the output layer
//! `--output-prune-fraction` (the paper: half the rate of the others). `global` (open_lth's
//! default `sparse_global`): one ranking of |w| over all sparsified layers but the output layer,
//! which keeps its own per-layer fraction (0, or `--last-layer-dense`, keeps it dense as open_lth
//! does).
//!
//! Controls (`--lottery-control`): `reinit` resets survivors to a second random initialisation
//! (one per run, another seed); `random-prune` prunes per layer as many weights as a ticket would,
//! chosen at random, and rewinds like a ticket. One run cannot see another's masks: the reinit
//! control's masks come from the same procedure on its own training (see `docs/methods.md`).
//!
//! Every round gets a summary row (`method_details.rounds`): density of the prunable weights,
//! final test accuracy, best validation accuracy, the iteration (optimiser steps into
//! the round, evaluated once per epoch) where it was reached and the test accuracy there (the
//! paper's early-stopping measure). Rows and snapshots are method state, so a run resumes within
//! a round or at the round it stopped in, bit-identically.

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::methods::han::pruning_rounds;
use crate::methods::options::{TrainContext, clap_defaults};
use crate::methods::plugin::{
    EpochEval, InitData, Method, MethodState, Plugin, RunShape, StepInfo,
};
use crate::methods::prune::{Prunable, Score, attach_masks, masked_out, scores, shrink_masks};
use crate::nn::Module;
use crate::rng::derived;
use crate::tape::Tensor;

/// Pruning rounds after the dense one when `--rounds` is not given.
pub const DEFAULT_ROUNDS: usize = 5;
/// Seed offset of the reinit control's second initialisation.
const REINIT_SEED: u64 = 0x5245_494e_4954;
/// RNG stream of the random-prune control.
const RANDOM_PRUNE_STREAM: u64 = 0x4c4f_5454;

/// What survivors are reset to and how masks are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LotteryControl {
    /// Winning tickets: magnitude pruning, rewind to the saved values.
    None,
    /// Same procedure, survivors reset to a fresh random initialisation.
    Reinit,
    /// Random masks at the ticket's per-layer counts, rewound like tickets.
    RandomPrune,
}

/// Where pruning ranks weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LotteryScope {
    /// Every layer prunes its own fraction (the paper).
    Layer,
    /// One ranking over the layers but the output layer (open_lth).
    Global,
}

/// Lottery tickets' flags.
#[derive(Args, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[group(skip)]
#[serde(default)]
pub struct LotteryOptions {
    /// Lottery: fraction of the remaining weights pruned per round.
    #[arg(long, default_value_t = 0.2)]
    pub prune_fraction: f64,
    /// Lottery: fraction of the output layer's remaining weights pruned per round.
    #[arg(long, default_value_t = 0.1)]
    pub output_prune_fraction: f64,
    /// Lottery: per-layer (the paper) or global (open_lth) ranking.
    #[arg(long, value_enum, default_value_t = LotteryScope::Layer)]
    pub lottery_scope: LotteryScope,
    /// Lottery: rewind to the values after this many optimiser steps (default: the init).
    #[arg(long)]
    pub rewind_step: Option<usize>,
    /// Lottery: the paper's controls.
    #[arg(long, value_enum, default_value_t = LotteryControl::None)]
    pub lottery_control: LotteryControl,
}

impl Default for LotteryOptions {
    fn default() -> Self {
        clap_defaults()
    }
}

/// One round's row of the summary.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RoundRow {
    pub round: usize,
    /// Kept fraction of all prunable weights during the round.
    pub density: f64,
    pub final_test_accuracy: f64,
    /// Best validation accuracy of the round (the test set never selects anything).
    pub best_val_accuracy: Option<f64>,
    /// Optimiser steps into the round at the evaluation of best validation accuracy.
    pub best_val_iteration: Option<usize>,
    /// Test accuracy of the evaluation with the best validation accuracy: the round's "best".
    pub test_accuracy_at_best_val: Option<f64>,
}

/// The JSON part of the state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct LotteryJson {
    rows: Vec<RoundRow>,
    density: f64,
}

/// The lottery-ticket method.
pub struct Lottery {
    options: LotteryOptions,
    rounds: usize,
    epochs: usize,
    seed: u64,
    first_layer_dense: bool,
    last_layer_dense: bool,
    layers: Vec<Prunable>,
    /// Seen in `after_step` (rows count iterations into their round).
    steps_per_epoch: usize,
    json: LotteryJson,
    /// Values every parameter is rewound to (taken at init or after `--rewind-step` steps).
    rewind: Vec<(String, Tensor<f32>)>,
    /// The reinit control's second initialisation.
    reinit: Vec<(String, Tensor<f32>)>,
}

impl Plugin<TrainContext> for Lottery {
    type Options = LotteryOptions;
    const SHARED: &'static [&'static str] = &["first_layer_dense", "last_layer_dense", "rounds"];

    fn build(options: &LotteryOptions, context: &TrainContext) -> Result<Self> {
        let p = options.prune_fraction;
        if !(p > 0.0 && p < 1.0) {
            return Err(Error::invalid(format!(
                "--prune-fraction must be in (0, 1), got {p}"
            )));
        }
        let q = options.output_prune_fraction;
        if !(0.0..1.0).contains(&q) {
            return Err(Error::invalid(format!(
                "--output-prune-fraction must be in [0, 1), got {q}"
            )));
        }
        Ok(Lottery {
            options: options.clone(),
            rounds: pruning_rounds(context.shared.rounds, DEFAULT_ROUNDS)?,
            epochs: context.epochs,
            seed: context.seed,
            first_layer_dense: context.shared.first_layer_dense,
            last_layer_dense: context.shared.last_layer_dense,
            layers: Vec::new(),
            steps_per_epoch: 1,
            json: LotteryJson {
                rows: Vec::new(),
                density: 1.0,
            },
            rewind: Vec::new(),
            reinit: Vec::new(),
        })
    }
}

/// Every parameter and buffer of the model but the transforms' own (masks), by full name.
pub fn snapshot(model: &dyn Module<f32>) -> Vec<(String, Tensor<f32>)> {
    let mut transform_params = Vec::new();
    model.visit_weights("", &mut |name, w| {
        if let Some(t) = &w.transform {
            t.visit(name, &mut |n, _| transform_params.push(n.to_string()));
        }
    });
    let mut out = Vec::new();
    model.visit("", &mut |name, p| {
        if !transform_params.iter().any(|t| t == name) {
            out.push((name.to_string(), p.value().clone()));
        }
    });
    out
}

/// Sets every parameter named in `values` to its value there, then zeroes the pruned weights.
pub fn restore(model: &mut dyn Module<f32>, values: &[(String, Tensor<f32>)]) {
    model.visit_mut("", &mut |name, p| {
        if let Some((_, v)) = values.iter().find(|(n, _)| n == name) {
            p.set_value(v.clone());
        }
    });
    model.visit_weights_mut("", &mut |_, w| w.reapply_mask());
}

impl Lottery {
    /// Prunes for round `round`: per-layer counts from magnitude (per layer or global), the
    /// weights chosen by magnitude, or at random for the random-prune control.
    pub fn prune(&mut self, model: &mut dyn Module<f32>, round: usize) -> Result<()> {
        let magnitude = scores(model, Score::Magnitude, &mut derived(0, 0));
        let pruned = masked_out(model);
        let last = self.layers.len() - 1;
        let kept: Vec<usize> = pruned
            .iter()
            .map(|p| p.iter().filter(|x| !**x).count())
            .collect();
        let fraction_of = |l: usize| {
            if l == last {
                self.options.output_prune_fraction
            } else {
                self.options.prune_fraction
            }
        };
        let more = |l: usize, k: usize| (fraction_of(l) * k as f64).ceil() as usize;
        let mut counts: Vec<usize> = (0..self.layers.len())
            .map(|l| pruned[l].len() - kept[l] + more(l, kept[l]))
            .collect();
        let ranked: Vec<usize> = (0..self.layers.len())
            .filter(|&l| self.layers[l].sparsified && l != last)
            .collect();
        if self.options.lottery_scope == LotteryScope::Global && !ranked.is_empty() {
            // One ranking of the kept weights' |w| over the ranked layers (ties: layer, index).
            let mut kept_scores: Vec<(f64, usize, usize)> = ranked
                .iter()
                .flat_map(|&l| {
                    let (scores, pruned) = (&magnitude[l], &pruned[l]);
                    (0..scores.len())
                        .filter(move |&i| !pruned[i])
                        .map(move |i| (scores[i], l, i))
                })
                .collect();
            let total: usize = ranked.iter().map(|&l| kept[l]).sum();
            let k = (self.options.prune_fraction * total as f64).ceil() as usize;
            kept_scores.sort_by(|a, b| a.0.total_cmp(&b.0).then((a.1, a.2).cmp(&(b.1, b.2))));
            for &l in &ranked {
                counts[l] = pruned[l].len() - kept[l];
            }
            for &(_, l, _) in &kept_scores[..k.min(kept_scores.len())] {
                counts[l] += 1;
            }
        }
        let chosen = match self.options.lottery_control {
            LotteryControl::RandomPrune => {
                let mut rng = derived(self.seed ^ RANDOM_PRUNE_STREAM, round as u64);
                scores(model, Score::Random, &mut rng)
            }
            _ => magnitude,
        };
        shrink_masks(model, &self.layers, &chosen, &counts)?;
        let total: usize = pruned.iter().map(Vec::len).sum();
        let now_pruned: usize = masked_out(model)
            .iter()
            .map(|p| p.iter().filter(|x| **x).count())
            .sum();
        self.json.density = 1.0 - now_pruned as f64 / total as f64;
        Ok(())
    }

    /// Resets the survivors as the control says (rewind point, or the second initialisation).
    pub fn rewind(&self, model: &mut dyn Module<f32>) {
        match self.options.lottery_control {
            LotteryControl::Reinit => restore(model, &self.reinit),
            _ => restore(model, &self.rewind),
        }
    }

    /// The values survivors are rewound to (empty before the rewind point is reached).
    pub fn rewind_point(&self) -> &[(String, Tensor<f32>)] {
        &self.rewind
    }

    /// The summary rows so far.
    pub fn rows(&self) -> &[RoundRow] {
        &self.json.rows
    }

    fn rewind_at_init(&self) -> bool {
        self.options.rewind_step.unwrap_or(0) == 0
    }
}

impl Method for Lottery {
    fn name(&self) -> &'static str {
        "lottery"
    }

    fn attach(&mut self, model: &mut dyn Module<f32>) -> Result<()> {
        self.layers = attach_masks(model, self.first_layer_dense, self.last_layer_dense, None)?;
        Ok(())
    }

    fn check_run(&self, run: &RunShape) -> Result<()> {
        let round_steps = run.epochs * run.steps_per_epoch;
        if let Some(s) = self.options.rewind_step
            && s > round_steps
        {
            return Err(Error::invalid(format!(
                "--rewind-step ({s}) must be within the first round (--epochs {} x {} steps = {round_steps} steps)",
                run.epochs, run.steps_per_epoch
            )));
        }
        Ok(())
    }

    fn rounds(&self) -> usize {
        1 + self.rounds
    }

    /// The rewind point (at init) and the reinit control's second initialisation.
    fn init(&mut self, model: &mut dyn Module<f32>, data: &InitData) -> Result<()> {
        if self.rewind_at_init() {
            self.rewind = snapshot(model);
        }
        if self.options.lottery_control == LotteryControl::Reinit {
            let other = (data.fresh_model)(self.seed ^ REINIT_SEED)?;
            self.reinit = snapshot(other.as_ref());
        }
        Ok(())
    }

    fn after_step(&mut self, model: &mut dyn Module<f32>, info: &StepInfo) -> Result<()> {
        self.steps_per_epoch = info.steps_per_epoch;
        if self.rewind.is_empty() && Some(info.step + 1) == self.options.rewind_step {
            self.rewind = snapshot(model);
        }
        Ok(())
    }

    fn after_evaluate(&mut self, eval: &EpochEval) {
        let round = eval.epoch / self.epochs.max(1);
        let iteration = eval.steps_done - round * self.epochs * self.steps_per_epoch;
        if self.json.rows.len() <= round {
            self.json.rows.push(RoundRow {
                round,
                density: self.json.density,
                ..RoundRow::default()
            });
        }
        let row = self.json.rows.last_mut().expect("pushed above");
        row.final_test_accuracy = eval.test_acc;
        if let Some(v) = eval.val_acc
            && row.best_val_accuracy.is_none_or(|b| v > b)
        {
            row.best_val_accuracy = Some(v);
            row.best_val_iteration = Some(iteration);
            row.test_accuracy_at_best_val = Some(eval.test_acc);
        }
    }

    fn start_round(&mut self, model: &mut dyn Module<f32>, round: usize) -> Result<()> {
        if self.rewind.is_empty() {
            return Err(Error::invalid(
                "lottery: the rewind point was never reached (--rewind-step)",
            ));
        }
        self.prune(model, round)?;
        self.rewind(model);
        Ok(())
    }

    fn summary(&self, _model: &dyn Module<f32>) -> serde_json::Value {
        serde_json::json!({
            "options": self.options,
            "rounds": self.json.rows,
        })
    }

    fn state(&self) -> MethodState {
        let mut state = MethodState::of(&self.json);
        for (prefix, values) in [("rewind", &self.rewind), ("reinit", &self.reinit)] {
            for (name, t) in values {
                state.tensors.push((format!("{prefix}.{name}"), t.clone()));
            }
        }
        state
    }

    fn load_state(&mut self, state: &MethodState) -> Result<()> {
        self.json = state.read("lottery")?;
        let pick = |prefix: &str| -> Vec<(String, Tensor<f32>)> {
            let prefix = format!("{prefix}.");
            state
                .tensors
                .iter()
                .filter_map(|(n, t)| Some((n.strip_prefix(&prefix)?.to_string(), t.clone())))
                .collect()
        };
        self.rewind = pick("rewind");
        self.reinit = pick("reinit");
        Ok(())
    }
}
