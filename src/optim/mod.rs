//! Optimisers. [`step`] is the one driver every optimiser goes through: it walks the model's
//! trainable parameters in a stable order, resolves each one's [parameter group](groups) (its
//! learning rate and weight decay, or frozen), hands it its gradient, and enforces mask hygiene
//! (pruned entries get a zero gradient, zeroed optimiser state, and are re-zeroed after the
//! update) so momentum and weight decay can never revive a pruned weight.
//!
//! Learning-rate [schedules](schedule) set the optimiser's base rate with [`Optimizer::set_lr`];
//! group multipliers apply on top. Optimiser state round-trips through checkpoints with
//! [`Optimizer::state`] and [`load_state`].

pub mod adam;
pub mod groups;
pub mod schedule;
pub mod sgd;
pub mod state;

use std::collections::HashSet;

use crate::error::Result;
use crate::float::Float;
use crate::grads::Grads;
/// Re-exported: the optimisers and the `step` driver use it for mask hygiene.
pub use crate::nn::zero_pruned;
use crate::nn::{Module, Weight};
use crate::param::Param;
use crate::tape::Tensor;

pub use adam::{Adam, AdamConfig};
pub use groups::{Hyper, ParamGroup, ParamMatch};
pub use schedule::{LrSchedule, Schedule, ScheduleUnit, Warmup};
pub use sgd::{Sgd, SgdConfig};
pub use state::ParamShapes;

/// The optimisers `--optimizer` names.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// SGD with (Nesterov) momentum and L2 weight decay.
    Sgd,
    /// Adam with L2 weight decay.
    Adam,
    /// Adam with decoupled weight decay (Loshchilov & Hutter).
    Adamw,
}

/// A per-parameter update rule with per-parameter state keyed by parameter name.
pub trait Optimizer<F: Float> {
    /// Updates `value` in place from its gradient with the hyper-parameters of its group.
    fn update(&mut self, name: &str, value: &mut Tensor<F>, grad: &Tensor<F>, hyper: Hyper);

    /// Zeroes the state (momentum, moments) of the entries where `mask` is 0.
    fn mask_state(&mut self, name: &str, mask: &Tensor<F>);

    /// [`Optimizer::update`] under a mask, with mask hygiene: the gradient is masked (pruned
    /// entries get zero), the update runs, then the state and the value are masked. An optimiser
    /// may fuse these passes; the result must be the same bits as this sequence.
    fn update_masked(
        &mut self,
        name: &str,
        value: &mut Tensor<F>,
        grad: &Tensor<F>,
        hyper: Hyper,
        mask: &Tensor<F>,
    ) {
        update_masked_in_passes(self, name, value, grad, hyper, mask);
    }

    /// Current base learning rate (schedules set it every step or epoch).
    fn lr(&self) -> f64;
    fn set_lr(&mut self, lr: f64);

    /// Weight decay of parameters whose group does not set one.
    fn weight_decay(&self) -> f64;

    /// The parameter groups, first match wins (see [`groups`]).
    fn groups(&self) -> &[ParamGroup];
    fn groups_mut(&mut self) -> &mut Vec<ParamGroup>;

    /// Replaces the parameter groups after checking their values.
    fn set_groups(&mut self, groups: Vec<ParamGroup>) -> Result<()> {
        groups::validate(&groups)?;
        *self.groups_mut() = groups;
        Ok(())
    }

    /// The hyper-parameters `name` is updated with, or `None` if its group is frozen.
    fn hyper_for(&self, name: &str, shape: &[usize]) -> Option<Hyper> {
        let defaults = Hyper {
            lr: self.lr(),
            weight_decay: self.weight_decay(),
        };
        groups::resolve(self.groups(), name, shape, defaults)
    }

    /// All per-parameter state as `{param}.{slot}` entries, by parameter in name order, then by
    /// slot name (see [`state`]).
    fn state(&self) -> Vec<(String, Tensor<F>)>;

    /// Replaces all state by `entries`, checked against `params` (the model's trainable
    /// parameters); on error nothing changes and the message names every bad entry.
    fn load_state(&mut self, entries: &[(String, Tensor<F>)], params: &ParamShapes) -> Result<()>;
}

/// One optimisation step over every trainable parameter of `model` that has a gradient.
pub fn step<F: Float, O: Optimizer<F> + ?Sized>(
    opt: &mut O,
    model: &mut dyn Module<F>,
    grads: &Grads<F>,
) {
    // Masked weights first. A raw weight and its mask are disjoint fields of one `Weight`, so the
    // mask is borrowed where it lives instead of being copied every step.
    let mut masked: HashSet<String> = HashSet::new();
    model.visit_weights_mut("", &mut |name, w| {
        let Weight { raw, transform, .. } = w;
        if let Some(mask) = transform.as_ref().and_then(|t| t.mask()) {
            masked.insert(name.to_string());
            // The masked update ends by zeroing the pruned entries: the next forward pass may
            // use the raw weight as its own masked value.
            if update_param(opt, name, raw, grads, Some(mask)) {
                w.note_pruned_zeroed();
            }
        }
    });
    model.visit_mut("", &mut |name, p| {
        if !masked.contains(name) {
            update_param(opt, name, p, grads, None);
        }
    });
    // Transforms whose parameters have a domain (L0's log_alpha range) are put back in it.
    model.visit_weights_mut("", &mut |_, w| {
        if let Some(t) = &mut w.transform {
            t.project();
        }
    });
}

/// Updates one parameter (if trainable, not frozen, and given a gradient) and says whether it did.
/// With a mask, the pruned entries get a zero gradient, zeroed optimiser state, and are re-zeroed
/// after the update.
fn update_param<F: Float, O: Optimizer<F> + ?Sized>(
    opt: &mut O,
    name: &str,
    p: &mut Param<F>,
    grads: &Grads<F>,
    mask: Option<&Tensor<F>>,
) -> bool {
    if !p.trainable() {
        return false;
    }
    let Some(grad) = grads.of(p) else {
        return false;
    };
    let Some(hyper) = opt.hyper_for(name, p.shape()) else {
        return false;
    };
    assert_eq!(
        grad.shape(),
        p.shape(),
        "optim::step: gradient of `{name}` has the wrong shape"
    );
    match mask {
        None => opt.update(name, p.value_mut(), grad, hyper),
        Some(mask) => opt.update_masked(name, p.value_mut(), grad, hyper, mask),
    }
    true
}

/// [`Optimizer::update_masked`] as separate passes: mask the gradient, update, mask the state,
/// mask the value. The reference a fused implementation must match bit for bit.
pub fn update_masked_in_passes<F: Float, O: Optimizer<F> + ?Sized>(
    opt: &mut O,
    name: &str,
    value: &mut Tensor<F>,
    grad: &Tensor<F>,
    hyper: Hyper,
    mask: &Tensor<F>,
) {
    let mut grad = grad.clone();
    zero_pruned(&mut grad, mask);
    opt.update(name, value, &grad, hyper);
    opt.mask_state(name, mask);
    zero_pruned(value, mask);
}

/// The shapes of `model`'s trainable parameters, by name.
pub fn param_shapes<F: Float, M: Module<F> + ?Sized>(model: &M) -> ParamShapes {
    let mut shapes = ParamShapes::new();
    model.visit("", &mut |name, p| {
        if p.trainable() {
            shapes.insert(name.to_string(), p.shape().to_vec());
        }
    });
    shapes
}

/// Loads optimiser state saved by [`Optimizer::state`] for `model`'s parameters.
pub fn load_state<F: Float, O: Optimizer<F> + ?Sized, M: Module<F> + ?Sized>(
    opt: &mut O,
    model: &M,
    entries: &[(String, Tensor<F>)],
) -> Result<()> {
    opt.load_state(entries, &param_shapes(model))
}
