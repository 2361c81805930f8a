//! GMP (`--method gmp`, `src/methods/gmp.rs`) and one-shot magnitude pruning
//! (`--method magnitude`, `src/methods/magnitude.rs`): the schedule's golden values, exact final
//! sparsity, masks that only shrink, and pruned weights (and their momentum) that stay exactly
//! zero through training.

use crate::methods_support::*;
use sparsegrad::methods::{
    Gmp, Plugin, PolynomialSchedule, Prunable, RunShape, uniform_prune_counts,
};
use sparsegrad::models::LeNet300;
use sparsegrad::nn::Module;
use sparsegrad::optim::Optimizer;
use sparsegrad::rng::derived;
use sparsegrad::sparsity::Mask;
use sparsegrad::tape::Tensor;
use sparsegrad::train::{StepInfo, TrainConfig};

fn lenet() -> LeNet300<f32> {
    LeNet300::new(784, 10, &mut derived(0, 1))
}

fn masks(model: &dyn Module<f32>) -> Vec<(String, Tensor<f32>)> {
    let mut out = Vec::new();
    model.visit_weights("", &mut |name, w| {
        if let Some(m) = w
            .transform
            .as_ref()
            .and_then(|t| t.as_any().downcast_ref::<Mask<f32>>())
        {
            out.push((name.to_string(), m.values().clone()));
        }
    });
    out
}

/// Asserts every raw weight is exactly +0.0 where its mask is 0, and every optimiser state
/// entry (momentum) is 0 where `stepped_with` (the masks the last optimiser step used) is 0.
/// Entries a method prunes after a step keep their state until the next step, which zeroes it
/// before it can move anything (`optim::step` re-zeroes the weight after the update).
fn assert_pruned_are_zero(
    model: &dyn Module<f32>,
    opt: &dyn Optimizer<f32>,
    stepped_with: &[(String, Tensor<f32>)],
    when: &str,
) {
    let state = opt.state();
    let raw = raw_weights(model);
    for (name, mask) in masks(model) {
        let (_, w) = raw.iter().find(|(n, _)| *n == name).unwrap();
        for (i, (m, v)) in mask.iter().zip(w.iter()).enumerate() {
            assert!(
                *m != 0.0 || v.to_bits() == 0,
                "{when}: {name}[{i}] is pruned but holds {v}"
            );
        }
    }
    for (name, mask) in stepped_with {
        let slots: Vec<_> = state
            .iter()
            .filter(|(n, _)| n.starts_with(&format!("{name}.")))
            .collect();
        assert!(!slots.is_empty(), "{name} has optimiser state");
        for (slot, s) in slots {
            for (i, (m, v)) in mask.iter().zip(s.iter()).enumerate() {
                assert!(*m != 0.0 || *v == 0.0, "{when}: {slot}[{i}] is {v}");
            }
        }
    }
}

fn gmp_config(target: f64) -> TrainConfig {
    let mut config = TrainConfig {
        method: "gmp".parse().unwrap(),
        ..TrainConfig::default()
    };
    config.sparsity.shared.target_sparsity = Some(target);
    config
}

#[test]
fn gmp_schedule_golden_values() {
    // Zhu & Gupta eq. (1), s_i = 0, s_f = 0.98, t_begin 2000, t_end 30000.
    let s = PolynomialSchedule::cubic(0.98, 2000, 30000, 100);
    for (t, expected) in [
        (0, 0.0),
        (2000, 0.0),
        (5000, 0.2825),
        (10000, 0.6229),
        (20000, 0.9354),
        (30000, 0.98),
        (40000, 0.98),
    ] {
        assert!(
            (s.sparsity_at(t) - expected).abs() < 5e-5,
            "s({t}) = {}, expected {expected}",
            s.sparsity_at(t)
        );
    }
    assert!(s.prunes_at(2000) && s.prunes_at(2100) && s.prunes_at(30000));
    assert!(!s.prunes_at(1900) && !s.prunes_at(2150) && !s.prunes_at(30100));
    // t_end is a pruning step even off the grid.
    let off = PolynomialSchedule { end: 2150, ..s };
    assert!(off.prunes_at(2150));
    // Defaults: 10% and 70% of the run.
    let config = gmp_config(0.9);
    let gmp = Gmp::build(&config.sparsity.methods.gmp, &config.method_context()).unwrap();
    let d = gmp.schedule(1000);
    assert_eq!((d.begin, d.end), (100, 700));
}

#[test]
fn uniform_counts_meet_the_target_exactly_and_grow_monotonically() {
    let layers = |dense: [bool; 3]| -> Vec<Prunable> {
        [
            ("fc1", vec![300, 784]),
            ("fc2", vec![100, 300]),
            ("fc3", vec![10, 100]),
        ]
        .into_iter()
        .zip(dense)
        .map(|((n, s), d)| Prunable {
            name: n.into(),
            shape: s,
            sparsified: !d,
        })
        .collect()
    };
    let cases = [
        ([false; 3], [0.5, 0.9, 0.98]),
        ([false, false, true], [0.5, 0.9, 0.98]),
        // fc1 holds 88.4% of the weights: with it dense at most 11.6% can go.
        ([true, false, false], [0.02, 0.05, 0.1]),
    ];
    for (dense, targets) in cases {
        let l = layers(dense);
        let total: usize = l.iter().map(Prunable::len).sum();
        for target in targets {
            let exact = uniform_prune_counts(&l, target, true).unwrap();
            assert_eq!(
                exact.iter().sum::<usize>(),
                (target * total as f64).round() as usize,
                "{dense:?} {target}"
            );
            for (i, layer) in l.iter().enumerate() {
                if !layer.sparsified {
                    assert_eq!(exact[i], 0);
                }
            }
        }
        // Floor counts never exceed the exact counts of the final target, and grow with it.
        let last = targets[2];
        let final_counts = uniform_prune_counts(&l, last, true).unwrap();
        let mut previous = vec![0; 3];
        for k in 0..=100 {
            let counts = uniform_prune_counts(&l, last * k as f64 / 100.0, false).unwrap();
            for i in 0..3 {
                assert!(counts[i] >= previous[i] && counts[i] <= final_counts[i]);
            }
            previous = counts;
        }
    }
    let err = uniform_prune_counts(&layers([true, false, false]), 0.95, true).unwrap_err();
    assert_eq!(
        err.to_string(),
        "--target-sparsity 0.95 cannot be met with the dense layers kept dense (the other layers hold 11.6% of the weights)"
    );
}

#[test]
fn gmp_masks_only_shrink_and_pruned_weights_stay_zero() {
    let mut config = gmp_config(0.9);
    config.sparsity.methods.gmp.prune_every = 2;
    config.sparsity.methods.gmp.prune_start = Some(2);
    config.sparsity.methods.gmp.prune_end = Some(12);
    config.sparsity.shared.last_layer_dense = true;
    let mut method = config.build_method().unwrap();
    let mut model = lenet();
    method.attach(&mut model).unwrap();
    assert_eq!(masks(&model).len(), 2, "fc3 kept dense");
    method
        .check_run(&RunShape {
            epochs: 1,
            steps_per_epoch: 16,
            rounds: 1,
        })
        .unwrap();
    let mut opt = sgd_for(method.as_ref(), 0.05, 5e-4);
    let batches = random_batches(16, 16, 784, 10, 4);
    let mut previous = masks(&model);
    for (i, b) in batches.iter().enumerate() {
        let info = StepInfo {
            epoch: 0,
            step: i,
            steps_per_epoch: 16,
            total_steps: 16,
        };
        step(&mut model, method.as_mut(), &mut opt, b, info);
        let now = masks(&model);
        for ((name, old), (_, new)) in previous.iter().zip(&now) {
            for (k, (o, n)) in old.iter().zip(new.iter()).enumerate() {
                assert!(*n <= *o, "step {i}: {name}[{k}] was revived");
            }
        }
        assert_pruned_are_zero(&model, &opt, &previous, &format!("after step {i}"));
        previous = now;
    }
    // The schedule ended at step 12: global sparsity over all three layers exactly 0.9.
    let total: usize = raw_weights(&model).iter().map(|(_, w)| w.len()).sum();
    let kept: usize = masks(&model)
        .iter()
        .map(|(_, m)| m.iter().filter(|v| **v != 0.0).count())
        .sum::<usize>()
        + 1000;
    assert_eq!(total - kept, (0.9 * total as f64).round() as usize);
}

#[test]
fn gmp_and_magnitude_runs_end_at_the_exact_target() {
    let dir = temp_dir("exact");
    for method in ["gmp", "magnitude"] {
        let mut config = short(&dir.join(method), method, 2);
        config.sparsity.shared.target_sparsity = Some(0.95);
        let summary = finish(&config);
        let pruned = summary.params_total - summary.params_nonzero;
        assert_eq!(
            pruned,
            (0.95 * summary.params_total as f64).round() as usize,
            "{method}"
        );
        for layer in &summary.layers {
            assert!(
                (layer.sparsity - 0.95).abs() < 1.0 / layer.params as f64,
                "{method}: {} {}",
                layer.name,
                layer.sparsity
            );
        }
        assert!(
            summary.test_accuracy > 0.8,
            "{method}: {}",
            summary.test_accuracy
        );
    }
}

#[test]
fn magnitude_prunes_once_and_the_masks_hold_through_fine_tuning() {
    let mut config = TrainConfig {
        method: "magnitude".parse().unwrap(),
        epochs: 3,
        ..TrainConfig::default()
    };
    config.sparsity.shared.target_sparsity = Some(0.8);
    config.sparsity.methods.magnitude.prune_epoch = Some(1);
    let mut method = config.build_method().unwrap();
    let mut model = lenet();
    method.attach(&mut model).unwrap();
    let mut opt = sgd_for(method.as_ref(), 0.05, 5e-4);
    let batches = random_batches(4, 16, 784, 10, 5);
    let mut pruned_masks = None;
    for epoch in 0..3 {
        for (i, b) in batches.iter().enumerate() {
            let info = StepInfo {
                epoch,
                step: epoch * 4 + i,
                steps_per_epoch: 4,
                total_steps: 12,
            };
            let stepped_with = masks(&model);
            step(&mut model, method.as_mut(), &mut opt, b, info);
            assert_pruned_are_zero(
                &model,
                &opt,
                &stepped_with,
                &format!("epoch {epoch} step {i}"),
            );
        }
        let before = raw_weights(&model);
        method.after_epoch(&mut model, epoch).unwrap();
        let now = masks(&model);
        match epoch {
            0 => {
                // Pruned after the first epoch: per layer the largest |w| are kept, exactly 80%
                // of the weights go.
                for ((name, mask), (_, w)) in now.iter().zip(&before) {
                    let kept = mask.iter().filter(|v| **v != 0.0).count();
                    let expected = Mask::for_sparsity(w, 0.8).unwrap();
                    assert_bits_equal(name, mask, expected.values());
                    assert_eq!(kept, w.len() - (0.8 * w.len() as f64).round() as usize);
                }
                pruned_masks = Some(now);
            }
            _ => {
                for ((name, a), (_, b)) in pruned_masks.as_ref().unwrap().iter().zip(&now) {
                    assert_bits_equal(&format!("{name} after epoch {epoch}"), a, b);
                }
            }
        }
    }
    method.finish(&mut model).unwrap();
    model.visit_weights("", &mut |name, w| assert!(w.transform.is_none(), "{name}"));
    let zeros: usize = raw_weights(&model)
        .iter()
        .map(|(_, w)| w.iter().filter(|v| **v == 0.0).count())
        .sum();
    assert_eq!(zeros, (0.8f64 * 266200.0).round() as usize);
}
