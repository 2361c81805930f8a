//! Fully connected layer: y = x W^T + b with W of shape [out, in] (PyTorch layout). A masked
//! weight may run on the sparse kernels (`nn::sparse`).

use crate::float::Float;
use crate::kernels::sparse_select::SparseLayer;
use crate::nn::init::torch_default_layer;
use crate::nn::module::{Module, join, visit_weight_and_bias, visit_weight_and_bias_mut};
use crate::nn::weight::Weight;
use crate::param::Param;
use crate::rng::Rng;
use crate::tape::Var;

pub struct Linear<F: Float> {
    pub weight: Weight<F>,
    pub bias: Option<Param<F>>,
}

impl<F: Float> Linear<F> {
    /// PyTorch's default initialisation (see [`torch_default_layer`]).
    pub fn new(in_features: usize, out_features: usize, bias: bool, rng: &mut Rng) -> Self {
        let (w, b) = torch_default_layer::<F>(&[out_features, in_features], rng);
        Linear {
            weight: Weight::new(w),
            bias: bias.then(|| Param::new(b)),
        }
    }

    pub fn in_features(&self) -> usize {
        self.weight.raw.shape()[1]
    }

    pub fn out_features(&self) -> usize {
        self.weight.raw.shape()[0]
    }
}

impl<F: Float> Module<F> for Linear<F> {
    /// x: [N, in] -> [N, out].
    fn forward<'t>(&mut self, x: Var<'t, F>) -> Var<'t, F> {
        let tape = x.tape();
        if let Some(norms) = &mut self.weight.input_norms {
            norms.add_linear(&x.value());
        }
        let layer = SparseLayer::Linear {
            batch: x.shape().first().copied().unwrap_or(0),
            inputs: self.in_features(),
            outputs: self.out_features(),
        };
        if let Some(kept) = self.weight.sparse_kept(&layer) {
            let bias = self.bias.as_ref().map(|b| tape.param(b));
            return x.sparse_linear_kept(tape.param(&self.weight.raw), bias, &kept);
        }
        let weight = self.weight.on(tape);
        x.linear(weight, self.bias.as_ref().map(|b| tape.param(b)))
    }

    fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(&str, &'a Param<F>)) {
        visit_weight_and_bias(&self.weight, self.bias.as_ref(), prefix, f);
    }

    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<F>)) {
        visit_weight_and_bias_mut(&mut self.weight, self.bias.as_mut(), prefix, f);
    }

    fn visit_weights_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Weight<F>)) {
        f(&join(prefix, "weight"), &mut self.weight);
    }

    fn visit_weights<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(&str, &'a Weight<F>)) {
        f(&join(prefix, "weight"), &self.weight);
    }
}
