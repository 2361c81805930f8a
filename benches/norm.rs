//! Batch norm (training mode, the `BatchNorm` layer) at ResNet-20's CIFAR shapes and max pooling
//! at LeNet-5's MNIST shapes, f32, batch 128. Baselines measured in the same run:
//! - `relu`: one elementwise op forward + backward at the same shape (a memory-bound floor);
//! - `composed`: batch norm built from generic ops (`mean_axes`, `sub`, `mul`, `div`, `sqrt`),
//!   what the fused op replaces.
//!
//! Run: `cargo bench --bench norm`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group};
use ndarray::IxDyn;
use sparsegrad::nn::{BatchNorm, Module};
use sparsegrad::param::Param;
use sparsegrad::rng::{seeded, standard_normal};
use sparsegrad::tape::{Tape, Tensor, Var};

mod common;

fn input(shape: &[usize]) -> Tensor<f32> {
    let mut rng = seeded(0);
    Tensor::from_shape_simple_fn(IxDyn(shape), || standard_normal(&mut rng) as f32)
}

/// Batch norm from generic ops: the baseline the fused op is measured against.
fn composed_batch_norm<'t>(
    x: Var<'t, f32>,
    gamma: Var<'t, f32>,
    beta: Var<'t, f32>,
) -> Var<'t, f32> {
    let c = x.shape()[1];
    let mean = x.mean_axes(&[0, 2, 3], true);
    let centred = x - mean;
    let var = (centred * centred).mean_axes(&[0, 2, 3], true);
    let std = var.add_scalar(1e-5).sqrt();
    centred / std * gamma.reshape(&[1, c, 1, 1]) + beta.reshape(&[1, c, 1, 1])
}

fn batch_norm(c: &mut Criterion) {
    let mut group = c.benchmark_group("batchnorm2d");
    for shape in [[128, 16, 32, 32], [128, 32, 16, 16], [128, 64, 8, 8]] {
        // A parameter leaf shares its buffer with the tape, so no iteration copies the input.
        let x = Param::new(input(&shape));
        let name = format!("{}x{}x{}x{}", shape[0], shape[1], shape[2], shape[3]);
        let mut layer = BatchNorm::<f32>::new_2d(shape[1]);
        group.bench_function(format!("forward/{name}"), |b| {
            b.iter(|| {
                let tape = Tape::<f32>::new();
                let y = layer.forward(tape.param(&x));
                black_box(y.value());
            })
        });
        group.bench_function(format!("forward+backward/{name}"), |b| {
            b.iter(|| {
                let tape = Tape::<f32>::new();
                let v = tape.param(&x);
                let grads = layer.forward(v).sum().backward();
                black_box(grads.of(&x).is_some());
            })
        });
        let (gamma, beta) = (
            Param::new(input(&[shape[1]])),
            Param::new(input(&[shape[1]])),
        );
        group.bench_function(format!("composed forward+backward/{name}"), |b| {
            b.iter(|| {
                let tape = Tape::<f32>::new();
                let v = tape.param(&x);
                let y = composed_batch_norm(v, tape.param(&gamma), tape.param(&beta));
                black_box(y.sum().backward().of(&x).is_some());
            })
        });
        group.bench_function(format!("relu forward+backward/{name}"), |b| {
            b.iter(|| {
                let tape = Tape::<f32>::new();
                let v = tape.param(&x);
                black_box(v.relu().sum().backward().of(&x).is_some());
            })
        });
    }
    group.finish();
}

fn max_pool(c: &mut Criterion) {
    let mut group = c.benchmark_group("max_pool2d");
    for shape in [[128, 20, 24, 24], [128, 50, 8, 8]] {
        // A parameter leaf shares its buffer with the tape, so no iteration copies the input.
        let x = Param::new(input(&shape));
        let name = format!("{}x{}x{}x{}", shape[0], shape[1], shape[2], shape[3]);
        group.bench_function(format!("forward/{name}"), |b| {
            b.iter(|| {
                let tape = Tape::<f32>::new();
                let y = tape.param(&x).max_pool2d([2, 2], [2, 2], [0, 0]);
                black_box(y.value());
            })
        });
        group.bench_function(format!("forward+backward/{name}"), |b| {
            b.iter(|| {
                let tape = Tape::<f32>::new();
                let v = tape.param(&x);
                let grads = v.max_pool2d([2, 2], [2, 2], [0, 0]).sum().backward();
                black_box(grads.of(&x).is_some());
            })
        });
        group.bench_function(format!("relu forward+backward/{name}"), |b| {
            b.iter(|| {
                let tape = Tape::<f32>::new();
                let v = tape.param(&x);
                black_box(v.relu().sum().backward().of(&x).is_some());
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = batch_norm, max_pool
}
fn main() {
    common::main(benches);
}
