//! [`HardConcreteGate`]: L0 regularisation with hard-concrete gates (Louizos et al. 2018) as a
//! weight transform. One gate per group of weights — per input neuron of a Linear layer (a column
//! of its [out, in] weight) or per output channel of a convolution — so L0 prunes whole neurons or
//! filters. The effective weight is z * W with z broadcast over the group.
//!
//! The gate parameters `log_alpha` are a trainable parameter named `{weight}_log_alpha`, stored in
//! the broadcastable shape ([1, in] for [`GateAxis::Input`], [C_out, 1, ...] for
//! [`GateAxis::Output`], the weight's shape for the unstructured [`GateAxis::Weight`]). In
//! training mode every `apply` draws a fresh gate sample with u ~ U(1e-6, 1 - 1e-6) from the
//! gate's own seeded generator (one sample per forward pass,
//! shared by the whole batch, as the authors' `L0Dense.sample_weights`); in evaluation mode the
//! deterministic test-time gate is used; the gate follows the model's mode
//! (`Module::set_training` reaches it through its `Weight`). `optim::step` calls
//! [`HardConcreteGate::clamp_log_alpha`] after each optimiser step (through
//! `WeightTransform::project`; the authors' `constrain_parameters`).

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::float::Float;
use crate::nn::WeightTransform;
use crate::ops::sparsity::HardConcrete;
use crate::param::Param;
use crate::rng::{Rng, uniform};
use crate::tape::{Tape, Tensor, Var};

/// Which weight dimension carries one gate per index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateAxis {
    /// Dimension 1: input neurons of a Linear weight [out, in] (input channels of a conv).
    Input,
    /// Dimension 0: output channels / output neurons.
    Output,
    /// One gate per weight entry (unstructured L0; log_alpha has the weight's shape).
    Weight,
}

/// Noise bounds of the authors' code (`epsilon = 1e-6` in `l0_layers.py`): u never reaches 0 or 1.
const NOISE_EPS: f64 = 1e-6;
/// The range log_alpha is kept in, [ln 1e-2, ln 1e2] (the authors' `constrain_parameters`).
pub fn log_alpha_range() -> (f64, f64) {
    (1e-2f64.ln(), 1e2f64.ln())
}

/// L0 hard-concrete gates on one weight.
pub struct HardConcreteGate<F: Float> {
    log_alpha: Param<F>,
    /// Distribution parameters (Louizos et al. defaults).
    pub params: HardConcrete,
    training: bool,
    group_size: usize,
    rng: Mutex<Rng>,
    /// When set: the training step whose noise the next sample draws (see [`Self::set_clock`]).
    clock: Option<Arc<AtomicU64>>,
}

impl<F: Float> HardConcreteGate<F> {
    /// Gates along `axis` of a weight of shape `weight`, with initial drop rate `drop_rate`
    /// (log_alpha = ln(1 - p) - ln p; the paper uses p = 0.5, and 0.2 for the first MLP layer).
    /// `rng` supplies the training noise (derive it from the run seed). Starts in training mode.
    pub fn new(weight: &[usize], axis: GateAxis, drop_rate: f64, rng: Rng) -> Self {
        assert!(
            drop_rate > 0.0 && drop_rate < 1.0,
            "HardConcreteGate: initial drop rate {drop_rate} must be in (0, 1)"
        );
        let shape = match axis {
            GateAxis::Weight => weight.to_vec(),
            GateAxis::Output | GateAxis::Input => {
                let dim = usize::from(axis == GateAxis::Input);
                assert!(
                    weight.len() > dim,
                    "HardConcreteGate: weight shape {weight:?} has no dimension {dim} for {axis:?} gates"
                );
                let mut shape = vec![1; weight.len()];
                shape[dim] = weight[dim];
                shape
            }
        };
        let gates = shape.iter().product::<usize>();
        let log_alpha = HardConcrete::log_alpha_for_drop_rate(drop_rate);
        HardConcreteGate {
            log_alpha: Param::new(Tensor::from_elem(ndarray::IxDyn(&shape), F::c(log_alpha))),
            params: HardConcrete::default(),
            training: true,
            group_size: weight.iter().product::<usize>() / gates.max(1),
            rng: Mutex::new(rng),
            clock: None,
        }
    }

    /// Training (sampled gates) or evaluation (deterministic gates).
    pub fn set_training(&mut self, training: bool) {
        self.training = training;
    }

    pub fn training(&self) -> bool {
        self.training
    }

    /// The gate parameters.
    pub fn log_alpha(&self) -> &Param<F> {
        &self.log_alpha
    }

    /// Ties the noise to a step counter: each training sample is then drawn from the position
    /// `2 x gates x step` of the generator's stream (one u64, two 32-bit words, per gate), the
    /// block step `step` would use if every step drew once. The noise becomes a function of
    /// (seed, step) alone, so a resumed run (the counter restored from the method's state) draws
    /// the same gates as an uninterrupted one, whatever else drew in between.
    pub fn set_clock(&mut self, clock: Arc<AtomicU64>) {
        self.clock = Some(clock);
    }

    /// Number of weights each gate controls.
    pub fn group_size(&self) -> usize {
        self.group_size
    }

    /// The gate on `tape`: a fresh sample in training mode, the test-time gate otherwise.
    pub fn gate_on<'t>(&self, tape: &'t Tape<F>) -> Var<'t, F> {
        let log_alpha = tape.param(&self.log_alpha);
        if self.training {
            let u = {
                let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(clock) = &self.clock {
                    let words = 2 * self.log_alpha.len() as u128;
                    rng.set_word_pos(words * u128::from(clock.load(Ordering::Relaxed)));
                }
                self.log_alpha
                    .value()
                    .mapv(|_| F::c(uniform(&mut rng, NOISE_EPS, 1.0 - NOISE_EPS)))
            };
            log_alpha.hard_concrete(&u, &self.params)
        } else {
            log_alpha.hard_concrete_eval(&self.params)
        }
    }

    /// The test-time gate values (broadcastable shape).
    pub fn eval_gate(&self) -> Tensor<F> {
        let tape = Tape::new();
        let _no_grad = tape.no_grad();
        (*tape
            .param(&self.log_alpha)
            .hard_concrete_eval(&self.params)
            .value())
        .clone()
    }

    /// Expected number of open gates, sum_j P(z_j != 0) (differentiable in log_alpha).
    pub fn expected_open_gates<'t>(&self, tape: &'t Tape<F>) -> Var<'t, F> {
        tape.param(&self.log_alpha).l0_penalty(&self.params)
    }

    /// Per gate, P(z_j != 0) in log_alpha's (broadcastable) shape (differentiable).
    pub fn open_probabilities<'t>(&self, tape: &'t Tape<F>) -> Var<'t, F> {
        tape.param(&self.log_alpha).open_probability(&self.params)
    }

    /// Expected number of nonzero weights, group_size * sum_j P(z_j != 0): the L0 norm of the
    /// weight under the gates, which the authors' `_reg_w` multiplies by lambda (per weight).
    pub fn expected_l0<'t>(&self, tape: &'t Tape<F>) -> Var<'t, F> {
        self.expected_open_gates(tape)
            .mul_scalar(self.group_size as f64)
    }

    /// Clamps log_alpha to [ln 1e-2, ln 1e2]; call after every optimiser step.
    pub fn clamp_log_alpha(&mut self) {
        let (lo, hi) = log_alpha_range();
        let (lo, hi) = (F::c(lo), F::c(hi));
        self.log_alpha
            .value_mut()
            .mapv_inplace(|a| a.max(lo).min(hi));
    }
}

impl<F: Float> WeightTransform<F> for HardConcreteGate<F> {
    fn name(&self) -> &'static str {
        "l0"
    }

    fn apply<'t>(&self, raw: Var<'t, F>) -> Var<'t, F> {
        raw * self.gate_on(raw.tape())
    }

    /// The deterministic (test-time) effective weight.
    fn effective(&self, raw: &Tensor<F>) -> Tensor<F> {
        raw * &self.eval_gate()
    }

    fn visit<'a>(&'a self, weight: &str, f: &mut dyn FnMut(&str, &'a Param<F>)) {
        f(&format!("{weight}_log_alpha"), &self.log_alpha);
    }

    fn visit_mut(&mut self, weight: &str, f: &mut dyn FnMut(&str, &mut Param<F>)) {
        f(&format!("{weight}_log_alpha"), &mut self.log_alpha);
    }

    fn set_training(&mut self, training: bool) {
        HardConcreteGate::set_training(self, training);
    }

    /// The authors' `constrain_parameters`, after every optimiser step.
    fn project(&mut self) {
        self.clamp_log_alpha();
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
