//! The cost of one Hessian-vector product (`hvp::module_hvp` on a `Dual64` twin) against one
//! ordinary `f32` forward + backward, in GraSP's setting: LeNet-5-Caffe on 28x28 images, a batch
//! of 100 (10 per class), cross-entropy of the logits divided by the temperature 200, direction
//! `v` = a gradient-sized random vector over the prunable weights. Also the same pass in `f64`,
//! which separates the cost of double precision from that of the dual numbers.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group};
use ndarray::IxDyn;
use sparsegrad::dual::Dual64;
use sparsegrad::float::Float;
use sparsegrad::hvp::{load_twin, module_hvp};
use sparsegrad::models::{LeNet5, LeNet5Options};
use sparsegrad::nn::named_params;
use sparsegrad::prelude::*;
use sparsegrad::rng::{seeded, standard_normal};

mod common;

const BATCH: usize = 100;
const CLASSES: usize = 10;
const TEMPERATURE: f64 = 200.0;

fn lenet5<F: Float>() -> LeNet5<F> {
    LeNet5::new(
        (1, 28, 28),
        CLASSES,
        LeNet5Options::default(),
        &mut seeded(0),
    )
    .expect("fits")
}

/// One forward + backward of the tempered loss on `images`.
fn step<F: Float>(model: &mut LeNet5<F>, images: &Tensor<F>, labels: &[usize]) -> F {
    let tape = Tape::<F>::new();
    let loss = model
        .forward(tape.constant(images.clone()))
        .mul_scalar(1.0 / TEMPERATURE)
        .cross_entropy(labels, 0.0);
    let value = loss.item();
    black_box(loss.backward());
    value
}

fn bench(c: &mut Criterion) {
    let mut rng = seeded(1);
    let images = Tensor::<f64>::from_shape_simple_fn(IxDyn(&[BATCH, 1, 28, 28]), || {
        standard_normal(&mut rng)
    });
    let labels: Vec<usize> = (0..BATCH).map(|i| i % CLASSES).collect();
    let mut model = lenet5::<f32>();
    let mut model64 = lenet5::<f64>();
    let mut twin = lenet5::<Dual64>();
    load_twin(&model, &mut model64).expect("same model");
    load_twin(&model, &mut twin).expect("same model");
    let mut v = BTreeMap::new();
    for (name, p) in named_params(&twin) {
        if name.ends_with("weight") {
            v.insert(name, p.value().mapv(|_| standard_normal(&mut rng)));
        }
    }
    let (images32, images64) = (images.mapv(|x| x as f32), images.clone());
    let images_dual = images.mapv(Dual64::from);

    let mut group = c.benchmark_group("hvp_lenet5_batch100");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("f32_forward_backward", |b| {
        b.iter(|| step(&mut model, &images32, &labels))
    });
    group.bench_function("f64_forward_backward", |b| {
        b.iter(|| step(&mut model64, &images64, &labels))
    });
    group.bench_function("dual64_hvp", |b| {
        b.iter(|| {
            module_hvp(&mut twin, &v, |m, tape| {
                m.forward(tape.constant(images_dual.clone()))
                    .mul_scalar(1.0 / TEMPERATURE)
                    .cross_entropy(&labels, 0.0)
            })
            .expect("hvp")
        })
    });
    group.finish();
}

criterion_group!(benches, bench);

fn main() {
    common::main(benches);
}
