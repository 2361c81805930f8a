//! AC/DC (`--method acdc`, `src/methods/acdc.rs`): the phase plan, masks chosen by magnitude at
//! each sparse phase's start and fixed in it, all-ones masks in dense phases (pruned weights
//! back at zero with zero momentum), the last dense model exported next to the sparse one, and
//! resume bit-identity.

use std::path::Path;

use crate::methods_support::*;
use crate::scratch::Scratch;
use sparsegrad::io::checkpoint;
use sparsegrad::methods::Plugin;
use sparsegrad::methods::acdc::{Acdc, AcdcOptions, AcdcSchedule, Phase};
use sparsegrad::models::LeNet300;
use sparsegrad::nn::Module;
use sparsegrad::rng::derived;
use sparsegrad::run::dir::{CHECKPOINT_FILE, MODEL_FILE};
use sparsegrad::train::{StepInfo, TrainConfig};

fn plan(
    epochs: usize,
    warmup: Option<usize>,
    phase: Option<usize>,
    last: Option<usize>,
) -> Vec<Phase> {
    let options = AcdcOptions {
        acdc_warmup_epochs: warmup,
        acdc_phase_epochs: phase,
        acdc_final_epochs: last,
    };
    let s = AcdcSchedule::new(&options, epochs).unwrap();
    (0..epochs).map(|e| s.phase_of(e)).collect()
}

fn letters(phases: &[Phase]) -> String {
    phases
        .iter()
        .map(|p| if *p == Phase::Dense { 'D' } else { 'S' })
        .collect()
}

#[test]
fn acdc_phase_plans() {
    assert_eq!(letters(&plan(10, None, None, None)), "DSDSDSDSSS");
    assert_eq!(letters(&plan(4, None, None, None)), "DSDS");
    // The paper's ImageNet plan: 10 warm-up epochs, 5-epoch phases, a long final sparse phase.
    let p = letters(&plan(100, Some(10), Some(5), Some(15)));
    assert_eq!(&p[..10], "DDDDDDDDDD");
    assert_eq!(&p[10..20], "SSSSSDDDDD");
    assert_eq!(
        &p[80..],
        "SSSSSSSSSSSSSSSSSSSS",
        "the remainder joins the final phase"
    );
    assert_eq!(&p[75..80], "DDDDD");
    let err = AcdcSchedule::new(&AcdcOptions::default(), 3).unwrap_err();
    assert_eq!(
        err.to_string(),
        "AC/DC needs --epochs of at least warm-up + one sparse and one dense phase + the final sparse phase (1 + 2 x 1 + 1 = 4), got 3"
    );
}

fn kept_flags(model: &dyn Module<f32>) -> Vec<Vec<bool>> {
    let mut out = Vec::new();
    model.visit_weights("", &mut |_, w| {
        let mask = w.transform.as_ref().and_then(|t| t.mask()).unwrap();
        out.push(mask.iter().map(|&m| m != 0.0).collect())
    });
    out
}

#[test]
fn acdc_masks_follow_the_phases() {
    let mut config = TrainConfig {
        method: "acdc".parse().unwrap(),
        epochs: 7,
        ..TrainConfig::default()
    };
    config.sparsity.shared.target_sparsity = Some(0.8);
    let mut method = Acdc::build(&config.sparsity.methods.acdc, &config.method_context()).unwrap();
    assert_eq!(
        (0..7)
            .map(|e| method.schedule().phase_of(e))
            .collect::<Vec<_>>(),
        plan(7, None, None, None)
    );
    assert_eq!(letters(&plan(7, None, None, None)), "DSDSDSS");
    let mut model = LeNet300::new(784, 10, &mut derived(0, 1));
    sparsegrad::methods::Method::attach(&mut method, &mut model).unwrap();
    let method: &mut dyn sparsegrad::methods::Method = &mut method;
    let mut opt = sgd_for(method, 0.05, 5e-4);
    let batches = random_batches(3, 16, 784, 10, 9);
    let total = 266_200usize;
    let pruned_goal = (0.8 * total as f64).round() as usize;
    let mut step_no = 0;
    for epoch in 0..7 {
        let at_start = kept_flags(&model);
        for b in &batches {
            let info = StepInfo {
                epoch,
                step: step_no,
                steps_per_epoch: 3,
                total_steps: 21,
            };
            step(&mut model, method, &mut opt, b, info);
            step_no += 1;
            assert_eq!(
                kept_flags(&model),
                at_start,
                "the mask is fixed within a phase"
            );
        }
        let before = raw_weights(&model);
        method.after_epoch(&mut model, epoch).unwrap();
        let now = kept_flags(&model);
        let pruned: usize = now.iter().flatten().filter(|k| !**k).count();
        let phase = letters(&plan(7, None, None, None)).chars().nth(epoch + 1);
        match phase {
            Some('S') => {
                assert_eq!(pruned, pruned_goal, "after epoch {epoch}");
                // The mask keeps the largest |w| of each layer at the switch.
                for (l, (name, w)) in before.iter().enumerate() {
                    let (mut least_kept, mut best_pruned) = (f32::INFINITY, 0.0f32);
                    for (v, k) in w.iter().zip(&now[l]) {
                        if *k {
                            least_kept = least_kept.min(v.abs());
                        } else {
                            best_pruned = best_pruned.max(v.abs());
                        }
                    }
                    assert!(least_kept >= best_pruned, "{name} after epoch {epoch}");
                }
                for ((name, w), k) in raw_weights(&model).iter().zip(&now) {
                    for (v, k) in w.iter().zip(k) {
                        assert!(*k || v.to_bits() == 0, "{name}: pruned but {v}");
                    }
                }
            }
            Some('D') => {
                assert_eq!(pruned, 0, "a dense phase after epoch {epoch}");
                if epoch > 0 {
                    // The weights pruned in the sparse phase come back at zero, momentum zero.
                    let was_pruned = at_start.iter().flatten().filter(|k| !**k).count();
                    assert_eq!(was_pruned, pruned_goal);
                    for (l, (name, w)) in raw_weights(&model).iter().enumerate() {
                        let m = opt.momentum_buffer(name).unwrap();
                        for ((v, mv), k) in w.iter().zip(m.iter()).zip(&at_start[l]) {
                            assert!(*k || (v.to_bits() == 0 && *mv == 0.0), "{name}");
                        }
                    }
                }
            }
            _ => assert_eq!(pruned, pruned_goal, "the run ends sparse"),
        }
    }
    // The last dense model: taken before the final phase's pruning (after epoch 5).
    let extra = method.extra_exports();
    assert_eq!(extra.len(), 1);
    assert_eq!(extra[0].0, "dense");
    let dense_zeros: usize = extra[0]
        .1
        .iter()
        .filter(|(n, _)| n.ends_with("weight"))
        .map(|(_, t)| t.iter().filter(|v| **v == 0.0).count())
        .sum();
    assert!(
        dense_zeros < total / 10,
        "the dense snapshot is dense ({dense_zeros} zeros)"
    );
}

#[test]
fn acdc_exports_both_models_and_resumes_bit_identically() {
    let dir = temp_dir("acdc");
    let make = |out: &Path| {
        let mut c = short(out, "acdc", 4);
        c.sparsity.shared.target_sparsity = Some(0.9);
        c
    };
    let straight = make(&dir.join("straight"));
    let summary = finish(&straight);
    assert!((summary.overall_sparsity - 0.9).abs() < 1e-3);
    assert_eq!(
        summary.method_details["log"]["sparse_starts"],
        serde_json::json!([1, 3])
    );
    assert_eq!(
        summary.method_details["log"]["dense_starts"],
        serde_json::json!([2])
    );
    let sparse = checkpoint::load::<f32>(&straight.out_dir().join(MODEL_FILE)).unwrap();
    let dense =
        checkpoint::load::<f32>(&straight.out_dir().join("model.dense.safetensors")).unwrap();
    let names = |c: &checkpoint::Checkpoint<f32>| {
        c.tensors.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>()
    };
    assert_eq!(names(&sparse), names(&dense));
    let zeros = |c: &checkpoint::Checkpoint<f32>| {
        c.tensors
            .iter()
            .filter(|(n, _)| n.ends_with("weight"))
            .map(|(_, t)| t.iter().filter(|v| **v == 0.0).count())
            .sum::<usize>()
    };
    assert!(zeros(&dense) < 26_620, "{}", zeros(&dense));
    assert!(zeros(&sparse) >= 239_580);
    let split = make(&dir.join("split"));
    train_in_two_sittings(&split);
    for file in [MODEL_FILE, CHECKPOINT_FILE, "model.dense.safetensors"] {
        let a = checkpoint::load::<f32>(&straight.out_dir().join(file)).unwrap();
        let b = checkpoint::load::<f32>(&split.out_dir().join(file)).unwrap();
        assert_eq!(a.tensors.len(), b.tensors.len(), "{file}");
        for ((name, x), (other, y)) in a.tensors.iter().zip(&b.tensors) {
            assert_eq!(name, other);
            assert_bits_equal(&format!("{file}: {name}"), x, y);
        }
    }
}

#[test]
fn bad_acdc_settings_are_refused() {
    let out = Scratch::new("acdc-cli");
    let refused = out.join("refused");
    let check = |line: &str, message: &str| {
        let mut args: Vec<&str> = line.split_whitespace().collect();
        args.extend(["--out", refused.to_str().unwrap()]);
        crate::cli_support::assert_error(&args, message);
    };
    check(
        "train --method acdc",
        "--method acdc needs --target-sparsity",
    );
    check(
        "train --method acdc --target-sparsity 0.9 --acdc-phase-epochs 0",
        "--acdc-phase-epochs must be at least 1",
    );
    check(
        "train --method acdc --target-sparsity 0.9 --acdc-warmup-epochs 0",
        "--acdc-warmup-epochs must be at least 1",
    );
    check(
        "train --method acdc --target-sparsity 0.9 --acdc-phase-epochs 4",
        "AC/DC needs --epochs of at least warm-up + one sparse and one dense phase + the final sparse phase (1 + 2 x 4 + 4 = 13), got 10",
    );
}
