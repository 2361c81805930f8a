//! Helpers shared by the whole-run tests (`methods_*`, `train_run`): short whole runs on the
//! bundled data, a run interrupted and resumed, a hand-driven training loop for looking at a
//! method between steps, and checks on exact zeros.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::Path;

use crate::scratch::Scratch;

use sparsegrad::io::checkpoint;
use sparsegrad::nn::Module;
use sparsegrad::optim::{self, Optimizer, Sgd, SgdConfig};
use sparsegrad::rng::{seeded, uniform};
use sparsegrad::run::dir::{CHECKPOINT_FILE, MODEL_FILE};
use sparsegrad::run::summary::Summary;
use sparsegrad::tape::{Tape, Tensor};
use sparsegrad::train::{Method, Outcome, Progress, RunOptions, StepInfo, TrainConfig, train};

/// Trains `config` in two sittings: stopped after its first epoch (no export written yet), then
/// resumed to the end; the run to compare with an uninterrupted one.
pub fn train_in_two_sittings(config: &TrainConfig) {
    let stopped = train(
        config,
        RunOptions {
            stop_after: Some(1),
            ..RunOptions::default()
        },
        &mut Progress::plain(),
    )
    .unwrap();
    assert_eq!(stopped, Outcome::Stopped { epochs_done: 1 });
    assert!(!config.out_dir().join(MODEL_FILE).exists());
    train(
        config,
        RunOptions {
            resume: true,
            ..RunOptions::default()
        },
        &mut Progress::plain(),
    )
    .unwrap();
}

/// A fresh scratch directory for a whole run, removed when the returned guard is dropped.
pub fn temp_dir(name: &str) -> Scratch {
    Scratch::new(&format!("methods-{name}"))
}

/// LeNet-300 on the bundled data, `epochs` epochs of batches of 128 (57 steps per epoch).
pub fn short(out: &Path, method: &str, epochs: usize) -> TrainConfig {
    TrainConfig {
        method: method.parse().unwrap(),
        epochs,
        batch_size: 128,
        out: Some(out.to_path_buf()),
        ..TrainConfig::default()
    }
}

/// Runs `config` to the end and returns its summary.
pub fn finish(config: &TrainConfig) -> Summary {
    match train(config, RunOptions::default(), &mut Progress::plain()).unwrap() {
        Outcome::Finished(summary) => *summary,
        other => panic!("run stopped early: {other:?}"),
    }
}

/// `n` random batches of `batch` inputs of `features` values in [-1, 1) with random labels.
pub fn random_batches(
    n: usize,
    batch: usize,
    features: usize,
    classes: usize,
    seed: u64,
) -> Vec<(Tensor<f32>, Vec<usize>)> {
    let mut rng = seeded(seed);
    (0..n)
        .map(|_| {
            let x = Tensor::from_shape_simple_fn(ndarray::IxDyn(&[batch, features]), || {
                uniform(&mut rng, -1.0, 1.0) as f32
            });
            let y = (0..batch)
                .map(|_| (uniform(&mut rng, 0.0, classes as f64) as usize).min(classes - 1))
                .collect();
            (x, y)
        })
        .collect()
}

/// SGD as the command line builds it, with the method's groups.
pub fn sgd_for(method: &dyn Method, lr: f64, weight_decay: f64) -> Sgd<f32> {
    let mut opt = Sgd::new(SgdConfig {
        lr,
        momentum: 0.9,
        weight_decay,
        ..SgdConfig::default()
    });
    opt.set_groups(method.param_groups()).unwrap();
    opt
}

/// One training step as the loop takes it: forward, loss (+ regulariser), backward,
/// `optim::step`, `after_step`. Returns the loss.
pub fn step(
    model: &mut dyn Module<f32>,
    method: &mut dyn Method,
    opt: &mut dyn Optimizer<f32>,
    batch: &(Tensor<f32>, Vec<usize>),
    info: StepInfo,
) -> f64 {
    let tape = Tape::new();
    let logits = model.forward(tape.constant(batch.0.clone()));
    let mut loss = logits.cross_entropy(&batch.1, 0.0);
    if let Some(extra) = method.regulariser(model, &tape, &info) {
        loss = loss + extra;
    }
    let value = loss.item() as f64;
    let grads = loss.backward();
    optim::step(opt, model, &grads);
    method.after_step(model, &info).unwrap();
    value
}

/// Every prunable weight's raw value, by name.
pub fn raw_weights(model: &dyn Module<f32>) -> Vec<(String, Tensor<f32>)> {
    let mut out = Vec::new();
    model.visit_weights("", &mut |name, w| {
        out.push((name.to_string(), w.raw.value().clone()))
    });
    out
}

/// Every prunable weight's effective value, by name.
pub fn effective_weights(model: &dyn Module<f32>) -> Vec<(String, Tensor<f32>)> {
    let mut out = Vec::new();
    model.visit_weights("", &mut |name, w| {
        out.push((name.to_string(), w.effective()))
    });
    out
}

/// Panics naming the first entry where `a` and `b` differ in their bits.
pub fn assert_bits_equal(what: &str, a: &Tensor<f32>, b: &Tensor<f32>) {
    assert_eq!(a.shape(), b.shape(), "{what}: shapes differ");
    if let Some((i, (x, y))) = a
        .iter()
        .zip(b.iter())
        .enumerate()
        .find(|(_, (x, y))| x.to_bits() != y.to_bits())
    {
        panic!("{what}: entry {i} differs: {x} vs {y}");
    }
}

/// Asserts that runs `a` and `b` wrote the same model export and checkpoint, tensor by tensor, bit
/// for bit (`what` names the comparison in a failure).
pub fn assert_same_outputs(what: &str, a: &TrainConfig, b: &TrainConfig) {
    for file in [MODEL_FILE, CHECKPOINT_FILE] {
        let x = checkpoint::load::<f32>(&a.out_dir().join(file)).unwrap();
        let y = checkpoint::load::<f32>(&b.out_dir().join(file)).unwrap();
        assert_eq!(x.tensors.len(), y.tensors.len(), "{what} {file}");
        for ((name, p), (other, q)) in x.tensors.iter().zip(&y.tensors) {
            assert_eq!(name, other);
            assert_bits_equal(&format!("{what} {file}: {name}"), p, q);
        }
    }
}
