//! Gradients computed by one backward pass, kept outside the parameters.
//!
//! Keyed by variable id (the position on the tape); parameter leaves can also be looked up by
//! parameter, which is how optimisers find them.

use std::collections::HashMap;

use crate::float::Float;
use crate::param::{Param, ParamId};
use crate::tape::Var;
use crate::tensor::Tensor;

/// The gradients of the leaves and parameters of one backward pass.
pub struct Grads<F: Float> {
    by_var: HashMap<usize, Tensor<F>>,
    var_of_param: HashMap<ParamId, usize>,
}

impl<F: Float> Grads<F> {
    pub(crate) fn new() -> Self {
        Grads {
            by_var: HashMap::new(),
            var_of_param: HashMap::new(),
        }
    }

    pub(crate) fn insert(&mut self, var: usize, param: Option<ParamId>, grad: Tensor<F>) {
        if let Some(p) = param {
            self.var_of_param.insert(p, var);
        }
        self.by_var.insert(var, grad);
    }

    /// Gradient with respect to a leaf (None if the output does not depend on it).
    pub fn wrt(&self, var: Var<'_, F>) -> Option<&Tensor<F>> {
        self.by_var.get(&var.id())
    }

    /// Gradient of the variable at tape position `id` (a leaf, a parameter, or a value kept with
    /// `Tape::retain_grad`).
    pub fn of_var_id(&self, id: usize) -> Option<&Tensor<F>> {
        self.by_var.get(&id)
    }

    /// Gradient with respect to a parameter (None if it was not used or is frozen).
    pub fn of(&self, param: &Param<F>) -> Option<&Tensor<F>> {
        self.of_id(param.id())
    }

    pub fn of_id(&self, param: ParamId) -> Option<&Tensor<F>> {
        self.var_of_param
            .get(&param)
            .and_then(|v| self.by_var.get(v))
    }

    /// Gradient with respect to a parameter, mutable (methods mask or rescale gradients here).
    pub fn of_mut(&mut self, param: &Param<F>) -> Option<&mut Tensor<F>> {
        let var = *self.var_of_param.get(&param.id())?;
        self.by_var.get_mut(&var)
    }

    /// Number of gradients held.
    pub fn len(&self) -> usize {
        self.by_var.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_var.is_empty()
    }
}
