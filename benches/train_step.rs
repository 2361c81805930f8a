//! One full training step at batch 128: forward, cross-entropy, backward, and an SGD update
//! (lr 0.1, momentum 0.9, weight decay 5e-4) through `optim::step`, for LeNet-300-100,
//! LeNet-5-Caffe and ResNet-20. To race PyTorch, time the same steps there (same batch, model and
//! optimiser, `torch.set_num_threads` equal to `RAYON_NUM_THREADS`) in the same sitting and compare
//! medians.
//!
//! Variants (the peer's `reparam`):
//! - `dense`: plain weights;
//! - `str`: STR's soft threshold on every weight (`SoftThreshold`, one s per layer, s = -3.2 as
//!   in the peer), so every step also differentiates through the threshold;
//! - `mask`: a fixed random mask keeping 10% of every weight (`Mask`; the optimiser driver also
//!   masks gradients and momentum, which the peer does not);
//! - `mask95`: the same with 5% kept, on the dense masked path (`--sparse-kernels off`);
//! - `sparse95`: that 95%-sparse model with `--sparse-kernels auto` (the default: the layers the
//!   calibrated rule picks run sparse, the small ones dense), the step
//!   `train` takes once a mask is fixed (`docs/sparse.md`); compare with `dense` and the peer.
//!
//! The peer's LeNet-5-Caffe has a relu after each convolution, so the bench uses that variant
//! (`LeNet5Options { relu_after_conv: true }`). Inputs are N(0, 1) images, labels uniform.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group};
use ndarray::IxDyn;
use rand::Rng as _;
use sparsegrad::models::{LeNet5, LeNet5Options, LeNet300, ResNet};
use sparsegrad::nn::sparse::{SparseKernels, set_sparse_kernels};
use sparsegrad::ops::sparsity::ThresholdFn;
use sparsegrad::optim;
use sparsegrad::prelude::*;
use sparsegrad::rng::{seeded, standard_normal};
use sparsegrad::sparsity::{Granularity, Mask, SoftThreshold};

mod common;

const BATCH: usize = 128;
const CLASSES: usize = 10;
/// The peer's STR initialisation: g(s) = sigmoid(-3.2) ~ 0.04.
const STR_S_INIT: f64 = -3.2;
const MASK_DENSITY: f64 = 0.1;

fn model(name: &str) -> (Box<dyn Module<f32>>, [usize; 3]) {
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
fn reparameterise(model: &mut dyn Module<f32>, variant: &str) {
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

fn bench_train_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("train_step");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(BATCH as u64));
    for name in ["lenet300-100", "lenet5-caffe", "resnet20"] {
        for variant in ["dense", "str", "mask", "mask95", "sparse95"] {
            let (mut net, [c, h, w]) = model(name);
            reparameterise(net.as_mut(), variant);
            let mut rng = seeded(2);
            let images = Tensor::from_shape_simple_fn(IxDyn(&[BATCH, c, h, w]), || {
                standard_normal(&mut rng) as f32
            });
            let labels: Vec<usize> = (0..BATCH).map(|_| rng.random_range(0..CLASSES)).collect();
            let mut opt = Sgd::new(SgdConfig {
                lr: 0.1,
                momentum: 0.9,
                weight_decay: 5e-4,
                ..SgdConfig::default()
            });
            group.bench_function(format!("{name}.{variant}"), |b| {
                b.iter(|| {
                    let tape = Tape::new();
                    let loss = net
                        .forward(tape.constant(images.clone()))
                        .cross_entropy(&labels, 0.0);
                    let grads = loss.backward();
                    optim::step(&mut opt, net.as_mut(), &grads);
                    black_box(&grads);
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_train_step);
fn main() {
    common::main(benches);
}
