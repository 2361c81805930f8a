//! Lottery tickets (`--method lottery`, `src/methods/lottery.rs`): rewinding restores exactly the
//! saved values (at init, or after `--rewind-step` steps) and the reinit control does not; the
//! per-layer and global pruning counts; the random-prune control's counts; masks exact through
//! training; per-round summary rows; resume within a round and across rounds bit-identical;
//! command-line errors.

use crate::cli_support::assert_refused;
use crate::methods_support::*;
use crate::survey_support::*;
use sparsegrad::methods::lottery::{
    Lottery, LotteryControl, LotteryOptions, LotteryScope, snapshot,
};
use sparsegrad::methods::{Method, Plugin, SharedOptions, StepInfo, TrainContext};
use sparsegrad::nn::Module;
use sparsegrad::tape::Tensor;

fn lottery(options: LotteryOptions) -> Lottery {
    let context = TrainContext {
        shared: SharedOptions::default(),
        epochs: 1,
        lr: 0.05,
        weight_decay: 5e-4,
        seed: 0,
    };
    Lottery::build(&options, &context).unwrap()
}

fn info(step: usize) -> StepInfo {
    StepInfo {
        epoch: 0,
        step,
        steps_per_epoch: 4,
        total_steps: 8,
    }
}

/// Attaches and inits `method` on a LeNet-300, then trains 4 steps; returns the model.
fn trained(method: &mut Lottery) -> Box<dyn Module<f32>> {
    let spec = spec("lenet300");
    let mut model = model(&spec, 1);
    method.attach(model.as_mut()).unwrap();
    let data = synthetic(20, 10, 1);
    with_init_data(&data, &spec, 10, 0, |d| method.init(model.as_mut(), d)).unwrap();
    let mut opt = sgd_for(method, 0.05, 5e-4);
    for (i, batch) in random_batches(4, 16, 784, 10, 5).iter().enumerate() {
        step(model.as_mut(), method, &mut opt, batch, info(i));
    }
    model
}

fn kept_counts(model: &dyn Module<f32>) -> Vec<usize> {
    let mut out = Vec::new();
    model.visit_weights("", &mut |_, w| {
        out.push(w.effective().iter().filter(|v| **v != 0.0).count())
    });
    out
}

fn all_params(model: &dyn Module<f32>) -> Vec<(String, Tensor<f32>)> {
    snapshot(model)
}

/// After `start_round`, every kept weight and every other parameter equals `expected` bit for
/// bit, every pruned weight is +0.0.
fn assert_rewound_to(model: &dyn Module<f32>, expected: &[(String, Tensor<f32>)]) {
    let now = all_params(model);
    let pruned = sparsegrad::methods::prune::masked_out(model);
    let weight_names: Vec<String> = raw_weights(model).into_iter().map(|(n, _)| n).collect();
    assert_eq!(now.len(), expected.len());
    for ((name, v), (other, e)) in now.iter().zip(expected) {
        assert_eq!(name, other);
        match weight_names.iter().position(|n| n == name) {
            Some(l) => {
                for (i, ((x, y), p)) in v.iter().zip(e.iter()).zip(&pruned[l]).enumerate() {
                    let want = if *p { 0.0f32 } else { *y };
                    assert_eq!(x.to_bits(), want.to_bits(), "{name}[{i}]");
                }
            }
            None => assert_bits_equal(name, v, e),
        }
    }
}

#[test]
fn rewinding_restores_exactly_the_initial_values() {
    let mut method = lottery(LotteryOptions::default());
    let spec = spec("lenet300");
    let initial = all_params(model(&spec, 1).as_ref());
    let mut model = trained(&mut method);
    assert_eq!(method.rewind_point(), initial.as_slice());
    method.start_round(model.as_mut(), 1).unwrap();
    assert_rewound_to(model.as_ref(), &initial);
    // The paper's rates: 20% per layer, 10% of the output layer (ceil of fraction x kept).
    assert_eq!(
        kept_counts(model.as_ref()),
        vec![235200 - 47040, 30000 - 6000, 1000 - 100]
    );
    method.start_round(model.as_mut(), 2).unwrap();
    assert_eq!(
        kept_counts(model.as_ref()),
        vec![188160 - 37632, 24000 - 4800, 900 - 90]
    );
    assert_rewound_to(model.as_ref(), &initial);
}

#[test]
fn late_rewinding_restores_the_values_after_the_rewind_step() {
    let mut method = lottery(LotteryOptions {
        rewind_step: Some(2),
        ..LotteryOptions::default()
    });
    // The same 2 steps by hand.
    let spec = spec("lenet300");
    let mut reference = model(&spec, 1);
    let mut plain = lottery(LotteryOptions::default());
    plain.attach(reference.as_mut()).unwrap();
    let mut opt = sgd_for(&plain, 0.05, 5e-4);
    for (i, batch) in random_batches(2, 16, 784, 10, 5).iter().enumerate() {
        step(reference.as_mut(), &mut plain, &mut opt, batch, info(i));
    }
    let after_two = all_params(reference.as_ref());
    let mut model = trained(&mut method);
    assert_eq!(method.rewind_point(), after_two.as_slice());
    method.start_round(model.as_mut(), 1).unwrap();
    assert_rewound_to(model.as_ref(), &after_two);
}

#[test]
fn the_reinit_control_does_not_rewind() {
    let mut method = lottery(LotteryOptions {
        lottery_control: LotteryControl::Reinit,
        ..LotteryOptions::default()
    });
    let spec = spec("lenet300");
    let initial = all_params(model(&spec, 1).as_ref());
    let mut model = trained(&mut method);
    let counts_ticket = {
        let mut ticket = lottery(LotteryOptions::default());
        let mut m = trained(&mut ticket);
        ticket.start_round(m.as_mut(), 1).unwrap();
        kept_counts(m.as_ref())
    };
    method.start_round(model.as_mut(), 1).unwrap();
    assert_eq!(kept_counts(model.as_ref()), counts_ticket);
    let now = all_params(model.as_ref());
    for ((name, v), (_, init)) in now.iter().zip(&initial) {
        let same = v
            .iter()
            .zip(init.iter())
            .filter(|(a, b)| **a != 0.0 && a.to_bits() == b.to_bits())
            .count();
        assert_eq!(same, 0, "{name}: {same} survivors kept their initial value");
    }
}

#[test]
fn random_prune_keeps_the_tickets_counts_not_its_mask() {
    let mut ticket = lottery(LotteryOptions::default());
    let mut random = lottery(LotteryOptions {
        lottery_control: LotteryControl::RandomPrune,
        ..LotteryOptions::default()
    });
    let mut a = trained(&mut ticket);
    let mut b = trained(&mut random);
    ticket.start_round(a.as_mut(), 1).unwrap();
    random.start_round(b.as_mut(), 1).unwrap();
    assert_eq!(kept_counts(a.as_ref()), kept_counts(b.as_ref()));
    let ma = sparsegrad::methods::prune::masked_out(a.as_ref());
    let mb = sparsegrad::methods::prune::masked_out(b.as_ref());
    assert_ne!(ma[0], mb[0]);
}

#[test]
fn global_scope_ranks_all_layers_but_the_output_one() {
    let mut method = lottery(LotteryOptions {
        lottery_scope: LotteryScope::Global,
        ..LotteryOptions::default()
    });
    let mut model = trained(&mut method);
    let magnitudes: Vec<(String, Tensor<f32>)> = raw_weights(model.as_ref());
    method.start_round(model.as_mut(), 1).unwrap();
    let kept = kept_counts(model.as_ref());
    assert_eq!(kept[2], 900, "the output layer prunes its own 10%");
    let ranked = 235200 + 30000;
    assert_eq!(
        kept[0] + kept[1],
        ranked - (0.2 * ranked as f64).ceil() as usize
    );
    // Every pruned weight of fc1 / fc2 is at most every kept one in |w|.
    let pruned = sparsegrad::methods::prune::masked_out(model.as_ref());
    let (mut max_pruned, mut min_kept) = (0.0f32, f32::INFINITY);
    for l in 0..2 {
        for (v, p) in magnitudes[l].1.iter().zip(&pruned[l]) {
            if *p {
                max_pruned = max_pruned.max(v.abs());
            } else {
                min_kept = min_kept.min(v.abs());
            }
        }
    }
    assert!(max_pruned <= min_kept);
}

fn config(out: &std::path::Path, epochs: usize) -> sparsegrad::train::TrainConfig {
    let mut c = short(out, "lottery", epochs);
    c.sparsity.shared.rounds = Some(2);
    c
}

#[test]
fn whole_run_rows_and_resume_within_and_across_rounds() {
    let dir = temp_dir("lottery-run");
    // Rounds of 2 epochs: stopping after epoch 1 resumes within round 0.
    let straight = config(&dir.join("straight"), 2);
    let summary = finish(&straight);
    let rows = summary.method_details["rounds"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    let densities: Vec<f64> = rows
        .iter()
        .map(|r| r["density"].as_f64().unwrap())
        .collect();
    assert_eq!(densities[0], 1.0);
    assert!(densities[1] < 0.81 && densities[1] > 0.79, "{densities:?}");
    assert!(densities[2] < densities[1]);
    for row in rows {
        let it = row["best_val_iteration"].as_u64().unwrap();
        assert!(it == 57 || it == 114, "{row}");
        assert!(row.get("best_test_accuracy").is_none(), "{row}");
        assert!(row["test_accuracy_at_best_val"].as_f64().is_some(), "{row}");
    }
    assert_eq!(
        rows[2]["final_test_accuracy"].as_f64().unwrap(),
        summary.test_accuracy
    );
    let mut split = straight.clone();
    split.out = Some(dir.join("split"));
    train_in_two_sittings(&split);
    assert_same_outputs("resumed", &straight, &split);
    let again = serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(split.out_dir().join("summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        &again["method_details"]["rounds"],
        &summary.method_details["rounds"]
    );
    // Rounds of 1 epoch: stopping after epoch 1 resumes at the start of round 1 (prune, rewind).
    let straight = config(&dir.join("straight1"), 1);
    finish(&straight);
    let mut split = straight.clone();
    split.out = Some(dir.join("split1"));
    train_in_two_sittings(&split);
    assert_same_outputs("resumed", &straight, &split);
}

#[test]
fn lottery_settings() {
    assert_refused(
        "train --method lottery --prune-fraction 1",
        "--prune-fraction must be in (0, 1), got 1",
    );
    assert_refused(
        "train --method lottery --prune-fraction 0",
        "--prune-fraction must be in (0, 1), got 0",
    );
    assert_refused(
        "train --method lottery --output-prune-fraction -0.1",
        "--output-prune-fraction must be in [0, 1), got -0.1",
    );
    assert_refused(
        "train --method lottery --epochs 1 --rewind-step 1000",
        "--rewind-step (1000) must be within the first round (--epochs 1 x 113 steps = 113 steps)",
    );
    assert_refused(
        "train --method lottery --target-sparsity 0.5",
        "--target-sparsity is not used by --method lottery",
    );
    assert_refused(
        "train --method han --lottery-control reinit",
        "--lottery-control is not used by --method han",
    );
}
