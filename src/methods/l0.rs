//! L0 regularisation with hard-concrete gates (Louizos, Welling & Kingma, ICLR 2018),
//! `--method l0`.
//!
//! Every sparsified weight gets a [`HardConcreteGate`]: one gate per input neuron of a Linear
//! weight (a column of [out, in]) and per output channel of a convolution (structured, the
//! paper's experiments), or one per weight (`--l0-gates weight`). The loss is the paper's eq. 3
//! with the hard-concrete expectation of eq. 12 as the authors' `L0MLP.regularization` computes
//! it: cross-entropy + sum_l sum_j P(z_j != 0) (lambda_l |g_j| / N + (c / 2) sum_{w in g_j} w^2),
//! N the number of training images, |g_j| the weights a gate controls, c the authors'
//! `prior_prec` / N (`_reg_w` in the authors' `l0_layers.py`). lambda may differ per layer
//! (the paper's "L0-sep"). log_alpha starts at ln(1 - p) - ln p from a drop rate p (per
//! layer), is clamped to [ln 1e-2, ln 1e2] after every
//! step (`WeightTransform::project`), has no weight decay, and in evaluation the deterministic gate
//! min(1, max(0, sigmoid(log_alpha)(zeta - gamma) + gamma)) is used. `finish` bakes that gate
//! into the weights with exact +0.0 for every closed gate, so the export has the removed neurons
//! and channels as zero columns / filters; the summary gives the kept groups per layer as the
//! paper's tables do (`20-25-45-462`).
//!
//! The gate noise of step t is a function of (seed, layer, t) (`HardConcreteGate::set_clock`),
//! so a resumed run draws the same gates. `docs/methods.md` ("L0") has the paper-vs-code table.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::methods::options::{TrainContext, clap_defaults};
use crate::methods::plugin::{InitData, Method, MethodState, Plugin, StepInfo};
use crate::methods::prune::{Prunable, prunable_weights};
use crate::nn::{Module, Weight, zero_pruned};
use crate::optim::{ParamGroup, ParamMatch};
use crate::rng::derived;
use crate::sparsity::{GateAxis, HardConcreteGate};
use crate::tape::{Tape, Var};

/// `--l0-gates`: what one gate switches off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum L0Gates {
    /// Input neurons of Linear layers, output channels of convolutions (structured; the paper).
    Neuron,
    /// Every weight on its own (unstructured).
    Weight,
}

/// L0's flags.
#[derive(Args, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[group(skip)]
#[serde(default)]
pub struct L0Options {
    /// L0: neuron (input neurons of linear layers, output channels of convolutions) | weight.
    #[arg(long, value_enum, default_value_t = L0Gates::Neuron)]
    pub l0_gates: L0Gates,
    /// L0: lambda of the expected-L0 penalty in units of 1/N (N training images; the paper's
    /// 0.1/N is 0.1): one value, or one per prunable layer, comma-separated ("L0-sep").
    #[arg(long, value_delimiter = ',', default_values_t = vec![0.1])]
    pub l0_lambda: Vec<f64>,
    /// L0: initial drop rate p of the gates, log_alpha = ln(1-p) - ln p: one value or one per
    /// prunable layer (the paper's MLP: 0.2,0.5,0.5).
    #[arg(long, value_delimiter = ',', default_values_t = vec![0.5])]
    pub l0_drop_rate: Vec<f64>,
    /// L0: weight c of the L2 prior (c/2) sum_j P(z_j != 0) sum w^2 on the gated weights (the
    /// authors' `_reg_w` prior precision / N; 0: none, leave --weight-decay to the optimiser).
    #[arg(long, default_value_t = 0.0)]
    pub l0_l2: f64,
    /// L0: learning-rate multiplier of log_alpha (the authors: 1 over ~120k Adam steps; a
    /// 10-epoch run here has ~1k, and Adam moves a parameter by at most ~lr per step).
    #[arg(long, default_value_t = DEFAULT_GATE_LR_SCALE)]
    pub l0_lr_scale: f64,
}

/// The default `--l0-lr-scale` (see `docs/methods.md`, "L0", for the sweep behind it).
pub const DEFAULT_GATE_LR_SCALE: f64 = 10.0;

impl Default for L0Options {
    fn default() -> Self {
        clap_defaults()
    }
}

/// What the gates kept in one layer (filled by `finish`, reported by `summary`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct L0Layer {
    pub name: String,
    /// `input` (neurons), `output` (channels) or `weight`.
    pub gates_on: String,
    pub gates: usize,
    /// Gates whose deterministic value is > 0 after training.
    pub open: usize,
}

/// The state a checkpoint keeps: the number of training images (the 1/N of the penalty) and the
/// step the next gate sample belongs to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct L0State {
    train_images: usize,
    next_step: u64,
}

/// The L0 method.
pub struct L0 {
    options: L0Options,
    seed: u64,
    first_layer_dense: bool,
    last_layer_dense: bool,
    layers: Vec<Prunable>,
    /// lambda per prunable layer (0 for a layer kept dense).
    lambdas: Vec<f64>,
    /// The gate axis per prunable layer (`None`: kept dense).
    axes: Vec<Option<GateAxis>>,
    state: L0State,
    clock: Arc<AtomicU64>,
    kept: Vec<L0Layer>,
}

/// RNG stream of the gate noise (layer l uses stream + l).
const GATE_NOISE_STREAM: u64 = 0x4c30_0000;

impl Plugin<TrainContext> for L0 {
    type Options = L0Options;
    const SHARED: &'static [&'static str] = &["first_layer_dense", "last_layer_dense"];

    fn build(o: &L0Options, context: &TrainContext) -> Result<Self> {
        if o.l0_lambda.is_empty() || o.l0_lambda.iter().any(|l| !(*l >= 0.0 && l.is_finite())) {
            return Err(Error::invalid(format!(
                "--l0-lambda must be non-negative numbers, got {:?}",
                o.l0_lambda
            )));
        }
        if o.l0_drop_rate.is_empty() || o.l0_drop_rate.iter().any(|p| !(*p > 0.0 && *p < 1.0)) {
            return Err(Error::invalid(format!(
                "--l0-drop-rate must be in (0, 1), got {:?}",
                o.l0_drop_rate
            )));
        }
        if !(o.l0_l2 >= 0.0 && o.l0_l2.is_finite()) {
            return Err(Error::invalid(format!(
                "--l0-l2 must be a non-negative number, got {}",
                o.l0_l2
            )));
        }
        if !(o.l0_lr_scale > 0.0 && o.l0_lr_scale.is_finite()) {
            return Err(Error::invalid(format!(
                "--l0-lr-scale must be a positive number, got {}",
                o.l0_lr_scale
            )));
        }
        Ok(L0 {
            options: o.clone(),
            seed: context.seed,
            first_layer_dense: context.shared.first_layer_dense,
            last_layer_dense: context.shared.last_layer_dense,
            layers: Vec::new(),
            lambdas: Vec::new(),
            axes: Vec::new(),
            state: L0State::default(),
            clock: Arc::new(AtomicU64::new(0)),
            kept: Vec::new(),
        })
    }
}

/// One value per sparsified layer from a flag's list (one value for all, or one per layer).
fn per_layer(flag: &str, values: &[f64], layers: &[Prunable]) -> Result<Vec<f64>> {
    let sparsified = layers.iter().filter(|l| l.sparsified).count();
    if values.len() != 1 && values.len() != sparsified {
        return Err(Error::invalid(format!(
            "{flag} has {} values, but the model has {sparsified} gated layers (give one value, or one per layer)",
            values.len()
        )));
    }
    let mut next = 0;
    Ok(layers
        .iter()
        .map(|l| {
            if !l.sparsified {
                return 0.0;
            }
            let v = values[next.min(values.len() - 1)];
            next += 1;
            v
        })
        .collect())
}

/// The gate axis of a weight: per-input-neuron for matrices, per-output-channel for kernels.
fn axis_for(gates: L0Gates, shape: &[usize]) -> GateAxis {
    match gates {
        L0Gates::Weight => GateAxis::Weight,
        L0Gates::Neuron if shape.len() > 2 => GateAxis::Output,
        L0Gates::Neuron => GateAxis::Input,
    }
}

pub(crate) fn gate_of(w: &Weight<f32>) -> Option<&HardConcreteGate<f32>> {
    w.transform.as_ref()?.as_any().downcast_ref()
}

/// `input`, `output` or `weight`.
fn axis_name(axis: GateAxis) -> &'static str {
    match axis {
        GateAxis::Input => "input",
        GateAxis::Output => "output",
        GateAxis::Weight => "weight",
    }
}

impl L0 {
    /// The gates kept per layer (after `finish`).
    pub fn kept(&self) -> &[L0Layer] {
        &self.kept
    }

    /// The paper's architecture string: open gates per gated layer, `-`-joined.
    pub fn architecture(&self) -> String {
        let counts: Vec<String> = self.kept.iter().map(|l| l.open.to_string()).collect();
        counts.join("-")
    }
}

impl Method for L0 {
    fn name(&self) -> &'static str {
        "l0"
    }

    fn attach(&mut self, model: &mut dyn Module<f32>) -> Result<()> {
        let layers = prunable_weights(model, self.first_layer_dense, self.last_layer_dense)?;
        self.lambdas = per_layer("--l0-lambda", &self.options.l0_lambda, &layers)?;
        let drop_rates = per_layer("--l0-drop-rate", &self.options.l0_drop_rate, &layers)?;
        let gates = self.options.l0_gates;
        self.axes = layers
            .iter()
            .map(|l| l.sparsified.then(|| axis_for(gates, &l.shape)))
            .collect();
        let (seed, clock, axes) = (self.seed, &self.clock, &self.axes);
        let mut l = 0;
        model.visit_weights_mut("", &mut |_, w| {
            let layer = &layers[l];
            if let Some(axis) = axes[l] {
                let rng = derived(seed, GATE_NOISE_STREAM + l as u64);
                let mut gate = HardConcreteGate::new(&layer.shape, axis, drop_rates[l], rng);
                gate.set_clock(clock.clone());
                gate.set_training(w.is_training());
                w.transform = Some(Box::new(gate));
            }
            l += 1;
        });
        self.layers = layers;
        Ok(())
    }

    /// The number of training images N of the penalty's 1/N.
    fn init(&mut self, _model: &mut dyn Module<f32>, data: &InitData) -> Result<()> {
        self.state.train_images = data.indices.len();
        Ok(())
    }

    /// log_alpha gets no weight decay (its only prior is the L0 penalty) and its own learning
    /// rate (`--l0-lr-scale`).
    fn param_groups(&self) -> Vec<ParamGroup> {
        vec![
            ParamGroup::new(ParamMatch::Suffix("_log_alpha".into()))
                .with_weight_decay(0.0)
                .with_lr_scale(self.options.l0_lr_scale),
        ]
    }

    /// sum_l sum_j P(z_j != 0) (lambda_l |g_j| / N + (c/2) sum_{w in g_j} w^2): eq. 12's
    /// expected L0 norm, scaled by 1/N as `L0MLP.regularization` scales it, and the authors'
    /// gate-weighted L2 prior (`_reg_w`) with c = their precision / N.
    fn regulariser<'t>(
        &mut self,
        model: &dyn Module<f32>,
        tape: &'t Tape<f32>,
        _info: &StepInfo,
    ) -> Option<Var<'t, f32>> {
        let n = self.state.train_images.max(1) as f64;
        let prior = self.options.l0_l2;
        let mut total: Option<Var<'t, f32>> = None;
        let mut l = 0;
        model.visit_weights("", &mut |_, w| {
            let lambda = self.lambdas.get(l).copied().unwrap_or(0.0);
            l += 1;
            let Some(gate) = gate_of(w) else { return };
            let mut term = gate.expected_l0(tape).mul_scalar(lambda / n);
            if prior > 0.0 {
                let raw = tape.param(&w.raw);
                let gate_shape = gate.log_alpha().shape().to_vec();
                let axes: Vec<usize> = (0..gate_shape.len())
                    .filter(|&d| gate_shape[d] == 1)
                    .collect();
                let group_sq = (raw * raw).sum_axes(&axes, true);
                let l2 = (gate.open_probabilities(tape) * group_sq).sum();
                term = term + l2.mul_scalar(0.5 * prior);
            }
            total = Some(match total {
                Some(t) => t + term,
                None => term,
            });
        });
        total
    }

    /// The next step's gate noise (see `HardConcreteGate::set_clock`).
    fn after_step(&mut self, _model: &mut dyn Module<f32>, info: &StepInfo) -> Result<()> {
        self.state.next_step = info.step as u64 + 1;
        self.clock.store(self.state.next_step, Ordering::Relaxed);
        Ok(())
    }

    /// Bakes the deterministic gates into the weights: W <- z W, +0.0 wherever z = 0, and records
    /// the open gates per layer.
    fn finish(&mut self, model: &mut dyn Module<f32>) -> Result<Option<crate::methods::FixUp>> {
        let mut kept = Vec::new();
        let mut l = 0;
        model.visit_weights_mut("", &mut |name, w| {
            let axis = self.axes.get(l).copied().flatten();
            l += 1;
            let (Some(axis), Some(gate)) = (axis, gate_of(w)) else {
                return;
            };
            let z = gate.eval_gate();
            kept.push(L0Layer {
                name: name.to_string(),
                gates_on: axis_name(axis).to_string(),
                gates: z.len(),
                open: z.iter().filter(|&&g| g > 0.0).count(),
            });
            let open = z.mapv(|g| if g > 0.0 { 1.0f32 } else { 0.0 });
            let open = open
                .broadcast(w.raw.shape())
                .expect("a gate broadcasts over its weight")
                .to_owned();
            let mut effective = w.effective();
            zero_pruned(&mut effective, &open);
            w.raw.set_value(effective);
            w.transform = None;
        });
        self.kept = kept;
        Ok(None)
    }

    /// The kept groups per layer (`architecture`, the paper's `20-25-45-462`) and the exact
    /// weight sparsity of the baked model over the gated layers.
    fn summary(&self, model: &dyn Module<f32>) -> serde_json::Value {
        let (mut zeros, mut total) = (0usize, 0usize);
        model.visit_weights("", &mut |name, w| {
            if self.kept.iter().any(|k| k.name == name) {
                zeros += w.raw.value().iter().filter(|v| **v == 0.0).count();
                total += w.raw.len();
            }
        });
        serde_json::json!({
            "gates": self.options.l0_gates,
            "architecture": self.architecture(),
            "layers": self.kept,
            "gated_weight_sparsity": zeros as f64 / total.max(1) as f64,
            "train_images": self.state.train_images,
        })
    }

    fn state(&self) -> MethodState {
        MethodState::of(&self.state)
    }

    fn load_state(&mut self, state: &MethodState) -> Result<()> {
        self.state = state.read("l0")?;
        self.clock.store(self.state.next_step, Ordering::Relaxed);
        Ok(())
    }
}
