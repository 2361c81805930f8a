//! SNIP (Lee et al., ICLR 2019, "SNIP: Single-shot Network Pruning based on Connection
//! Sensitivity"), `--method snip`: prune once at initialisation, then train the sparse network.
//!
//! Connection sensitivity (the paper's eq. 6): s_j = |∂L/∂c_j| at c = 1, where the mask c
//! multiplies the weights, so ∂L/∂c_j = g_j w_j with g the gradient of the mean cross-entropy;
//! normalised by Σ_k s_k over all prunable weights. g is summed over `--score-batches` batches of
//! the training split (the paper: one batch). Masks keep the top scores of `--target-sparsity`
//! spread by the shared `--distribution`: `global` is the paper's single top-k over all layers;
//! the other distributions rank within each layer (the normalisation changes no ranking). Masks
//! are then fixed for the whole run (mask hygiene in `optim::step`).
//!
//! `--snip-other-init` scores on a second random initialisation (another seed) and trains the
//! run's own, as the authors' code does (namhoonlee/snip-public: the `weights_bp` the mask is
//! computed on and the `weights_ap` trained are separate variables, separately initialised).
//! The authors' code also prunes biases; here, as in every method, only weights are pruned.
//! Scoring runs the forward pass in training mode; batch-norm statistics it touches are put back.

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::data::Batch;
use crate::error::{Error, Result};
use crate::methods::lottery::{restore, snapshot};
use crate::methods::options::{TrainContext, clap_defaults};
use crate::methods::plugin::{InitData, Method, Plugin};
use crate::methods::prune::{Prunable, PruneTarget};
use crate::nn::Module;
use crate::tape::{Tape, Tensor};

/// Seed offset of the second initialisation `--snip-other-init` scores on.
const OTHER_INIT_SEED: u64 = 0x534e_4950;

/// SNIP's flags.
#[derive(Args, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[group(skip)]
#[serde(default)]
pub struct SnipOptions {
    /// SNIP: batches of the training split the gradient is summed over (the paper: 1).
    #[arg(long, default_value_t = 1)]
    pub score_batches: usize,
    /// SNIP: score on another random initialisation than the one trained (the authors' code).
    #[arg(long)]
    pub snip_other_init: bool,
}

impl Default for SnipOptions {
    fn default() -> Self {
        clap_defaults()
    }
}

/// The SNIP method.
pub struct Snip {
    options: SnipOptions,
    prune: PruneTarget,
    seed: u64,
    layers: Vec<Prunable>,
}

impl Plugin<TrainContext> for Snip {
    type Options = SnipOptions;
    const SHARED: &'static [&'static str] = PruneTarget::SETTINGS;

    fn build(options: &SnipOptions, context: &TrainContext) -> Result<Self> {
        let prune = PruneTarget::required(context, "snip")?;
        if options.score_batches == 0 {
            return Err(Error::invalid("--score-batches must be at least 1"));
        }
        Ok(Snip {
            options: options.clone(),
            prune,
            seed: context.seed,
            layers: Vec::new(),
        })
    }
}

/// The gradient of the mean cross-entropy on `batch` with respect to every prunable weight's raw
/// value (`visit_weights` order), in `f64`; parameters and buffers are left as they were.
pub fn weight_grads(model: &mut dyn Module<f32>, batch: &Batch<f32>) -> Vec<Tensor<f64>> {
    let before = snapshot(model);
    let tape = Tape::new();
    let logits = model.forward(tape.constant(batch.images.clone()));
    let grads = logits.cross_entropy(&batch.labels, 0.0).backward();
    let mut out = Vec::new();
    model.visit_weights("", &mut |_, w| {
        out.push(match grads.of(&w.raw) {
            Some(g) => g.mapv(|x| x as f64),
            None => Tensor::zeros(w.raw.value().raw_dim()),
        })
    });
    restore(model, &before);
    out
}

/// SNIP's normalised connection sensitivities |g ⊙ w| / Σ |g ⊙ w| of `model` on `batches`
/// (g summed over the batches), per prunable weight in `visit_weights` order.
pub fn snip_scores(model: &mut dyn Module<f32>, batches: &[Batch<f32>]) -> Vec<Vec<f64>> {
    let mut g: Vec<Tensor<f64>> = Vec::new();
    for batch in batches {
        let gb = weight_grads(model, batch);
        if g.is_empty() {
            g = gb;
        } else {
            g.iter_mut().zip(gb).for_each(|(a, b)| *a += &b);
        }
    }
    let mut scores = Vec::new();
    let mut l = 0;
    model.visit_weights("", &mut |_, w| {
        let s: Vec<f64> = g[l]
            .iter()
            .zip(w.raw.value().iter())
            .map(|(g, w)| (g * *w as f64).abs())
            .collect();
        l += 1;
        scores.push(s);
    });
    let total: f64 = scores.iter().flatten().sum();
    if total > 0.0 {
        scores.iter_mut().flatten().for_each(|s| *s /= total);
    }
    scores
}

impl Method for Snip {
    fn name(&self) -> &'static str {
        "snip"
    }

    fn attach(&mut self, model: &mut dyn Module<f32>) -> Result<()> {
        self.layers = self.prune.attach_masks(model)?;
        Ok(())
    }

    /// Scores and prunes once, before the first step.
    fn init(&mut self, model: &mut dyn Module<f32>, data: &InitData) -> Result<()> {
        let batches = data.batches(self.options.score_batches);
        let scores = if self.options.snip_other_init {
            let mut other = (data.fresh_model)(self.seed ^ OTHER_INIT_SEED)?;
            snip_scores(other.as_mut(), &batches)
        } else {
            snip_scores(model, &batches)
        };
        self.prune.prune(model, &self.layers, &scores, &[])
    }
}
