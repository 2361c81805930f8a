//! The reparameterisation hook: a weight-bearing layer never uses its raw weight directly but asks
//! its [`Weight`] for the *effective* weight, which a [`WeightTransform`] (soft-threshold, mask,
//! L0 gate, ...) may compute from the raw one. Sparsification methods attach transforms through
//! [`Module::visit_weights_mut`](crate::nn::Module::visit_weights_mut) without touching layer code.

use std::any::Any;
use std::cell::Cell;
use std::sync::Arc;

use rayon::prelude::*;

use crate::float::Float;
use crate::kernels::parallel::{PARALLEL_CHUNK, worth_splitting};
use crate::param::Param;
use crate::tape::{Tensor, Var};

/// How a layer's effective weight is computed from its raw weight.
pub trait WeightTransform<F: Float>: Any {
    /// Short name for reports (`"str"`, `"mask"`, ...).
    fn name(&self) -> &'static str;

    /// The effective weight, recorded on `raw`'s tape.
    fn apply<'t>(&self, raw: Var<'t, F>) -> Var<'t, F>;

    /// [`WeightTransform::apply`] to a raw weight known to be +0.0 wherever
    /// [`WeightTransform::mask`] is 0 ([`Weight`] knows when: after the optimiser's masked update
    /// or [`Weight::reapply_mask`], until the raw weight or the mask changes).
    /// A fixed mask then passes the raw weight through without computing W ⊙ m (same bits). The
    /// default is `apply`.
    fn apply_prezeroed<'t>(&self, raw: Var<'t, F>) -> Var<'t, F> {
        self.apply(raw)
    }

    /// The effective weight as a plain array (no tape): reports and export.
    fn effective(&self, raw: &Tensor<F>) -> Tensor<F>;

    /// The transform's own parameters and buffers, named after the raw weight they belong to:
    /// `{weight}_{suffix}`, e.g. `fc1.weight_threshold` or `fc1.weight_mask` (PyTorch's pruning
    /// utilities use the same `weight_mask` convention).
    fn visit<'a>(&'a self, weight: &str, f: &mut dyn FnMut(&str, &'a Param<F>)) {
        let _ = (weight, f);
    }

    fn visit_mut(&mut self, weight: &str, f: &mut dyn FnMut(&str, &mut Param<F>)) {
        let _ = (weight, f);
    }

    /// The magnitude threshold the transform currently applies (STR's g(s), FCPTS's t), if any;
    /// shown in per-layer reports.
    fn threshold(&self) -> Option<f64> {
        None
    }

    /// Which raw-weight entries are pruned (1 kept, 0 pruned), if the transform is a fixed mask.
    /// Optimisers zero the gradient and the state of pruned entries, and the raw weight is
    /// re-masked after every step, so momentum and weight decay cannot revive them.
    fn mask(&self) -> Option<&Tensor<F>> {
        None
    }

    /// Follows the model's mode: training (e.g. sampled L0 gates) or evaluation (deterministic
    /// gates). [`Weight::set_training`] forwards it; `Module::set_training` reaches every weight.
    fn set_training(&mut self, training: bool) {
        let _ = training;
    }

    /// Called by `optim::step` after every optimiser step: puts the transform's own parameters
    /// back in their domain (the L0 gates clamp `log_alpha`, as the authors'
    /// `constrain_parameters`).
    fn project(&mut self) {}

    /// The mask's shared buffer (the values [`WeightTransform::mask`] returns), for caches that
    /// must notice a new mask: a mask is only ever replaced or copied on write while shared, so a
    /// holder of this `Arc` sees any change as a different pointer (`nn::sparse`).
    fn mask_shared(&self) -> Option<Arc<Tensor<F>>> {
        None
    }

    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// A prunable weight: the raw parameter and an optional transform.
pub struct Weight<F: Float> {
    pub raw: Param<F>,
    pub transform: Option<Box<dyn WeightTransform<F>>>,
    /// How many times per example each weight entry is multiplied in the last forward pass
    /// (1 for a Linear layer on [N, in], H_out * W_out for a convolution, T for a recurrent
    /// weight over T steps). Layers record it; FLOP counts use it.
    uses_per_example: Cell<usize>,
    /// Training or evaluation mode (see [`WeightTransform::set_training`]).
    training: bool,
    /// Keep the gradient with respect to the effective weight on every tape this weight is used
    /// on (see [`Weight::effective_grad`]).
    pub retain_effective_grad: bool,
    /// The tape position of the effective weight of the last forward pass.
    effective_var: Cell<Option<usize>>,
    /// Sparse-kernel setting and cached pattern (see `nn::sparse`).
    pub(crate) sparse: crate::nn::sparse::SparseState<F>,
    /// The raw weight (its identity, since `raw` is a public field that can be replaced, and its
    /// [`Param::version`]) whose pruned entries were last set to +0.0, and the mask they were
    /// pruned by (held, so a changed mask is a different pointer). While all still match, the
    /// forward pass skips the mask's multiply ([`WeightTransform::apply_prezeroed`]). Boxed: a
    /// `Weight` sits in enums of layers.
    pruned_zeroed_at: Option<Box<PrunedZeroed<F>>>,
    /// When `Some`, Linear and Conv2d layers add the squared norms of their inputs to it on
    /// every forward pass (activation-aware pruning scores such as Wanda's; see
    /// [`InputNorms`](crate::nn::input_norms::InputNorms)).
    pub input_norms: Option<crate::nn::input_norms::InputNorms>,
}

impl<F: Float> Weight<F> {
    pub fn new(raw: Tensor<F>) -> Self {
        Weight {
            raw: Param::new(raw),
            transform: None,
            uses_per_example: Cell::new(1),
            training: true,
            retain_effective_grad: false,
            effective_var: Cell::new(None),
            sparse: Default::default(),
            pruned_zeroed_at: None,
            input_norms: None,
        }
    }

    /// Training or evaluation mode, passed on to the transform.
    pub fn set_training(&mut self, training: bool) {
        self.training = training;
        if let Some(t) = &mut self.transform {
            t.set_training(training);
        }
    }

    pub fn is_training(&self) -> bool {
        self.training
    }

    /// Records how often per example the weight was applied (see the field's documentation).
    pub fn record_uses(&self, uses_per_example: usize) {
        self.uses_per_example.set(uses_per_example);
    }

    /// Multiply-accumulates per example with every entry dense: entries x uses per example.
    pub fn dense_macs(&self) -> usize {
        self.raw.len() * self.uses_per_example.get()
    }

    /// The weight the layer computes with, on `tape`.
    pub fn on<'t>(&self, tape: &'t crate::tape::Tape<F>) -> Var<'t, F> {
        let raw = tape.param(&self.raw);
        let effective = match &self.transform {
            Some(t) if self.pruned_still_zeroed(t.as_ref()) => t.apply_prezeroed(raw),
            Some(t) => t.apply(raw),
            None => raw,
        };
        if self.retain_effective_grad && effective.requires_grad() {
            tape.retain_grad(effective);
        }
        self.effective_var.set(Some(effective.id()));
        effective
    }

    /// The gradient with respect to the effective weight of the last forward pass (with
    /// [`Weight::retain_effective_grad`] set before it): for a masked weight W * m, the dense
    /// gradient dL/d(W * m), nonzero at pruned entries too, which the raw weight's gradient
    /// (dL/dW = m * dL/d(W * m)) is not. `None` if it was not kept.
    pub fn effective_grad<'g>(&self, grads: &'g crate::grads::Grads<F>) -> Option<&'g Tensor<F>> {
        grads.of_var_id(self.effective_var.get()?)
    }

    /// The effective weight as a plain array.
    pub fn effective(&self) -> Tensor<F> {
        match &self.transform {
            Some(t) => t.effective(self.raw.value()),
            None => self.raw.value().clone(),
        }
    }

    /// The raw weight under `name` (its full parameter name), then the transform's parameters.
    pub fn visit<'a>(&'a self, name: &str, f: &mut dyn FnMut(&str, &'a Param<F>)) {
        f(name, &self.raw);
        if let Some(t) = &self.transform {
            t.visit(name, f);
        }
    }

    pub fn visit_mut(&mut self, name: &str, f: &mut dyn FnMut(&str, &mut Param<F>)) {
        f(name, &mut self.raw);
        if let Some(t) = &mut self.transform {
            t.visit_mut(name, f);
        }
    }

    /// Sets pruned raw entries back to exactly +0.0 (after an optimiser step, or after a method
    /// changed the mask): a select ([`zero_pruned`]), so negative entries do not
    /// become -0.0.
    pub fn reapply_mask(&mut self) {
        if let Some(mask) = self.transform.as_ref().and_then(|t| t.mask_shared()) {
            zero_pruned(self.raw.value_mut(), &mask);
            self.note_pruned_zeroed();
        }
    }

    /// Records that the raw weight, as it is now, is +0.0 wherever the transform's mask is 0 (the
    /// caller has just made it so: [`Weight::reapply_mask`], or the optimiser's masked update,
    /// whose contract ends with the same select). Any later change to the raw weight or the mask
    /// voids the record.
    pub(crate) fn note_pruned_zeroed(&mut self) {
        let mask = self.transform.as_ref().and_then(|t| t.mask_shared());
        self.pruned_zeroed_at = mask.map(|mask| {
            Box::new(PrunedZeroed {
                raw: self.raw.id(),
                version: self.raw.version(),
                mask,
            })
        });
    }

    /// Whether the record of [`Weight::note_pruned_zeroed`] still holds for `transform`.
    fn pruned_still_zeroed(&self, transform: &dyn WeightTransform<F>) -> bool {
        match (self.pruned_zeroed_at.as_deref(), transform.mask_shared()) {
            (Some(noted), Some(mask)) => {
                noted.raw == self.raw.id()
                    && noted.version == self.raw.version()
                    && Arc::ptr_eq(&noted.mask, &mask)
            }
            _ => false,
        }
    }
}

/// See [`Weight::note_pruned_zeroed`].
struct PrunedZeroed<F: Float> {
    raw: crate::param::ParamId,
    version: u64,
    mask: Arc<Tensor<F>>,
}

/// Sets the entries of `t` where `mask` is 0 to +0.0 (others are multiplied by the mask). A select,
/// not `t * mask`: that would leave -0.0 for negative entries and NaN for infinite ones.
pub fn zero_pruned<F: Float>(t: &mut Tensor<F>, mask: &Tensor<F>) {
    let keep = |v: &mut F, m: F| *v = if m == F::zero() { F::zero() } else { *v * m };
    let same_shape = t.shape() == mask.shape();
    // Contiguous operands (every weight and optimiser buffer): a slice loop the compiler
    // vectorises; an `ndarray::Zip` here measured 14% of a 95%-sparse LeNet-300 step.
    // Large ones are split over threads in fixed chunks (elementwise: same bits).
    if let (true, Some(m), Some(t)) = (same_shape, mask.as_slice(), t.as_slice_mut()) {
        let run = |t: &mut [F], m: &[F]| t.iter_mut().zip(m).for_each(|(v, &m)| keep(v, m));
        if worth_splitting(t.len()) {
            t.par_chunks_mut(PARALLEL_CHUNK)
                .zip(m.par_chunks(PARALLEL_CHUNK))
                .for_each(|(t, m)| run(t, m));
        } else {
            run(t, m);
        }
        return;
    }
    ndarray::Zip::from(t).and(mask).for_each(|v, &m| keep(v, m));
}
