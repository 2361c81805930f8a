//! DNW (`--method dnw`, `src/methods/dnw.rs`, `src/sparsity/top_k.rs`): the forward pass is the
//! top-k of |w|, the backward pass gives every raw weight the effective weight's gradient, so
//! pruned weights train and come back; global allocation; exact zeros after baking; resume.

use std::path::Path;

use crate::methods_support::*;
use crate::scratch::Scratch;
use sparsegrad::models::LeNet300;
use sparsegrad::nn::{Module, Weight, WeightTransform};
use sparsegrad::rng::derived;
use sparsegrad::sparsity::budget::Distribution;
use sparsegrad::sparsity::{Mask, TopKStraightThrough};
use sparsegrad::tape::{Tape, Tensor};
use sparsegrad::train::TrainConfig;

fn tensor(values: &[f32]) -> Tensor<f32> {
    Tensor::from_shape_vec(ndarray::IxDyn(&[values.len()]), values.to_vec()).unwrap()
}

fn dnw(target: f64, distribution: Distribution) -> TrainConfig {
    let mut c = TrainConfig {
        method: "dnw".parse().unwrap(),
        ..TrainConfig::default()
    };
    c.sparsity.shared.target_sparsity = Some(target);
    c.sparsity.shared.distribution = distribution;
    c
}

#[test]
fn forward_is_the_top_k_and_every_weight_gets_the_gradient() {
    let raw = tensor(&[0.5, -0.4, 0.1, -0.05, 0.3, -0.2]);
    let top = TopKStraightThrough::<f32>::new(3);
    // Forward: the top-3 magnitude mask applied; kept entries bit for bit, pruned ones +0.0.
    let mask = Mask::top_k_magnitude(&raw, 3).values().clone();
    let tape = Tape::new();
    let y = top.apply(tape.param(&sparsegrad::param::Param::new(raw.clone())));
    for ((a, m), r) in y.value().iter().zip(mask.iter()).zip(raw.iter()) {
        let want = if *m == 0.0 { 0 } else { r.to_bits() };
        assert_eq!(a.to_bits(), want);
    }
    assert_eq!(y.value().iter().filter(|v| v.to_bits() == 0).count(), 3);
    assert_eq!(
        WeightTransform::effective(&top, &raw)
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        y.value().iter().copied().collect::<Vec<_>>()
    );
    // Backward: loss = sum(c * y) gives dL/dw = c at every entry, pruned ones included.
    let mut w = Weight::new(raw.clone());
    w.transform = Some(Box::new(TopKStraightThrough::<f32>::new(3)));
    w.retain_effective_grad = true;
    let c = tensor(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let tape = Tape::new();
    let loss = (w.on(&tape) * tape.constant(c.clone())).sum();
    let grads = loss.backward();
    let raw_grad = grads.of(&w.raw).unwrap();
    assert_bits_equal("dL/dw", raw_grad, &c);
    assert_bits_equal(
        "dL/dw = dL/d(effective)",
        raw_grad,
        w.effective_grad(&grads).unwrap(),
    );
}

#[test]
fn a_pruned_weight_comes_back_when_its_magnitude_overtakes() {
    let mut w = Weight::new(tensor(&[0.5, 0.4, 0.1, 0.05]));
    w.transform = Some(Box::new(TopKStraightThrough::<f32>::new(2)));
    assert_eq!(
        w.effective().iter().copied().collect::<Vec<_>>(),
        [0.5, 0.4, 0.0, 0.0]
    );
    // The loss rewards entry 2, which the forward pass prunes: it still gets the gradient.
    for _ in 0..4 {
        let tape = Tape::new();
        let loss = (w.on(&tape) * tape.constant(tensor(&[0.0, 0.0, -0.1, 0.0]))).sum();
        let grads = loss.backward();
        let g = grads.of(&w.raw).unwrap().clone();
        let next = w.raw.value() - &g;
        w.raw.set_value(next);
    }
    // 0.1 + 4 x 0.1 = 0.5 > 0.4 (ties to the lower index: entry 0 stays).
    assert_eq!(
        w.effective().iter().copied().collect::<Vec<_>>(),
        [0.5, 0.0, 0.5, 0.0]
    );
}

#[test]
fn global_dnw_keeps_the_global_top_k_and_bakes_exact_zeros() {
    let c = dnw(0.9, Distribution::Global);
    let mut method = c.build_method().unwrap();
    let mut model = LeNet300::new(784, 10, &mut derived(0, 1));
    method.attach(&mut model).unwrap();
    let mut opt = sgd_for(method.as_ref(), 0.1, 0.0);
    let kept = |model: &dyn Module<f32>| {
        effective_weights(model)
            .iter()
            .map(|(_, e)| e.iter().filter(|v| **v != 0.0).count())
            .collect::<Vec<_>>()
    };
    let total = 266_200;
    let goal = total - (0.9f64 * total as f64).round() as usize;
    let start = kept(&model);
    for (i, b) in random_batches(6, 32, 784, 10, 5).iter().enumerate() {
        let info = sparsegrad::train::StepInfo {
            epoch: 0,
            step: i,
            steps_per_epoch: 6,
            total_steps: 6,
        };
        step(&mut model, method.as_mut(), &mut opt, b, info);
        assert_eq!(kept(&model).iter().sum::<usize>(), goal, "step {i}");
        // The smallest kept |w| is at least the largest pruned |w| over all layers.
        let (mut least_kept, mut best_pruned) = (f32::INFINITY, 0.0f32);
        for ((_, raw), (_, eff)) in raw_weights(&model).iter().zip(&effective_weights(&model)) {
            for (r, e) in raw.iter().zip(eff.iter()) {
                if *e != 0.0 {
                    least_kept = least_kept.min(r.abs());
                } else {
                    best_pruned = best_pruned.max(r.abs());
                }
            }
        }
        assert!(least_kept >= best_pruned, "step {i}");
    }
    assert_ne!(kept(&model), start, "the global split moved between layers");
    let effective = effective_weights(&model);
    method.finish(&mut model).unwrap();
    for ((name, raw), (_, eff)) in raw_weights(&model).iter().zip(&effective) {
        assert_bits_equal(name, raw, eff);
    }
}

#[test]
fn dnw_runs_resume_bit_identically_and_weights_come_back() {
    let dir = temp_dir("dnw-resume");
    let make = |out: &Path| {
        let mut c = short(out, "dnw", 2);
        c.sparsity.shared.target_sparsity = Some(0.9);
        c.sparsity.shared.distribution = Distribution::Global;
        c
    };
    let straight = make(&dir.join("straight"));
    let summary = finish(&straight);
    let returned = summary.method_details["returned_per_epoch"]
        .as_array()
        .unwrap();
    assert_eq!(returned.len(), 2);
    assert!(
        returned.iter().all(|n| n.as_u64().unwrap() > 0),
        "{returned:?}"
    );
    assert!(summary.overall_sparsity >= 0.9 - 1e-9);
    let split = make(&dir.join("split"));
    train_in_two_sittings(&split);
    assert_same_outputs("resumed", &straight, &split);
    let split_summary: serde_json::Value =
        sparsegrad::run::dir::read_summary(&split.out_dir()).unwrap();
    assert_eq!(split_summary["method_details"], summary.method_details);
}

#[test]
fn dnw_needs_a_target() {
    let out = Scratch::new("dnw-cli");
    let refused = out.join("refused");
    crate::cli_support::assert_error(
        &[
            "train",
            "--method",
            "dnw",
            "--out",
            refused.to_str().unwrap(),
        ],
        "--method dnw needs --target-sparsity",
    );
    crate::cli_support::assert_error(
        &[
            "train",
            "--method",
            "dnw",
            "--target-sparsity",
            "0.9",
            "--rigl-drop-fraction",
            "0.5",
            "--out",
            refused.to_str().unwrap(),
        ],
        "--rigl-drop-fraction is not used by --method dnw",
    );
}
