//! The [`Module`] trait: a forward pass plus a walk over named parameters.
//!
//! Names are PyTorch `state_dict` names (`features.0.weight`, `layer1.0.bn1.running_mean`), built
//! by each container prefixing its children, so checkpoints load into the same PyTorch model.

use crate::float::Float;
use crate::nn::weight::Weight;
use crate::param::Param;
use crate::tape::Var;

/// A layer or a model.
pub trait Module<F: Float> {
    /// The forward pass, recorded on the input's tape.
    fn forward<'t>(&mut self, x: Var<'t, F>) -> Var<'t, F>;

    /// Calls `f` with the full name and value of every parameter and buffer, in a stable order.
    fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(&str, &'a Param<F>));

    /// Like [`Module::visit`], mutably (optimisers, checkpoint loading).
    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<F>));

    /// Calls `f` with every weight that sparsification methods may reparameterise (Linear, Conv2d
    /// and recurrent weight matrices; not biases or batchnorm), named by its raw parameter's full
    /// name (for example `fc1.weight` or `rnn.weight_hh`).
    fn visit_weights_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Weight<F>)) {
        let _ = (prefix, f);
    }

    /// Immutable counterpart of [`Module::visit_weights_mut`] (reports).
    fn visit_weights<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(&str, &'a Weight<F>)) {
        let _ = (prefix, f);
    }

    /// Calls `f` for every weight stored as two low-rank factors W = second first (FastGRNN's
    /// W = W2 W1): the product's name (`rnn.W`), then the full names under which
    /// [`Module::visit_weights`] visits the factors, `first` [r, in] (`rnn.W1`) and `second`
    /// [out, r] (`rnn.W2`). Structured sparsity (low-rank STR) and rank reports use it;
    /// containers forward it to their children like the other visitors.
    fn visit_low_rank(&self, prefix: &str, f: &mut dyn FnMut(&str, &str, &str)) {
        let _ = (prefix, f);
    }

    /// Training mode (batch statistics, dropout, sampled gates) or evaluation mode. The default
    /// passes the mode to every weight (and so to its transform); layers with a mode of their
    /// own (batchnorm, dropout) and containers override it.
    fn set_training(&mut self, training: bool) {
        self.visit_weights_mut("", &mut |_, w| w.set_training(training));
    }

    /// Whether the module is in training mode. The default asks the weights (true when it has
    /// none, like a pooling layer, whose output does not depend on the mode).
    fn is_training(&self) -> bool {
        let mut training = true;
        self.visit_weights("", &mut |_, w| training &= w.is_training());
        training
    }
}

/// `prefix` + `name`, with a dot between them when `prefix` is not empty.
pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// The parameter walk of a layer made of `weight` and an optional `bias` (Linear, Conv2d):
/// `{prefix}.weight` (then its transform's parameters), then `{prefix}.bias`, PyTorch's order.
pub(crate) fn visit_weight_and_bias<'a, F: Float>(
    weight: &'a Weight<F>,
    bias: Option<&'a Param<F>>,
    prefix: &str,
    f: &mut dyn FnMut(&str, &'a Param<F>),
) {
    weight.visit(&join(prefix, "weight"), f);
    if let Some(b) = bias {
        f(&join(prefix, "bias"), b);
    }
}

/// [`visit_weight_and_bias`] with mutable access.
pub(crate) fn visit_weight_and_bias_mut<F: Float>(
    weight: &mut Weight<F>,
    bias: Option<&mut Param<F>>,
    prefix: &str,
    f: &mut dyn FnMut(&str, &mut Param<F>),
) {
    weight.visit_mut(&join(prefix, "weight"), f);
    if let Some(b) = bias {
        f(&join(prefix, "bias"), b);
    }
}

/// All parameters and buffers with their names.
pub fn named_params<F: Float, M: Module<F> + ?Sized>(module: &M) -> Vec<(String, &Param<F>)> {
    let mut out = Vec::new();
    module.visit("", &mut |name, p| out.push((name.to_string(), p)));
    out
}

/// Number of trainable scalars.
pub fn count_trainable<F: Float, M: Module<F> + ?Sized>(module: &M) -> usize {
    named_params(module)
        .iter()
        .filter(|(_, p)| p.trainable())
        .map(|(_, p)| p.len())
        .sum()
}
