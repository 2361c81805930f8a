//! Han et al. prune-retrain (`--method han`, `src/methods/han.rs`): the threshold is q times the
//! hand-computed standard deviation of the layer's kept weights, masks only shrink and stay exact
//! through retraining, the rounds' learning-rate scale, the summary's per-round kept fractions,
//! resume across rounds, and the command-line errors.

use crate::cli_support::assert_refused;
use crate::methods_support::*;
use crate::survey_support::*;
use sparsegrad::io::checkpoint;
use sparsegrad::methods::han::{Han, HanOptions};
use sparsegrad::methods::{Method, Plugin, SharedOptions, StepInfo, TrainContext};
use sparsegrad::nn::Module;
use sparsegrad::run::dir::MODEL_FILE;
use sparsegrad::sparsity::Mask;
use sparsegrad::tape::Tensor;

fn context(rounds: Option<usize>) -> TrainContext {
    TrainContext {
        shared: SharedOptions {
            rounds,
            ..SharedOptions::default()
        },
        epochs: 1,
        lr: 0.05,
        weight_decay: 5e-4,
        seed: 0,
    }
}

fn han(q: Vec<f64>) -> Han {
    let options = HanOptions {
        han_q: q,
        ..HanOptions::default()
    };
    Han::build(&options, &context(None)).unwrap()
}

fn masks(model: &dyn Module<f32>) -> Vec<Tensor<f32>> {
    let mut out = Vec::new();
    model.visit_weights("", &mut |_, w| {
        let t = w.transform.as_ref().unwrap();
        out.push(
            t.as_any()
                .downcast_ref::<Mask<f32>>()
                .unwrap()
                .values()
                .clone(),
        );
    });
    out
}

/// The population standard deviation of `values`, written out.
fn hand_std(values: &[f64]) -> f64 {
    let mut sum = 0.0;
    for v in values {
        sum += v;
    }
    let mean = sum / values.len() as f64;
    let mut squares = 0.0;
    for v in values {
        squares += (v - mean) * (v - mean);
    }
    (squares / values.len() as f64).sqrt()
}

#[test]
fn threshold_is_q_times_the_std_of_the_kept_weights() {
    let q = vec![0.7, 1.3, 1.0];
    let mut method = han(q.clone());
    let mut model = model(&spec("lenet300"), 1);
    method.attach(model.as_mut()).unwrap();
    for round in 1..=2 {
        let before_raw = raw_weights(model.as_ref());
        let before_masks = masks(model.as_ref());
        method.start_round(model.as_mut(), round).unwrap();
        let after = masks(model.as_ref());
        let recorded = &method.history()[round - 1];
        assert_eq!(recorded.round, round);
        for l in 0..3 {
            let (name, w) = &before_raw[l];
            let kept: Vec<f64> = w
                .iter()
                .zip(before_masks[l].iter())
                .filter(|(_, m)| **m != 0.0)
                .map(|(v, _)| *v as f64)
                .collect();
            let threshold = q[l] * hand_std(&kept);
            let (rec_name, rec_threshold, rec_kept) = &recorded.layers[l];
            assert_eq!(rec_name, name);
            assert!(
                (rec_threshold - threshold).abs() <= 1e-12 * threshold,
                "{name}: {rec_threshold} vs {threshold}"
            );
            let mut kept_count = 0;
            for (i, ((v, m0), m1)) in w
                .iter()
                .zip(before_masks[l].iter())
                .zip(after[l].iter())
                .enumerate()
            {
                let keep = *m0 != 0.0 && (v.abs() as f64) >= threshold;
                assert_eq!(*m1 != 0.0, keep, "round {round} {name}[{i}]");
                kept_count += keep as usize;
            }
            assert_eq!(*rec_kept, kept_count as f64 / w.len() as f64);
        }
    }
    // Round 2 pruned further (the survivors' spread is wider).
    let h = method.history();
    for l in 0..3 {
        assert!(h[1].layers[l].2 < h[0].layers[l].2);
    }
}

#[test]
fn pruned_weights_stay_exactly_zero_through_retraining() {
    let mut method = han(vec![1.0]);
    let mut model = model(&spec("lenet300"), 2);
    method.attach(model.as_mut()).unwrap();
    method.start_round(model.as_mut(), 1).unwrap();
    let pruned = masks(model.as_ref());
    let mut opt = sgd_for(&method, 0.05, 5e-4);
    let batches = random_batches(5, 16, 784, 10, 3);
    for (step_no, batch) in batches.iter().enumerate() {
        let info = StepInfo {
            epoch: 1,
            step: step_no,
            steps_per_epoch: 5,
            total_steps: 10,
        };
        step(model.as_mut(), &mut method, &mut opt, batch, info);
        assert_eq!(
            masks(model.as_ref()),
            pruned,
            "masks are fixed while retraining"
        );
        for ((name, w), m) in raw_weights(model.as_ref()).iter().zip(&pruned) {
            for (i, (v, m)) in w.iter().zip(m.iter()).enumerate() {
                assert!(*m != 0.0 || v.to_bits() == 0, "{name}[{i}] revived: {v}");
            }
        }
    }
}

#[test]
fn rounds_and_learning_rate_scale() {
    let method = Han::build(&HanOptions::default(), &context(Some(4))).unwrap();
    assert_eq!(method.rounds(), 5);
    assert_eq!(method.round_lr_scale(0), 1.0);
    assert_eq!(method.round_lr_scale(3), 0.1);
    let mut wrong = han(vec![1.0, 2.0]);
    let mut model = model(&spec("lenet300"), 1);
    assert_eq!(
        wrong.attach(model.as_mut()).unwrap_err().to_string(),
        "--han-q has 2 values; give one, or one per prunable layer (3)"
    );
}

#[test]
fn whole_run_reports_rounds_and_resumes_across_rounds_bit_identically() {
    let dir = temp_dir("han-run");
    let mut straight = short(&dir.join("straight"), "han", 1);
    straight.sparsity.shared.rounds = Some(2);
    let summary = finish(&straight);
    let details = &summary.method_details;
    let rounds = details["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 2);
    let final_kept = details["final_kept"].as_array().unwrap();
    for (l, layer) in summary.layers.iter().enumerate() {
        let kept = final_kept[l][1].as_f64().unwrap();
        assert!(
            (kept - (1.0 - layer.sparsity)).abs() < 1e-12,
            "{}",
            layer.name
        );
        assert_eq!(kept, rounds[1]["layers"][l][2].as_f64().unwrap());
    }
    // Stopped after epoch 1 (the end of the dense round), resumed into the pruning rounds.
    let mut split = straight.clone();
    split.out = Some(dir.join("split"));
    train_in_two_sittings(&split);
    let a = checkpoint::load::<f32>(&straight.out_dir().join(MODEL_FILE)).unwrap();
    let b = checkpoint::load::<f32>(&split.out_dir().join(MODEL_FILE)).unwrap();
    for ((name, x), (_, y)) in a.tensors.iter().zip(&b.tensors) {
        assert_bits_equal(name, x, y);
    }
}

#[test]
fn han_settings() {
    assert_refused(
        "train --method han --han-q 0",
        "--han-q values must be positive, got 0",
    );
    assert_refused(
        "train --method han --han-q 1,2",
        "--han-q has 2 values; give one, or one per prunable layer (3)",
    );
    assert_refused(
        "train --method han --han-lr-scale 1.5",
        "--han-lr-scale must be in (0, 1], got 1.5",
    );
    assert_refused(
        "train --method han --rounds 0",
        "--rounds must be at least 1 (pruning rounds after the dense one)",
    );
    assert_refused(
        "train --method han --target-sparsity 0.9",
        "--target-sparsity is not used by --method han",
    );
    assert_refused(
        "train --method gmp --target-sparsity 0.9 --han-q 2",
        "--han-q is not used by --method gmp",
    );
}
