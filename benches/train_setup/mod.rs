//! The models, variants and inputs of the training-step benches (`train_step`,
//! `train_step_paired`): one place, so both time the same steps. See `train_step.rs` for the
//! variants.

use ndarray::IxDyn;
use rand::Rng as _;
use sparsegrad::models::{LeNet5, LeNet5Options, LeNet300, ResNet};
use sparsegrad::nn::sparse::{SparseKernels, set_sparse_kernels};
use sparsegrad::ops::sparsity::ThresholdFn;
use sparsegrad::optim::{self, Sgd, SgdConfig};
use sparsegrad::prelude::*;
use sparsegrad::rng::{seeded, standard_normal};
use sparsegrad::sparsity::{Granularity, Mask, SoftThreshold};

pub const MODELS: [&str; 3] = ["lenet300-100", "lenet5-caffe", "resnet20"];

pub const BATCH: usize = 128;
const CLASSES: usize = 10;
/// The peer's STR initialisation: g(s) = sigmoid(-3.2) ~ 0.04.
const STR_S_INIT: f64 = -3.2;
const MASK_DENSITY: f64 = 0.1;

pub fn model(name: &str) -> (Box<dyn Module<f32>>, [usize; 3]) {
    let mut rng = seeded(0);
    match name {
        "lenet300-100" => (Box::new(LeNet300::new(784, CLASSES, &mut rng)), [1, 28, 28]),
        "lenet5-caffe" => {
            let relu = LeNet5Options {
                relu_after_conv: true,
            };
            let net = LeNet5::new((1, 28, 28), CLASSES, relu, &mut rng).expect("28x28 fits");
            (Box::new(net), [1, 28, 28])
        }
        "resnet20" => {
            let net = ResNet::cifar(20, 3, CLASSES, &mut rng).expect("depth 20");
            (Box::new(net), [3, 32, 32])
        }
        other => unreachable!("no bench model {other}"),
    }
}

/// Puts the variant's transform on every prunable weight.
pub fn reparameterise(model: &mut dyn Module<f32>, variant: &str) {
    let mut rng = seeded(1);
    model.visit_weights_mut("", &mut |_, w| match variant {
        "dense" => {}
        "str" => {
            w.transform = Some(Box::new(SoftThreshold::new(
                w.raw.shape(),
                Granularity::Layer,
                STR_S_INIT,
                ThresholdFn::Sigmoid,
            )))
        }
        "mask" | "mask95" | "sparse95" => {
            let density = if variant == "mask" {
                MASK_DENSITY
            } else {
                0.05
            };
            let keep = w.raw.value().mapv(|_| {
                if rng.random::<f64>() < density {
                    1.0
                } else {
                    0.0
                }
            });
            w.transform = Some(Box::new(Mask::from_tensor(keep).expect("binary")));
            w.reapply_mask();
        }
        other => unreachable!("no variant {other}"),
    });
    let kernels = if variant == "sparse95" {
        SparseKernels::Auto
    } else {
        SparseKernels::Off
    };
    set_sparse_kernels(model, kernels);
}

/// One model in one variant with its batch and optimiser: a training step, as the benches time it.
pub struct TrainStep {
    net: Box<dyn Module<f32>>,
    images: Tensor<f32>,
    labels: Vec<usize>,
    opt: Sgd<f32>,
}

impl TrainStep {
    pub fn new(name: &str, variant: &str) -> Self {
        let (mut net, [c, h, w]) = model(name);
        reparameterise(net.as_mut(), variant);
        let mut rng = seeded(2);
        let images = Tensor::from_shape_simple_fn(IxDyn(&[BATCH, c, h, w]), || {
            standard_normal(&mut rng) as f32
        });
        let labels: Vec<usize> = (0..BATCH).map(|_| rng.random_range(0..CLASSES)).collect();
        let opt = Sgd::new(SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 5e-4,
            ..SgdConfig::default()
        });
        TrainStep {
            net,
            images,
            labels,
            opt,
        }
    }

    /// Forward, cross-entropy, backward, SGD update.
    pub fn run(&mut self) {
        let tape = Tape::new();
        let loss = self
            .net
            .forward(tape.constant(self.images.clone()))
            .cross_entropy(&self.labels, 0.0);
        let grads = loss.backward();
        optim::step(&mut self.opt, self.net.as_mut(), &grads);
        std::hint::black_box(&grads);
    }
}
