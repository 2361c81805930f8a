//! Sensitivity (`--method sensitivity`, `src/methods/sensitivity.rs`): one training step of a
//! single Linear layer equals the paper's update w - eta dL/dw - lambda w max(0, 1 - S) with S
//! worked out by hand (softmax and logits outputs, unspecified and specified variants); the
//! thresholding prunes |w| < T for good; the warm-up epochs are plain training.

use crate::methods_support::*;
use sparsegrad::data::Batch;
use sparsegrad::methods::Method;
use sparsegrad::nn::{Linear, Module};
use sparsegrad::optim::{self, Sgd, SgdConfig};
use sparsegrad::rng::derived;
use sparsegrad::tape::{Tape, Tensor};
use sparsegrad::train::{StepInfo, TrainConfig};

const CLASSES: usize = 3;
const INPUTS: usize = 4;

fn config(variant: &str, output: &str, lambda: f64) -> TrainConfig {
    let mut c = TrainConfig {
        method: "sensitivity".parse().unwrap(),
        epochs: 2,
        ..TrainConfig::default()
    };
    let o = &mut c.sparsity.methods.sensitivity;
    o.sensitivity_variant = clap::ValueEnum::from_str(variant, false).unwrap();
    o.sensitivity_output = clap::ValueEnum::from_str(output, false).unwrap();
    o.sensitivity_lambda = lambda;
    c
}

fn info(epoch: usize) -> StepInfo {
    StepInfo {
        epoch,
        step: 0,
        steps_per_epoch: 1,
        total_steps: 2,
    }
}

fn batch() -> Batch<f32> {
    let images = Tensor::from_shape_vec(
        ndarray::IxDyn(&[3, INPUTS]),
        vec![
            0.5, -1.0, 2.0, 0.0, 1.5, 0.25, -0.5, 1.0, -2.0, 0.75, 0.0, -1.25,
        ],
    )
    .unwrap();
    Batch {
        images,
        labels: vec![2, 0, 1],
    }
}

/// One step as the training loop takes it (before_step, forward, loss, backward, plain SGD,
/// after_step); returns the weight before and after.
fn one_step(
    method: &mut dyn Method,
    layer: &mut Linear<f32>,
    lr: f64,
    epoch: usize,
) -> (Tensor<f32>, Tensor<f32>) {
    let before = layer.weight.raw.value().clone();
    let b = batch();
    method.before_step(layer, &b, &info(epoch)).unwrap();
    let tape = Tape::new();
    let loss = layer
        .forward(tape.constant(b.images.clone()))
        .cross_entropy(&b.labels, 0.0);
    let grads = loss.backward();
    let mut opt = Sgd::new(SgdConfig {
        lr,
        momentum: 0.0,
        weight_decay: 0.0,
        ..SgdConfig::default()
    });
    optim::step(&mut opt, layer, &grads);
    method.after_step(layer, &info(epoch)).unwrap();
    (before, layer.weight.raw.value().clone())
}

/// The update by hand, in f64: softmax p_n = softmax(W x_n + b); dL/dW_ij = mean_n (p_ni -
/// [i = t_n]) x_nj; dp_k/dW_ij = p_k ([k = i] - p_i) x_j, dz_k/dW_ij = [k = i] x_j; S sums
/// |batch mean| over the classes k (unspecified) or takes k = t_n (specified).
fn by_hand(
    w: &Tensor<f32>,
    bias: &Tensor<f32>,
    variant: &str,
    output: &str,
    lr: f64,
    lambda: f64,
) -> Vec<f64> {
    let b = batch();
    let n = b.labels.len();
    let x = |r: usize, j: usize| b.images[[r, j]] as f64;
    let probs: Vec<Vec<f64>> = (0..n)
        .map(|r| {
            let z: Vec<f64> = (0..CLASSES)
                .map(|i| {
                    bias[[i]] as f64 + (0..INPUTS).map(|j| w[[i, j]] as f64 * x(r, j)).sum::<f64>()
                })
                .collect();
            let m = z.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
            let s: f64 = e.iter().sum();
            e.iter().map(|v| v / s).collect()
        })
        .collect();
    let delta = |a: usize, b: usize| if a == b { 1.0 } else { 0.0 };
    let mut out = Vec::new();
    for i in 0..CLASSES {
        for j in 0..INPUTS {
            let grad: f64 = (0..n)
                .map(|r| (probs[r][i] - delta(i, b.labels[r])) * x(r, j))
                .sum::<f64>()
                / n as f64;
            let dy = |r: usize, k: usize| match output {
                "softmax" => probs[r][k] * (delta(k, i) - probs[r][i]) * x(r, j),
                _ => delta(k, i) * x(r, j),
            };
            let s = match variant {
                "unspecified" => (0..CLASSES)
                    .map(|k| ((0..n).map(|r| dy(r, k)).sum::<f64>() / n as f64).abs())
                    .sum::<f64>(),
                _ => ((0..n).map(|r| dy(r, b.labels[r])).sum::<f64>() / n as f64).abs(),
            };
            let wij = w[[i, j]] as f64;
            out.push(wij - lr * grad - lambda * wij * (1.0 - s).max(0.0));
        }
    }
    out
}

#[test]
fn one_step_is_the_papers_update_with_the_sensitivity_by_hand() {
    let (lr, lambda) = (0.1, 0.05);
    for variant in ["unspecified", "specified"] {
        for output in ["softmax", "logits"] {
            let mut layer = Linear::<f32>::new(INPUTS, CLASSES, true, &mut derived(3, 1));
            let mut method = config(variant, output, lambda).build_method().unwrap();
            method.attach(&mut layer).unwrap();
            let bias = layer.bias.as_ref().unwrap().value().clone();
            let w0 = layer.weight.raw.value().clone();
            let want = by_hand(&w0, &bias, variant, output, lr, lambda);
            let (_, after) = one_step(method.as_mut(), &mut layer, lr, 0);
            for (k, (got, want)) in after.iter().zip(&want).enumerate() {
                assert!(
                    (*got as f64 - want).abs() < 1e-6,
                    "{variant}/{output} entry {k}: {got} vs {want}"
                );
            }
            // The decay is not plain weight decay: entries differ in how much they shrink.
            let plain: Vec<f64> = by_hand(&w0, &bias, variant, output, lr, 0.0);
            let shrink: Vec<f64> = want
                .iter()
                .zip(&plain)
                .zip(w0.iter())
                .map(|((a, b), w)| (b - a) / (lambda * *w as f64))
                .collect();
            let (lo, hi) = shrink
                .iter()
                .fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
            assert!(
                hi - lo > 1e-3,
                "{variant}/{output}: insensitivity is uniform"
            );
        }
    }
}

/// Warm-up epochs are plain SGD; the thresholding after an epoch of the sparsification phase
/// prunes every |w| < T, and the pruned weights stay at exactly 0 through later steps.
#[test]
fn warmup_is_plain_training_and_thresholding_prunes_for_good() {
    let mut c = config("unspecified", "softmax", 0.05);
    c.sparsity.methods.sensitivity.sensitivity_warmup = 1;
    c.sparsity.methods.sensitivity.sensitivity_threshold = 0.2;
    let mut layer = Linear::<f32>::new(INPUTS, CLASSES, true, &mut derived(3, 1));
    let mut method = c.build_method().unwrap();
    method.attach(&mut layer).unwrap();
    let bias = layer.bias.as_ref().unwrap().value().clone();
    let want = by_hand(
        layer.weight.raw.value(),
        &bias,
        "unspecified",
        "softmax",
        0.1,
        0.0,
    );
    let (_, after) = one_step(method.as_mut(), &mut layer, 0.1, 0);
    for (got, want) in after.iter().zip(&want) {
        assert!(
            (*got as f64 - want).abs() < 1e-6,
            "warm-up: {got} vs {want}"
        );
    }
    assert!(method.after_epoch(&mut layer, 0).unwrap().is_empty());
    assert!(
        layer.weight.raw.value().iter().all(|v| *v != 0.0),
        "no pruning in the warm-up"
    );
    method.after_epoch(&mut layer, 1).unwrap();
    let pruned: Vec<bool> = after.iter().map(|v| v.abs() < 0.2).collect();
    assert!(pruned.iter().any(|p| *p) && !pruned.iter().all(|p| *p));
    for (v, p) in layer.weight.raw.value().iter().zip(&pruned) {
        assert_eq!(*v == 0.0, *p);
    }
    for _ in 0..3 {
        one_step(method.as_mut(), &mut layer, 0.5, 1);
    }
    for (v, p) in layer.weight.raw.value().iter().zip(&pruned) {
        if *p {
            assert_eq!(v.to_bits(), 0.0f32.to_bits(), "a pruned weight came back");
        }
    }
}

/// A whole run on LeNet-300 (2 epochs): sparsity grows, the export has the zeros.
#[test]
fn a_short_run_prunes_and_exports_zeros() {
    let dir = temp_dir("sensitivity-run");
    let mut c = short(&dir.join("run"), "sensitivity", 2);
    c.sparsity.methods.sensitivity.sensitivity_lambda = 0.02;
    let summary = finish(&c);
    assert!(
        summary.overall_sparsity > 0.05,
        "{}",
        summary.overall_sparsity
    );
    assert_eq!(summary.method_details["sparsification_epochs"], 2);
}
