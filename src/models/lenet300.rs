//! LeNet-300-100 (LeCun et al. 1998; the MLP of Han et al. 2015): 784-300-100-10 with relu.

use crate::float::Float;
use crate::models::{linear_values, sum};
use crate::nn::{Linear, Module, Weight, join};
use crate::param::Param;
use crate::rng::Rng;
use crate::tape::Var;

pub struct LeNet300<F: Float> {
    pub fc1: Linear<F>,
    pub fc2: Linear<F>,
    pub fc3: Linear<F>,
}

/// Values of the model for `inputs` features and `classes` outputs (see
/// [`crate::models::ModelSpec::values`]).
pub fn values(inputs: u128, classes: u128) -> u128 {
    sum(&[
        linear_values(inputs, 300),
        linear_values(300, 100),
        linear_values(100, classes),
    ])
}

impl<F: Float> LeNet300<F> {
    /// For `inputs` features (784 for 28x28 images) and `classes` outputs.
    pub fn new(inputs: usize, classes: usize, rng: &mut Rng) -> Self {
        LeNet300 {
            fc1: Linear::new(inputs, 300, true, rng),
            fc2: Linear::new(300, 100, true, rng),
            fc3: Linear::new(100, classes, true, rng),
        }
    }

    fn layers(&self) -> [(&'static str, &Linear<F>); 3] {
        [("fc1", &self.fc1), ("fc2", &self.fc2), ("fc3", &self.fc3)]
    }

    fn layers_mut(&mut self) -> [(&'static str, &mut Linear<F>); 3] {
        [
            ("fc1", &mut self.fc1),
            ("fc2", &mut self.fc2),
            ("fc3", &mut self.fc3),
        ]
    }
}

impl<F: Float> Module<F> for LeNet300<F> {
    /// x: [N, ...] (flattened) -> logits [N, classes].
    fn forward<'t>(&mut self, x: Var<'t, F>) -> Var<'t, F> {
        let x = x.flatten(1);
        let x = self.fc1.forward(x).relu();
        let x = self.fc2.forward(x).relu();
        self.fc3.forward(x)
    }

    fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(&str, &'a Param<F>)) {
        for (name, layer) in self.layers() {
            layer.visit(&join(prefix, name), f);
        }
    }

    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<F>)) {
        for (name, layer) in self.layers_mut() {
            layer.visit_mut(&join(prefix, name), f);
        }
    }

    fn visit_weights_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Weight<F>)) {
        for (name, layer) in self.layers_mut() {
            layer.visit_weights_mut(&join(prefix, name), f);
        }
    }

    fn visit_weights<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(&str, &'a Weight<F>)) {
        for (name, layer) in self.layers() {
            layer.visit_weights(&join(prefix, name), f);
        }
    }
}
