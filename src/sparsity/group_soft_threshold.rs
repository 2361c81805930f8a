//! [`GroupSoftThreshold`]: STR's structured (low-rank) variant as a weight transform. Whole
//! slices of the weight along one axis are soft-thresholded by their Euclidean norm
//! (`Var::group_soft_threshold`), with one learnable `s` per weight named `{weight}_threshold`
//! (the same name as unstructured STR's, so the same parameter group applies).
//!
//! On a low-rank product W = W2 W1 (FastGRNN), thresholding the rows of W1 (axis 0) and the
//! columns of W2 (axis 1) removes rank-1 components W2[:, k] W1[k, :] whole: the effective rank
//! is the number of k whose row and column both survive (`sparsity::report::low_rank_report`).

use std::any::Any;

use crate::float::Float;
use crate::nn::WeightTransform;
use crate::ops::sparsity::ThresholdFn;
use crate::param::Param;
use crate::tape::{Tape, Tensor, Var};

/// Soft threshold on the norms of a weight's slices along `axis`.
pub struct GroupSoftThreshold<F: Float> {
    s: Param<F>,
    g: ThresholdFn,
    axis: usize,
}

impl<F: Float> GroupSoftThreshold<F> {
    /// One threshold parameter (shape []) initialised to `s_init`; groups are the slices along
    /// `axis` (0: rows, 1: columns of a matrix).
    pub fn new(axis: usize, s_init: f64, g: ThresholdFn) -> Self {
        GroupSoftThreshold {
            s: Param::new(Tensor::from_elem(ndarray::IxDyn(&[]), F::c(s_init))),
            g,
            axis,
        }
    }

    /// The axis whose slices are the groups.
    pub fn axis(&self) -> usize {
        self.axis
    }

    /// The current value of s.
    pub fn s(&self) -> F {
        *self.s.value().iter().next().expect("one element")
    }

    pub fn g(&self) -> &ThresholdFn {
        &self.g
    }

    /// s as a variable on `tape`.
    pub fn s_on<'t>(&self, tape: &'t Tape<F>) -> Var<'t, F> {
        tape.param(&self.s)
    }
}

impl<F: Float> WeightTransform<F> for GroupSoftThreshold<F> {
    fn name(&self) -> &'static str {
        "str-group"
    }

    fn apply<'t>(&self, raw: Var<'t, F>) -> Var<'t, F> {
        raw.group_soft_threshold(self.s_on(raw.tape()), &self.g, self.axis)
    }

    /// g(s): the norm below which a whole group is removed.
    fn threshold(&self) -> Option<f64> {
        Some(self.g.value(self.s().f64()))
    }

    fn effective(&self, raw: &Tensor<F>) -> Tensor<F> {
        let tape = Tape::new();
        let _no_grad = tape.no_grad();
        (*self.apply(tape.constant(raw.clone())).value()).clone()
    }

    fn visit<'a>(&'a self, weight: &str, f: &mut dyn FnMut(&str, &'a Param<F>)) {
        f(&format!("{weight}_threshold"), &self.s);
    }

    fn visit_mut(&mut self, weight: &str, f: &mut dyn FnMut(&str, &mut Param<F>)) {
        f(&format!("{weight}_threshold"), &mut self.s);
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
