//! L0 (`--method l0`, `src/methods/l0.rs`): gate placement and shapes, the penalty against its
//! formula (per-layer lambdas, the L2 prior), deterministic evaluation gates, baking (the
//! export's zeros are exactly the closed gates and it computes what the gated model computes in
//! evaluation), the gates' learning-rate group, and bit-identical resumption.

use std::path::Path;

use crate::methods_support::*;
use sparsegrad::methods::{Method, MethodState};
use sparsegrad::models::{LeNet5, LeNet5Options, LeNet300};
use sparsegrad::nn::Module;
use sparsegrad::ops::sparsity::HardConcrete;
use sparsegrad::rng::{derived, seeded, uniform};
use sparsegrad::tape::{Tape, Tensor};
use sparsegrad::train::{StepInfo, TrainConfig};

fn l0_config(edit: impl FnOnce(&mut TrainConfig)) -> TrainConfig {
    let mut config = TrainConfig {
        method: "l0".parse().unwrap(),
        ..TrainConfig::default()
    };
    edit(&mut config);
    config
}

/// The method of `config`, attached to `model`, with N = `train_images`.
fn attached(
    config: &TrainConfig,
    model: &mut dyn Module<f32>,
    train_images: usize,
) -> Box<dyn Method> {
    let mut method = config.build_method().unwrap();
    method.attach(model).unwrap();
    method
        .load_state(&MethodState {
            json: serde_json::json!({ "train_images": train_images, "next_step": 0 }),
            tensors: Vec::new(),
        })
        .unwrap();
    method
}

/// Every gate parameter, by name.
fn log_alphas(model: &dyn Module<f32>) -> Vec<(String, Tensor<f32>)> {
    let mut out = Vec::new();
    model.visit("", &mut |name, p| {
        if name.ends_with("_log_alpha") {
            out.push((name.to_string(), p.value().clone()));
        }
    });
    out
}

/// Sets every gate parameter to a random value in [-4, 4] (about a third of the gates closed
/// in evaluation, some fully open).
fn scramble_gates(model: &mut dyn Module<f32>, seed: u64) {
    let mut rng = seeded(seed);
    model.visit_mut("", &mut |name, p| {
        if name.ends_with("_log_alpha") {
            p.value_mut()
                .mapv_inplace(|_| uniform(&mut rng, -4.0, 4.0) as f32);
        }
    });
}

fn logits(model: &mut dyn Module<f32>, x: &Tensor<f32>) -> Tensor<f32> {
    let tape = Tape::new();
    let _no_grad = tape.no_grad();
    (*model.forward(tape.constant(x.clone())).value()).clone()
}

fn test_gate(log_alpha: f64) -> f64 {
    let s = 1.0 / (1.0 + (-log_alpha).exp());
    (s * 1.2 - 0.1).clamp(0.0, 1.0)
}

#[test]
fn gates_sit_on_input_neurons_of_linear_layers_and_output_channels_of_convolutions() {
    let config = l0_config(|_| {});
    let mut mlp = LeNet300::<f32>::new(784, 10, &mut derived(0, 1));
    attached(&config, &mut mlp, 100);
    let shapes: Vec<(String, Vec<usize>)> = log_alphas(&mlp)
        .into_iter()
        .map(|(n, t)| (n, t.shape().to_vec()))
        .collect();
    assert_eq!(
        shapes,
        [
            ("fc1.weight_log_alpha".to_string(), vec![1, 784]),
            ("fc2.weight_log_alpha".to_string(), vec![1, 300]),
            ("fc3.weight_log_alpha".to_string(), vec![1, 100]),
        ]
    );
    let mut lenet5 = LeNet5::<f32>::new(
        (1, 28, 28),
        10,
        LeNet5Options::default(),
        &mut derived(0, 1),
    )
    .unwrap();
    attached(&config, &mut lenet5, 100);
    let shapes: Vec<Vec<usize>> = log_alphas(&lenet5)
        .into_iter()
        .map(|(_, t)| t.shape().to_vec())
        .collect();
    assert_eq!(
        shapes,
        [
            vec![20, 1, 1, 1],
            vec![50, 1, 1, 1],
            vec![1, 800],
            vec![1, 500]
        ]
    );
    // Per-weight gates have the weight's shape; drop rates per layer set log_alpha.
    let config = l0_config(|c| {
        c.sparsity.methods.l0.l0_gates = clap::ValueEnum::from_str("weight", false).unwrap();
        c.sparsity.methods.l0.l0_drop_rate = vec![0.2, 0.5, 0.7];
    });
    let mut mlp = LeNet300::<f32>::new(784, 10, &mut derived(0, 1));
    attached(&config, &mut mlp, 100);
    for ((name, la), p) in log_alphas(&mlp).into_iter().zip([0.2f64, 0.5, 0.7]) {
        let weight = name.trim_end_matches("_log_alpha");
        let mut shape = Vec::new();
        mlp.visit("", &mut |n, w| {
            if n == weight {
                shape = w.shape().to_vec();
            }
        });
        assert_eq!(la.shape(), shape.as_slice(), "{name}");
        let expected = HardConcrete::log_alpha_for_drop_rate(p) as f32;
        assert!(la.iter().all(|&a| a == expected), "{name}");
    }
}

/// The penalty equals sum_l lambda_l |g| sum_j P_j / N + (c/2) sum_j P_j sum_{g_j} w^2,
/// computed here by hand in f64 from the parameters, with a lambda per layer ("L0-sep").
#[test]
fn the_penalty_is_the_expected_l0_norm_over_n_plus_the_gated_l2_prior() {
    let lambdas = [0.3, 1.5, 0.1];
    let (n, prior) = (250usize, 0.01);
    let config = l0_config(|c| {
        c.sparsity.methods.l0.l0_lambda = lambdas.to_vec();
        c.sparsity.methods.l0.l0_l2 = prior;
    });
    let mut model = LeNet300::<f32>::new(784, 10, &mut derived(0, 1));
    let mut method = attached(&config, &mut model, n);
    scramble_gates(&mut model, 5);
    let tape = Tape::new();
    let info = StepInfo {
        epoch: 0,
        step: 0,
        steps_per_epoch: 1,
        total_steps: 1,
    };
    let penalty = method.regulariser(&model, &tape, &info).unwrap().item() as f64;
    let open = |a: f32| 1.0 / (1.0 + (-(a as f64 - (2.0 / 3.0) * (0.1f64 / 1.1).ln())).exp());
    let mut expected = 0.0;
    let mut l = 0;
    let alphas = log_alphas(&model);
    model.visit_weights("", &mut |_, w| {
        let la = &alphas[l].1;
        let raw = w.raw.value();
        let rows = raw.shape()[0];
        for (j, &a) in la.iter().enumerate() {
            let column_sq: f64 = (0..rows).map(|i| (raw[[i, j]] as f64).powi(2)).sum();
            expected += open(a) * (lambdas[l] * rows as f64 / n as f64 + 0.5 * prior * column_sq);
        }
        l += 1;
    });
    assert!(
        (penalty - expected).abs() < 2e-5 * expected,
        "{penalty} vs {expected}"
    );
}

/// Evaluation mode uses the deterministic gate min(1, max(0, sigmoid(log_alpha) 1.2 - 0.1)):
/// two passes agree bit for bit and equal the effective weights; training passes draw the
/// noise of their step.
#[test]
fn evaluation_gates_are_deterministic_and_training_gates_are_sampled() {
    let config = l0_config(|_| {});
    let mut model = LeNet300::<f32>::new(784, 10, &mut derived(0, 1));
    let mut method = attached(&config, &mut model, 100);
    scramble_gates(&mut model, 7);
    let x = random_batches(1, 8, 784, 10, 3).remove(0).0;
    model.set_training(false);
    let a = logits(&mut model, &x);
    let b = logits(&mut model, &x);
    assert_bits_equal("evaluation logits", &a, &b);
    let alphas = log_alphas(&model);
    let mut l = 0;
    model.visit_weights("", &mut |name, w| {
        let la = &alphas[l].1;
        l += 1;
        let effective = w.effective();
        let raw = w.raw.value();
        for ((i, j), &e) in effective
            .clone()
            .into_dimensionality::<ndarray::Ix2>()
            .unwrap()
            .indexed_iter()
        {
            let z = test_gate(la[[0, j]] as f64);
            let want = (z * raw[[i, j]] as f64) as f32;
            assert!(
                (e - want).abs() <= 1e-6 * want.abs().max(1e-3),
                "{name}[{i}, {j}]: {e} vs {want}"
            );
        }
    });
    // Training passes draw the noise of the current step: a new sample every step, the same
    // one when a step is repeated (what makes resumption exact).
    model.set_training(true);
    let c = logits(&mut model, &x);
    let step0 = StepInfo {
        epoch: 0,
        step: 0,
        steps_per_epoch: 2,
        total_steps: 2,
    };
    method.after_step(&mut model, &step0).unwrap();
    let d = logits(&mut model, &x);
    assert!(
        c.iter().zip(d.iter()).any(|(p, q)| p != q),
        "training gates must be sampled"
    );
    assert!(
        c.iter().zip(a.iter()).any(|(p, q)| p != q),
        "training differs from evaluation"
    );
    let e = logits(&mut model, &x);
    assert_bits_equal("the same step's sample", &d, &e);
}

/// `finish` bakes the evaluation gates: the baked weights are zero exactly in the groups whose
/// gate is closed (+0.0, no -0.0), equal z W elsewhere, and the plain model computes what the
/// gated model computed in evaluation. For convolutions the groups are output channels.
#[test]
fn baking_zeroes_exactly_the_closed_gates() {
    let config = l0_config(|_| {});
    let mut model = LeNet5::<f32>::new(
        (1, 28, 28),
        10,
        LeNet5Options::default(),
        &mut derived(0, 1),
    )
    .unwrap();
    let mut method = attached(&config, &mut model, 100);
    scramble_gates(&mut model, 9);
    let x = Tensor::from_shape_fn(ndarray::IxDyn(&[4, 1, 28, 28]), |i| {
        ((i[2] * 28 + i[3] + i[0]) % 17) as f32 / 17.0
    });
    model.set_training(false);
    let before = logits(&mut model, &x);
    let alphas = log_alphas(&model);
    method.finish(&mut model).unwrap();
    let after = logits(&mut model, &x);
    for (p, q) in before.iter().zip(after.iter()) {
        assert!((p - q).abs() <= 1e-5 * p.abs().max(1.0), "{p} vs {q}");
    }
    let mut l = 0;
    let mut closed_total = 0;
    model.visit_weights("", &mut |name, w| {
        assert!(w.transform.is_none(), "{name} still has its gate");
        let la = &alphas[l].1;
        l += 1;
        let raw = w.raw.value();
        for (index, &v) in raw.indexed_iter() {
            // The gate of this entry: output channel for 4-d weights, input column otherwise.
            let gate = if raw.ndim() == 4 {
                la[[index[0], 0, 0, 0]]
            } else {
                la[[0, index[1]]]
            };
            let closed = test_gate(gate as f64) == 0.0;
            if closed {
                assert_eq!(
                    v.to_bits(),
                    0.0f32.to_bits(),
                    "{name}{index:?} must be +0.0"
                );
            } else {
                assert!(v != 0.0, "{name}{index:?}: an open gate kept a zero");
            }
        }
        closed_total += la.iter().filter(|&&a| test_gate(a as f64) == 0.0).count();
    });
    assert!(
        closed_total > 0,
        "the scrambled gates must close some groups"
    );
    let summary = method.summary(&model);
    let architecture = summary["architecture"].as_str().unwrap().to_string();
    let open: Vec<String> = alphas
        .iter()
        .map(|(_, la)| {
            la.iter()
                .filter(|&&a| test_gate(a as f64) > 0.0)
                .count()
                .to_string()
        })
        .collect();
    assert_eq!(architecture, open.join("-"));
}

/// log_alpha has its own group: no weight decay, `--l0-lr-scale` times the learning rate.
#[test]
fn gate_parameters_get_their_own_learning_rate_and_no_decay() {
    let config = l0_config(|c| c.sparsity.methods.l0.l0_lr_scale = 4.0);
    let method = config.build_method().unwrap();
    let groups = method.param_groups();
    assert_eq!(groups.len(), 1);
    assert!(groups[0].matcher.matches("fc1.weight_log_alpha", &[1, 784]));
    assert!(!groups[0].matcher.matches("fc1.weight", &[300, 784]));
    assert_eq!(groups[0].weight_decay, Some(0.0));
    assert_eq!(groups[0].lr_scale, 4.0);
}

/// Two sittings give the same bytes as one: the gate noise of every step is a function of
/// (seed, layer, step), and N and the step are in the checkpoint.
#[test]
fn resume_is_bit_identical() {
    let dir = temp_dir("l0-resume");
    let config = |out: &Path| {
        let mut c = short(out, "l0", 2);
        c.sparsity.methods.l0.l0_lambda = vec![2.0];
        c
    };
    let straight = config(&dir.join("straight"));
    let summary = finish(&straight);
    let split = config(&dir.join("split"));
    train_in_two_sittings(&split);
    assert_same_outputs("resumed", &straight, &split);
    let details = &summary.method_details;
    assert_eq!(details["train_images"], 7200);
    assert_eq!(details["layers"].as_array().unwrap().len(), 3);
}
