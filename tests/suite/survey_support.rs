//! Helpers of the prune-at-init and iterative-pruning tests (`methods_han`, `methods_lottery`,
//! `methods_snip`, `methods_grasp`): a small synthetic image set and the `InitData` a method's
//! `init` sees, on LeNet-300 or LeNet-5 sized inputs.
#![allow(dead_code)]

use std::path::Path;

use sparsegrad::data::{Dataset, Normalize};
use sparsegrad::error::Result;
use sparsegrad::methods::InitData;
use sparsegrad::models::{self, ModelSpec};
use sparsegrad::nn::Module;
use sparsegrad::rng::{derived, seeded, uniform};

/// `n` random 1 x 28 x 28 images, labels cycling through `classes`.
pub fn synthetic(n: usize, classes: usize, seed: u64) -> Dataset {
    let mut rng = seeded(seed);
    let images = ndarray::Array4::from_shape_simple_fn((n, 1, 28, 28), || {
        uniform(&mut rng, 0.0, 256.0).min(255.0) as u8
    });
    let labels = (0..n).map(|i| (i % classes) as u8).collect();
    Dataset::new(images, labels, classes, Path::new("synthetic")).unwrap()
}

/// The spec of `model` ("lenet300", "lenet5") on 28 x 28 images of 10 classes.
pub fn spec(model: &str) -> ModelSpec {
    ModelSpec {
        name: model.parse().unwrap(),
        input: (1, 28, 28),
        classes: 10,
        width: 1.0,
    }
}

/// A freshly initialised model of `spec` from `seed`.
pub fn model(spec: &ModelSpec, seed: u64) -> Box<dyn Module<f32>> {
    models::build(spec, &mut derived(seed, 7)).unwrap()
}

/// Calls `f` with the `InitData` of `data` (every image a training image), batches of `batch`.
pub fn with_init_data<R>(
    data: &Dataset,
    spec: &ModelSpec,
    batch: usize,
    seed: u64,
    f: impl FnOnce(&InitData) -> R,
) -> R {
    let indices: Vec<usize> = (0..data.labels.len()).collect();
    let norm = Normalize::mnist();
    let spec_for_fresh = spec.clone();
    let fresh = move |s: u64| -> Result<Box<dyn Module<f32>>> {
        models::build(&spec_for_fresh, &mut derived(s, 7))
    };
    f(&InitData {
        data,
        indices: &indices,
        norm: &norm,
        batch_size: batch,
        seed,
        fresh_model: &fresh,
        spec: spec.clone(),
    })
}
