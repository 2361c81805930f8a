//! STR (`--method str`, `src/methods/str.rs`): threshold parameters and their optimiser group,
//! layers kept dense, every granularity, the target controller, the no-pruning warning, baking,
//! and bit-identical resumption. Whole runs are LeNet-300 on the bundled data, 1-2 epochs.

use std::path::Path;
use std::process::Command;

use crate::methods_support::*;
use sparsegrad::io::checkpoint;
use sparsegrad::methods::bake;
use sparsegrad::models::LeNet300;
use sparsegrad::nn::Module;
use sparsegrad::optim::groups::resolve;
use sparsegrad::optim::{Hyper, Optimizer, ParamGroup, ParamMatch, Sgd, SgdConfig};
use sparsegrad::rng::derived;
use sparsegrad::run::dir::{CHECKPOINT_FILE, MODEL_FILE};
use sparsegrad::sparsity::SoftThreshold;
use sparsegrad::tape::Tape;
use sparsegrad::train::{StepInfo, TrainConfig};

fn lenet() -> LeNet300<f32> {
    LeNet300::new(784, 10, &mut derived(0, 1))
}

fn str_config(granularity: &str, s_init: f64) -> TrainConfig {
    let mut config = TrainConfig {
        method: "str".parse().unwrap(),
        ..TrainConfig::default()
    };
    config.sparsity.methods.str.str_granularity =
        clap::ValueEnum::from_str(granularity, false).unwrap();
    config.sparsity.methods.str.s_init = s_init;
    config
}

/// Names and shapes of the threshold parameters a prepared model visits.
fn thresholds(model: &dyn Module<f32>) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    model.visit("", &mut |name, p| {
        if name.ends_with("_threshold") {
            assert!(p.trainable(), "{name} must be trainable");
            out.push((name.to_string(), p.shape().to_vec()));
        }
    });
    out
}

fn info(step: usize, total: usize) -> StepInfo {
    StepInfo {
        epoch: 0,
        step,
        steps_per_epoch: total,
        total_steps: total,
    }
}

#[test]
fn thresholds_have_their_own_group_with_the_weights_decay() {
    let mut config = str_config("layer", -5.0);
    let method = config.build_method().unwrap();
    let groups = method.param_groups();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].matcher, ParamMatch::Suffix("_threshold".into()));
    assert_eq!(
        groups[0].weight_decay,
        Some(config.weight_decay),
        "paper: same lambda"
    );
    config.sparsity.methods.str.threshold_decay = Some(0.0);
    let overridden = config.build_method().unwrap().param_groups();
    assert_eq!(overridden[0].weight_decay, Some(0.0));

    // Listed before the biases/batchnorm group (as the trainer does with --bias-decay), the
    // scalar thresholds resolve to their own decay, not the biases'.
    let mut all = groups.clone();
    all.push(ParamGroup::new(ParamMatch::BiasesAndNorms).with_weight_decay(0.123));
    let defaults = Hyper {
        lr: 0.1,
        weight_decay: 5e-4,
    };
    let hyper = |name: &str, shape: &[usize]| resolve(&all, name, shape, defaults).unwrap();
    assert_eq!(hyper("fc1.weight_threshold", &[]).weight_decay, 5e-4);
    assert_eq!(hyper("fc1.bias", &[300]).weight_decay, 0.123);

    // And the optimiser applies it: with s = -3200, g'(s) = 0, so the loss gives s no gradient
    // and one SGD step moves s by exactly -lr * decay * s.
    let mut config = str_config("layer", -3200.0);
    config.sparsity.methods.str.threshold_decay = Some(0.01);
    let mut method = config.build_method().unwrap();
    let mut model = lenet();
    method.attach(&mut model).unwrap();
    let mut opt = Sgd::new(SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 5e-4,
        ..SgdConfig::default()
    });
    opt.set_groups(all_with(method.param_groups(), 0.123))
        .unwrap();
    let batch = &random_batches(1, 8, 784, 10, 1)[0];
    step(&mut model, method.as_mut(), &mut opt, batch, info(0, 1));
    let expected = -3200.0f32 - 0.1 * (0.01 * -3200.0f32);
    let st = model.fc1.weight.transform.as_ref().unwrap();
    let s = st
        .as_any()
        .downcast_ref::<SoftThreshold<f32>>()
        .unwrap()
        .s();
    assert_eq!(s[[]], expected);
}

fn all_with(mut groups: Vec<ParamGroup>, bias_decay: f64) -> Vec<ParamGroup> {
    groups.push(ParamGroup::new(ParamMatch::BiasesAndNorms).with_weight_decay(bias_decay));
    groups
}

#[test]
fn first_and_last_layer_dense_flags_leave_those_layers_without_a_threshold() {
    let cases = [
        (false, false, vec!["fc1", "fc2", "fc3"]),
        (true, false, vec!["fc2", "fc3"]),
        (false, true, vec!["fc1", "fc2"]),
        (true, true, vec!["fc2"]),
    ];
    for (first, last, expected) in cases {
        let mut config = str_config("layer", -5.0);
        config.sparsity.shared.first_layer_dense = first;
        config.sparsity.shared.last_layer_dense = last;
        let mut model = lenet();
        config.build_method().unwrap().attach(&mut model).unwrap();
        let names: Vec<String> = thresholds(&model).into_iter().map(|t| t.0).collect();
        let expected: Vec<String> = expected
            .iter()
            .map(|l| format!("{l}.weight_threshold"))
            .collect();
        assert_eq!(names, expected, "first dense {first}, last dense {last}");
    }
}

#[test]
fn every_granularity_has_its_threshold_shapes_and_trains() {
    let dir = temp_dir("granularity");
    type Shapes<'a> = Vec<(&'a str, Vec<usize>)>;
    let cases: [(&str, Shapes); 4] = [
        (
            "layer",
            vec![
                ("fc1.weight_threshold", vec![]),
                ("fc2.weight_threshold", vec![]),
                ("fc3.weight_threshold", vec![]),
            ],
        ),
        (
            "channel",
            vec![
                ("fc1.weight_threshold", vec![300, 1]),
                ("fc2.weight_threshold", vec![100, 1]),
                ("fc3.weight_threshold", vec![10, 1]),
            ],
        ),
        ("global", vec![("fc1.weight_threshold", vec![])]),
        (
            "weight",
            vec![
                ("fc1.weight_threshold", vec![300, 784]),
                ("fc2.weight_threshold", vec![100, 300]),
                ("fc3.weight_threshold", vec![10, 100]),
            ],
        ),
    ];
    for (granularity, expected) in cases {
        let mut model = lenet();
        str_config(granularity, -5.0)
            .build_method()
            .unwrap()
            .attach(&mut model)
            .unwrap();
        let expected: Vec<(String, Vec<usize>)> = expected
            .into_iter()
            .map(|(n, s)| (n.to_string(), s))
            .collect();
        assert_eq!(thresholds(&model), expected, "{granularity}");

        let mut config = short(&dir.join(granularity), "str", 1);
        config.sparsity.methods.str.str_granularity =
            clap::ValueEnum::from_str(granularity, false).unwrap();
        let summary = finish(&config);
        assert!(
            summary.test_accuracy > 0.8,
            "{granularity}: accuracy {}",
            summary.test_accuracy
        );
        // s_init -5 (g = 0.0067) prunes from the first step, in every layer.
        for layer in &summary.layers {
            assert!(
                layer.sparsity > 0.01,
                "{granularity}: {} sparsity {}",
                layer.name,
                layer.sparsity
            );
        }
        let thresholds: Vec<Option<f64>> = summary.layers.iter().map(|l| l.threshold).collect();
        match granularity {
            // One value per layer; the global one is the same in every layer.
            "layer" => assert!(thresholds.iter().all(Option::is_some)),
            "global" => assert!(
                thresholds
                    .iter()
                    .all(|t| t.is_some() && *t == thresholds[0]),
                "{thresholds:?}"
            ),
            _ => assert!(thresholds.iter().all(Option::is_none), "{thresholds:?}"),
        }
    }
}

#[test]
fn controller_ends_the_run_at_the_target_sparsity() {
    let dir = temp_dir("controller");
    let free = finish(&short(&dir.join("free"), "str", 2)).overall_sparsity;
    for (granularity, target) in [("layer", 0.9), ("layer", 0.98), ("global", 0.95)] {
        let mut config = short(&dir.join(format!("{granularity}{target}")), "str", 2);
        config.sparsity.shared.target_sparsity = Some(target);
        config.sparsity.methods.str.str_granularity =
            clap::ValueEnum::from_str(granularity, false).unwrap();
        if granularity == "global" {
            // With the defaults (multiplier, histogram bridge) one global threshold overshoots
            // 0.95 in 2 epochs (98.58% learned; the fix-up moves 72% of the kept weights and
            // warns): this checks the constant-weight KDE controller there.
            let str_options = &mut config.sparsity.methods.str;
            str_options.controller_dual_lr = 0.0;
            str_options.controller_density = clap::ValueEnum::from_str("kde", false).unwrap();
        }
        let summary = finish(&config);
        let reached = summary.overall_sparsity;
        assert!(
            (reached - target).abs() < 0.005,
            "{granularity}, target {target}: ended at {reached} (without controller {free})"
        );
        assert!((free - target).abs() > 0.5, "without controller: {free}");
        assert!(summary.test_accuracy > 0.8, "{}", summary.test_accuracy);
    }
}

#[test]
fn controller_per_channel_and_linear_loss_move_toward_the_target() {
    let dir = temp_dir("controller-variants");
    let free = finish(&short(&dir.join("free"), "str", 1)).overall_sparsity;
    for (granularity, loss) in [("channel", "log"), ("layer", "linear")] {
        let mut config = short(&dir.join(format!("{granularity}-{loss}")), "str", 1);
        config.sparsity.shared.target_sparsity = Some(0.9);
        config.sparsity.methods.str.str_granularity =
            clap::ValueEnum::from_str(granularity, false).unwrap();
        config.sparsity.methods.str.controller_loss =
            clap::ValueEnum::from_str(loss, false).unwrap();
        config.sparsity.methods.str.controller_ramp = 0.0;
        let reached = finish(&config).overall_sparsity;
        assert!(
            (reached - 0.9).abs() < 0.5 * (free - 0.9).abs(),
            "{granularity}/{loss}: {reached}, without controller {free}"
        );
    }
}

#[test]
fn controller_loss_is_the_gap_to_the_scheduled_target() {
    use sparsegrad::methods::{ControlScale, Controller};
    use sparsegrad::ops::sparsity::Density;
    let controller = |scale, ramp| Controller {
        target: 0.9,
        weight: 2.0,
        density: Density::paper(),
        scale,
        ramp,
        dual_lr: 0.0,
    };
    let value = |c: &Controller, now: f32, t: usize| {
        let tape = Tape::<f32>::new();
        let v = tape.leaf(ndarray::arr0(now).into_dyn());
        c.loss(v, t, 100, 0.0).item() as f64
    };
    let close = |a: f64, b: f64| (a - b).abs() < 1e-5 * (1.0 + b.abs());
    let linear = controller(ControlScale::Linear, 0.0);
    assert!(close(value(&linear, 0.5, 0), 2.0 * 0.4));
    assert!(close(value(&linear, 0.95, 0), 2.0 * 0.05));
    let log = controller(ControlScale::LogDensity, 0.0);
    assert!(close(value(&log, 0.5, 0), 2.0 * (0.5f64 / 0.1).ln()));
    // Everything pruned: finite (the kept fraction is floored at 1e-12).
    assert!(close(value(&log, 1.0, 0), 2.0 * (0.1f64 / 1e-12).ln()));
    // Ramp over the first half: at t = 25, p = 0.5 and S* = 0.9 (1 - 0.5^3) = 0.7875; only a
    // deficit costs anything; after the ramp the full two-sided target.
    let ramped = controller(ControlScale::Linear, 0.5);
    assert!(close(value(&ramped, 0.5, 25), 2.0 * (0.7875 - 0.5)));
    assert_eq!(value(&ramped, 0.8, 25), 0.0);
    assert!(close(value(&ramped, 0.95, 50), 2.0 * 0.05));
}

#[test]
fn warns_once_when_thresholds_stay_at_zero() {
    let batches = random_batches(3, 16, 784, 10, 2);
    let warnings = |s_init: f64| {
        let config = str_config("layer", s_init);
        let mut method = config.build_method().unwrap();
        let mut model = lenet();
        method.attach(&mut model).unwrap();
        let mut opt = sgd_for(method.as_ref(), 0.05, 5e-4);
        let mut out = Vec::new();
        for epoch in 0..2 {
            for (i, b) in batches.iter().enumerate() {
                let info = StepInfo {
                    epoch,
                    step: epoch * 3 + i,
                    steps_per_epoch: 3,
                    total_steps: 6,
                };
                step(&mut model, method.as_mut(), &mut opt, b, info);
            }
            out.extend(method.after_epoch(&mut model, epoch).unwrap());
        }
        out
    };
    for s_init in [-3200.0, -100.0] {
        let w = warnings(s_init);
        assert_eq!(
            w.len(),
            1,
            "s_init {s_init}: one warning, at epoch 1: {w:?}"
        );
        assert!(
            w[0].starts_with("STR: every threshold g(s) stayed ~0 in epoch 1")
                && w[0].ends_with("Use a larger --s-init (e.g. -5) or a larger --weight-decay"),
            "{}",
            w[0]
        );
    }
    assert!(warnings(-5.0).is_empty());

    // Through the command line it reaches stderr.
    let dir = temp_dir("warning-cli");
    let out = Command::new(env!("CARGO_BIN_EXE_sparsegrad"))
        .args([
            "train", "--method", "str", "--s-init", "-3200", "--epochs", "2",
        ])
        .args(["--batch-size", "512", "--quiet", "--out"])
        .arg(dir.join("run"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr
            .matches("warning: STR: every threshold g(s) stayed ~0 in epoch 1")
            .count(),
        1,
        "{stderr}"
    );
}

#[test]
fn bake_equals_effective_and_keeps_the_outputs() {
    let mut method = str_config("layer", -4.0).build_method().unwrap();
    let mut model = lenet();
    method.attach(&mut model).unwrap();
    let mut opt = sgd_for(method.as_ref(), 0.05, 5e-4);
    let batches = random_batches(4, 32, 784, 10, 3);
    for (i, b) in batches.iter().enumerate() {
        step(&mut model, method.as_mut(), &mut opt, b, info(i, 4));
    }
    let effective = effective_weights(&model);
    assert!(
        effective.iter().all(|(_, w)| w.iter().any(|v| *v == 0.0)),
        "s_init -4 prunes in every layer"
    );
    let logits = |model: &mut LeNet300<f32>| {
        let tape = Tape::new();
        (*model.forward(tape.constant(batches[0].0.clone())).value()).clone()
    };
    let before = logits(&mut model);
    method.finish(&mut model).unwrap();
    model.visit_weights("", &mut |name, w| {
        assert!(w.transform.is_none(), "{name} still has a transform")
    });
    assert!(thresholds(&model).is_empty());
    for ((name, raw), (_, eff)) in raw_weights(&model).iter().zip(&effective) {
        assert_bits_equal(name, raw, eff);
    }
    assert_bits_equal("logits", &logits(&mut model), &before);
    bake(&mut model); // baking plain weights changes nothing
    for ((name, raw), (_, eff)) in raw_weights(&model).iter().zip(&effective) {
        assert_bits_equal(name, raw, eff);
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[test]
fn resume_is_bit_identical_and_the_summary_keeps_the_thresholds() {
    let dir = temp_dir("resume");
    let config = |out: &Path| {
        let mut c = short(out, "str", 2);
        c.sparsity.shared.target_sparsity = Some(0.9);
        c
    };
    let straight = config(&dir.join("straight"));
    let summary = finish(&straight);
    let split = config(&dir.join("split"));
    train_in_two_sittings(&split);
    assert_same_outputs("resumed", &straight, &split);
    // The checkpoint holds the raw weights and the thresholds; the export only the effective
    // weights; the summary the thresholds g(s) the transforms applied before baking.
    let ckpt = checkpoint::load::<f32>(&straight.out_dir().join(CHECKPOINT_FILE)).unwrap();
    let export = checkpoint::load::<f32>(&straight.out_dir().join(MODEL_FILE)).unwrap();
    assert!(export.tensors.iter().all(|(n, _)| !n.contains("threshold")));
    for layer in &summary.layers {
        let name = format!("model.{}_threshold", layer.name);
        let (_, s) = ckpt.tensors.iter().find(|(n, _)| *n == name).unwrap();
        let g = sigmoid(s[[]] as f64);
        let reported = layer.threshold.expect("threshold kept in the summary");
        assert!(
            (reported - g).abs() < 1e-12 * g,
            "{name}: {reported} vs {g}"
        );
    }
}
