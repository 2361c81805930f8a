//! [`TopKStraightThrough`]: DNW's forward top-k (Wortsman et al. 2019, "Discovering neural
//! wirings"): the effective weight keeps the `keep` entries of largest |w| of the raw weight and
//! zeroes the others, recomputed at every forward pass, while the backward pass hands the
//! gradient to every raw entry (the straight-through estimator of the paper's eq. 2 and of the
//! authors' `ChooseTopEdges`, allenai/dnw). A pruned weight keeps training and comes back once
//! its |w| overtakes a kept one.
//!
//! It is composed of gradient-checked ops, not a new one: y = w + c with the constant
//! c = topk(w) - w taken off the tape, so dy/dw = I exactly and y equals topk(w) bit for bit
//! (w + (w - w) = w; w + (0 - w) = +0). The mask is no `WeightTransform::mask`: the optimiser
//! must update the pruned entries too.
//!
//! k is a buffer `{weight}_keep` (shape [], an integer in F: exact up to 2^24 entries for f32),
//! so a checkpoint restores it with the weight (a global allocation moves it every step).

use std::any::Any;

use crate::float::Float;
use crate::nn::WeightTransform;
use crate::param::Param;
use crate::sparsity::Mask;
use crate::tape::{Tensor, Var};

/// The forward pass keeps the `keep` largest |w| (ties to the lower flat index); the gradient
/// reaches every entry.
pub struct TopKStraightThrough<F: Float> {
    keep: Param<F>,
}

impl<F: Float> TopKStraightThrough<F> {
    pub fn new(keep: usize) -> Self {
        TopKStraightThrough {
            keep: Param::buffer(Tensor::from_elem(ndarray::IxDyn(&[]), F::c(keep as f64))),
        }
    }

    /// How many entries the forward pass keeps.
    pub fn keep(&self) -> usize {
        self.keep.value().iter().next().expect("scalar").f64() as usize
    }

    pub fn set_keep(&mut self, keep: usize) {
        self.keep
            .set_value(Tensor::from_elem(ndarray::IxDyn(&[]), F::c(keep as f64)));
    }

    /// The 0/1 mask of the `keep` largest |w| of `raw`.
    pub fn mask_of(&self, raw: &Tensor<F>) -> Tensor<F> {
        Mask::top_k_magnitude(raw, self.keep()).values().clone()
    }
}

impl<F: Float> WeightTransform<F> for TopKStraightThrough<F> {
    fn name(&self) -> &'static str {
        "dnw"
    }

    fn apply<'t>(&self, raw: Var<'t, F>) -> Var<'t, F> {
        let value = raw.value();
        let kept = self.effective(&value);
        // c = topk(w) - w as a constant: the sum's gradient to w is the identity.
        let shift = &kept - &*value;
        raw + raw.tape().constant(shift)
    }

    fn effective(&self, raw: &Tensor<F>) -> Tensor<F> {
        let mut kept = raw.clone();
        crate::nn::zero_pruned(&mut kept, &self.mask_of(raw));
        kept
    }

    fn visit<'a>(&'a self, weight: &str, f: &mut dyn FnMut(&str, &'a Param<F>)) {
        f(&format!("{weight}_keep"), &self.keep);
    }

    fn visit_mut(&mut self, weight: &str, f: &mut dyn FnMut(&str, &mut Param<F>)) {
        f(&format!("{weight}_keep"), &mut self.keep);
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
