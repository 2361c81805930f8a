//! RigL, SET and the static control (`--method rigl | set | static`, `src/methods/dynamic.rs`,
//! `src/methods/drop_grow.rs`): the random start at the allocation's exact counts, drop / grow
//! counts per update, grown weights at zero with zero momentum, per-layer and global sparsity
//! that never change, and resume bit-identity.

use std::path::Path;

use crate::cli_support::assert_refused;
use crate::methods_support::*;
use sparsegrad::grads::Grads;
use sparsegrad::methods::drop_grow::drop_and_grow;
use sparsegrad::methods::prune::{prunable_weights, prune_counts};
use sparsegrad::methods::{Method, RunShape};
use sparsegrad::models::LeNet300;
use sparsegrad::nn::Module;
use sparsegrad::optim::{self, Sgd};
use sparsegrad::rng::derived;
use sparsegrad::sparsity::budget::Distribution;
use sparsegrad::tape::{Tape, Tensor};
use sparsegrad::train::{StepInfo, TrainConfig};

fn lenet() -> LeNet300<f32> {
    LeNet300::new(784, 10, &mut derived(0, 1))
}

fn config(method: &str, target: f64, distribution: Distribution) -> TrainConfig {
    let mut c = TrainConfig {
        method: method.parse().unwrap(),
        ..TrainConfig::default()
    };
    c.sparsity.shared.target_sparsity = Some(target);
    c.sparsity.shared.distribution = distribution;
    c
}

/// Per layer: the mask (None for a layer without one) as kept flags.
fn kept(model: &dyn Module<f32>) -> Vec<Option<Vec<bool>>> {
    let mut out = Vec::new();
    model.visit_weights("", &mut |_, w| {
        out.push(
            w.transform
                .as_ref()
                .and_then(|t| t.mask())
                .map(|m| m.iter().map(|&v| v != 0.0).collect()),
        )
    });
    out
}

fn counts(masks: &[Option<Vec<bool>>]) -> Vec<Option<usize>> {
    masks
        .iter()
        .map(|m| m.as_ref().map(|m| m.iter().filter(|&&k| k).count()))
        .collect()
}

/// One training step as the loop takes it, with the effective-weight gradients kept when the
/// method asks; returns |dL/d(W m)| per layer when they were kept, and |w| per layer after the
/// optimiser step (before the method's update).
fn step_keeping_grads(
    model: &mut dyn Module<f32>,
    method: &mut dyn Method,
    opt: &mut Sgd<f32>,
    batch: &(Tensor<f32>, Vec<usize>),
    info: StepInfo,
) -> (Option<Vec<Vec<f64>>>, Vec<Vec<f64>>) {
    let retain = method.wants_effective_grads(&info);
    model.visit_weights_mut("", &mut |_, w| w.retain_effective_grad = retain);
    let tape = Tape::new();
    let logits = model.forward(tape.constant(batch.0.clone()));
    let loss = logits.cross_entropy(&batch.1, 0.0);
    let mut grads: Grads<f32> = loss.backward();
    let mut dense = Vec::new();
    model.visit_weights("", &mut |_, w| {
        dense.push(
            w.effective_grad(&grads)
                .map(|g| g.iter().map(|v| v.abs() as f64).collect::<Vec<f64>>())
                .unwrap_or_default(),
        )
    });
    method.after_backward(model, &mut grads, &info).unwrap();
    optim::step(opt, model, &grads);
    let stepped = raw_weights(model)
        .iter()
        .map(|(_, w)| w.iter().map(|v| v.abs() as f64).collect())
        .collect();
    method.after_step(model, &info).unwrap();
    (retain.then_some(dense), stepped)
}

#[test]
fn the_random_start_meets_the_allocation_exactly() {
    for (method, distribution) in [
        ("rigl", Distribution::Erk),
        ("set", Distribution::Uniform),
        ("static", Distribution::Erk),
    ] {
        let c = config(method, 0.9, distribution);
        let mut m = c.build_method().unwrap();
        let mut model = lenet();
        m.attach(&mut model).unwrap();
        let layers = prunable_weights(&model, false, false).unwrap();
        let expected =
            prune_counts(&layers, distribution, &vec![vec![]; 3], &[], 0.9, true).unwrap();
        let masks = kept(&model);
        let raw = raw_weights(&model);
        let mut pruned = 0;
        for (l, layer) in layers.iter().enumerate() {
            let mask = masks[l].as_ref().unwrap();
            let zeros = mask.iter().filter(|&&k| !k).count();
            assert_eq!(zeros, expected[l], "{method}: {}", layer.name);
            for (i, &k) in mask.iter().enumerate() {
                assert!(k || raw[l].1.as_slice().unwrap()[i].to_bits() == 0);
            }
            pruned += zeros;
        }
        assert_eq!(pruned, (0.9f64 * 266_200.0).round() as usize, "{method}");
    }
    // ERK keeps the small classifier denser than the input layer (here fully dense).
    let c = config("rigl", 0.9, Distribution::Erk);
    let mut m = c.build_method().unwrap();
    let mut model = lenet();
    m.attach(&mut model).unwrap();
    let c = counts(&kept(&model));
    assert_eq!(c[2], Some(1000));
    // Another seed draws another mask at the same counts.
    let mut other = config("rigl", 0.9, Distribution::Erk);
    other.seed = 7;
    let mut m = other.build_method().unwrap();
    let mut model2 = lenet();
    m.attach(&mut model2).unwrap();
    assert_eq!(counts(&kept(&model2)), c);
    assert_ne!(kept(&model2), kept(&model));
}

/// Runs `method` for 12 steps of 16 random examples with updates every 3 steps (end 75% = step
/// 9), checking every update against `drop_and_grow` and the invariants.
fn run_updates(method_name: &str) -> Vec<Option<Vec<bool>>> {
    let mut c = config(method_name, 0.8, Distribution::Uniform);
    match method_name {
        "rigl" => c.sparsity.methods.rigl.rigl_update_every = 3,
        "set" => c.sparsity.methods.set.set_update_every = 3,
        _ => {}
    }
    let mut method = c.build_method().unwrap();
    let mut model = lenet();
    method.attach(&mut model).unwrap();
    let run = RunShape {
        epochs: 1,
        steps_per_epoch: 12,
        rounds: 1,
    };
    method.check_run(&run).unwrap();
    let mut opt = sgd_for(method.as_ref(), 0.05, 5e-4);
    let start_counts = counts(&kept(&model));
    let mut updates = 0;
    let mut grown_last: Vec<(usize, usize)> = Vec::new();
    for (i, b) in random_batches(12, 16, 784, 10, 3).iter().enumerate() {
        let info = StepInfo {
            epoch: 0,
            step: i,
            steps_per_epoch: 12,
            total_steps: 12,
        };
        let before = kept(&model);
        let (dense, stepped) = step_keeping_grads(&mut model, method.as_mut(), &mut opt, b, info);
        let after = kept(&model);
        if !grown_last.is_empty() {
            // The weights grown at the last update left zero at the next step.
            let raw = raw_weights(&model);
            let moved = grown_last
                .iter()
                .filter(|&&(l, i)| raw[l].1.as_slice().unwrap()[i] != 0.0)
                .count();
            assert!(moved > 0, "no grown weight trained at step {}", i + 1);
            grown_last.clear();
        }
        let t = i + 1;
        let update = t % 3 == 0 && t <= 9 && method_name != "static";
        assert_eq!(dense.is_some(), update && method_name == "rigl", "step {t}");
        assert_eq!(counts(&after), start_counts, "per-layer counts, step {t}");
        if !update {
            assert_eq!(after, before, "no update after step {t}");
            continue;
        }
        updates += 1;
        // f(t) = 0.3 / 2 (1 + cos(pi t / 9)).
        let f = 0.15 * (1.0 + (std::f64::consts::PI * t as f64 / 9.0).cos());
        let raw = raw_weights(&model);
        let momentum: Vec<Tensor<f32>> = raw
            .iter()
            .map(|(n, _)| opt.momentum_buffer(n).unwrap().clone())
            .collect();
        for l in 0..3 {
            let (old, new) = (before[l].as_ref().unwrap(), after[l].as_ref().unwrap());
            let active = old.iter().filter(|&&k| k).count();
            let dropped = old.iter().zip(new).filter(|(o, n)| **o && !**n).count();
            let grown = old.iter().zip(new).filter(|(o, n)| !**o && **n).count();
            let expected = (active as f64 * f).floor() as usize;
            // Weights dropped and grown back in one update count in neither.
            assert!(
                dropped <= expected && dropped == grown,
                "layer {l}, step {t}"
            );
            if method_name == "rigl" {
                // f(9) = 0: the last update moves nothing.
                assert_eq!(dropped > 0, t < 9, "layer {l}, step {t}");
                // Drop by |w| after the optimiser step, grow by |dL/d(W m)| of the step's batch.
                let dense = dense.as_ref().unwrap();
                let (want, moved) = drop_and_grow(old, &stepped[l], &dense[l], f);
                assert_eq!(moved.dropped, expected, "layer {l}, step {t}");
                assert_eq!(&want, new, "layer {l}, step {t}");
                // The grown weights have the largest |gradient| among the candidates.
                let least_grown = (0..new.len())
                    .filter(|&i| !old[i] && new[i])
                    .map(|i| dense[l][i])
                    .fold(f64::INFINITY, f64::min);
                let best_left = (0..new.len())
                    .filter(|&i| !old[i] && !new[i])
                    .map(|i| dense[l][i])
                    .fold(0.0, f64::max);
                assert!(least_grown >= best_left, "layer {l}, step {t}");
            }
            for (i, (&o, &n)) in old.iter().zip(new).enumerate() {
                let (w, m) = (
                    raw[l].1.as_slice().unwrap()[i],
                    momentum[l].as_slice().unwrap()[i],
                );
                if !n {
                    assert_eq!(w.to_bits(), 0, "pruned layer {l}[{i}] holds {w}");
                }
                if !o && n {
                    grown_last.push((l, i));
                    assert_eq!(w.to_bits(), 0, "grown layer {l}[{i}] starts at {w}");
                    assert_eq!(m, 0.0, "grown layer {l}[{i}] has momentum {m}");
                }
            }
        }
    }
    if method_name != "static" {
        assert_eq!(updates, 3);
    }
    kept(&model)
}

#[test]
fn rigl_updates_drop_and_grow_at_fixed_counts() {
    run_updates("rigl");
}

#[test]
fn set_updates_drop_and_grow_at_fixed_counts() {
    run_updates("set");
}

#[test]
fn static_mask_never_moves() {
    run_updates("static");
}

#[test]
fn rigl_and_set_resume_bit_identically() {
    for method in ["rigl", "set"] {
        let dir = temp_dir(&format!("resume-{method}"));
        let make = |out: &Path| {
            let mut c = short(out, method, 2);
            c.sparsity.shared.target_sparsity = Some(0.9);
            c.sparsity.shared.distribution = Distribution::Erk;
            c.sparsity.methods.rigl.rigl_update_every = 20;
            c.sparsity.methods.set.set_update_every = 20;
            if method == "rigl" {
                c.sparsity.methods.set = Default::default();
            } else {
                c.sparsity.methods.rigl = Default::default();
            }
            c
        };
        let straight = make(&dir.join("straight"));
        let summary = finish(&straight);
        assert!(summary.method_details["updates"].as_u64().unwrap() >= 4);
        // Grown weights that never get a gradient (border pixels) stay exactly 0: at least the
        // masks' sparsity.
        let s = summary.overall_sparsity;
        assert!((0.9 - 1e-9..0.905).contains(&s), "{method}: {s}");
        let split = make(&dir.join("split"));
        train_in_two_sittings(&split);
        assert_same_outputs(method, &straight, &split);
    }
}

#[test]
fn bad_dynamic_settings_are_refused() {
    for method in ["rigl", "set", "static"] {
        assert_refused(
            &format!("train --method {method}"),
            &format!("--method {method} needs --target-sparsity"),
        );
    }
    for method in ["rigl", "set"] {
        let base = format!("train --method {method} --target-sparsity 0.9");
        assert_refused(
            &format!("{base} --{method}-update-every 0"),
            &format!("--{method}-update-every must be at least 1"),
        );
        assert_refused(
            &format!("{base} --{method}-drop-fraction 1.5"),
            &format!("--{method}-drop-fraction must be in (0, 1), got 1.5"),
        );
        assert_refused(
            &format!("{base} --{method}-end-fraction 0"),
            &format!("--{method}-end-fraction must be in (0, 1], got 0"),
        );
        assert_refused(
            &format!("{base} --epochs 1 --{method}-update-every 200"),
            &format!(
                "--{method}-update-every (200) is past the last mask update step (85 = --{method}-end-fraction x 113 steps): the mask would never change"
            ),
        );
    }
    assert_refused(
        "train --method static --target-sparsity 0.9 --rigl-update-every 5",
        "--rigl-update-every is not used by --method static",
    );
    assert_refused(
        "train --method rigl --target-sparsity 0.9 --set-drop-fraction 0.5",
        "--set-drop-fraction is not used by --method rigl",
    );
}
