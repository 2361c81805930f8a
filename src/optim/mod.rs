//! Optimisers. [`step`] is the one driver every optimiser goes through: it walks the model's
//! trainable parameters in a stable order, hands each its gradient, and enforces mask hygiene
//! (pruned entries get a zero gradient, zeroed optimiser state, and are re-zeroed after the
//! update) so momentum and weight decay can never revive a pruned weight.

pub mod sgd;

use std::collections::HashMap;

use crate::float::Float;
use crate::grads::Grads;
use crate::nn::Module;
use crate::tape::Tensor;

pub use sgd::{Sgd, SgdConfig};

/// A per-parameter update rule.
pub trait Optimizer<F: Float> {
    /// Updates `value` in place from its gradient. `name` keys the optimiser's state.
    fn update(&mut self, name: &str, value: &mut Tensor<F>, grad: &Tensor<F>);

    /// Zeroes the state (momentum, moments) of the entries where `mask` is 0.
    fn mask_state(&mut self, name: &str, mask: &Tensor<F>);

    /// Current learning rate (schedules set it every step or epoch).
    fn lr(&self) -> f64;
    fn set_lr(&mut self, lr: f64);
}

/// One optimisation step over every trainable parameter of `model` that has a gradient.
pub fn step<F: Float, O: Optimizer<F> + ?Sized>(opt: &mut O, model: &mut dyn Module<F>, grads: &Grads<F>) {
    let mut masks: HashMap<String, Tensor<F>> = HashMap::new();
    model.visit_weights("", &mut |name, w| {
        if let Some(mask) = w.transform.as_ref().and_then(|t| t.mask()) {
            masks.insert(name.to_string(), mask.clone());
        }
    });
    model.visit_mut("", &mut |name, p| {
        if !p.trainable() {
            return;
        }
        let Some(grad) = grads.of(p) else { return };
        match masks.get(name) {
            None => opt.update(name, p.value_mut(), grad),
            Some(mask) => {
                opt.update(name, p.value_mut(), &(grad * mask));
                opt.mask_state(name, mask);
                *p.value_mut() *= mask;
            }
        }
    });
}
