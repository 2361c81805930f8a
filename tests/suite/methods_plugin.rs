//! The method-plugin layer: GMP's final count is exact for every target and schedule (the
//! rounding defect), `--distribution` works with GMP and magnitude (counts from the budget
//! module), refused flags name the method, and run directories written before the plugin change
//! still `eval`, `report` and `--resume` (fixtures in `tests/fixtures/v0`).

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use sparsegrad::io::checkpoint;
use sparsegrad::methods::{Method, RunShape, StepInfo};
use sparsegrad::models::LeNet300;
use sparsegrad::nn::Module;
use sparsegrad::rng::derived;
use sparsegrad::sparsity::budget::{Budget, Distribution, allocate};
use sparsegrad::tape::Tensor;
use sparsegrad::train::TrainConfig;

use crate::cli_support::run as cli;
use crate::scratch::Scratch;

/// Zeros of every prunable weight's effective value, per layer.
fn zeros(model: &dyn Module<f32>) -> Vec<usize> {
    let mut out = Vec::new();
    model.visit_weights("", &mut |_, w| {
        out.push(w.effective().iter().filter(|v| **v == 0.0).count())
    });
    out
}

/// Every prunable weight's effective value (name, tensor).
fn weights(model: &dyn Module<f32>) -> Vec<(String, Tensor<f32>)> {
    let mut out = Vec::new();
    model.visit_weights("", &mut |n, w| out.push((n.to_string(), w.effective())));
    out
}

/// Drives `method`'s pruning schedule over `total` steps on `model` without training: the
/// masks' arithmetic is what is checked, not the weights' values.
fn prune_through(method: &mut dyn Method, model: &mut dyn Module<f32>, total: usize) {
    method
        .check_run(&RunShape {
            epochs: 1,
            steps_per_epoch: total,
            rounds: 1,
        })
        .unwrap();
    for step in 0..total {
        let info = StepInfo {
            epoch: 0,
            step,
            steps_per_epoch: total,
            total_steps: total,
        };
        method.after_step(model, &info).unwrap();
    }
}

fn gmp(
    target: f64,
    start: usize,
    end: usize,
    every: usize,
    distribution: Distribution,
) -> TrainConfig {
    let mut config = TrainConfig {
        method: "gmp".parse().unwrap(),
        ..TrainConfig::default()
    };
    config.sparsity.shared.target_sparsity = Some(target);
    config.sparsity.shared.distribution = distribution;
    config.sparsity.methods.gmp.prune_start = Some(start);
    config.sparsity.methods.gmp.prune_end = Some(end);
    config.sparsity.methods.gmp.prune_every = every;
    config
}

/// The counter-example: LeNet-300-100, s_f = 0.61466, t_end 10001, every 100 steps. The
/// floor counts before the last step left one layer past its share of the exact final split,
/// and masks never un-prune: 163,623 zeros against the 163,622 asked.
#[test]
fn gmp_ends_exactly_at_the_target_on_the_reported_counter_example() {
    let mut model = LeNet300::<f32>::new(784, 10, &mut derived(0, 1));
    let config = gmp(0.61466, 0, 10001, 100, Distribution::Uniform);
    let mut method = config.build_method().unwrap();
    method.attach(&mut model).unwrap();
    prune_through(method.as_mut(), &mut model, 10001);
    assert_eq!(zeros(&model).iter().sum::<usize>(), 163_622);
}

fn distributions() -> impl Strategy<Value = Distribution> {
    prop_oneof![
        Just(Distribution::Uniform),
        Just(Distribution::Erk),
        Just(Distribution::Er),
        Just(Distribution::Global),
        Just(Distribution::Lamp),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// For any target, schedule and distribution (and dense first/last layers), GMP's masks only
    /// shrink and end with exactly round(s_f N) zeros.
    #[test]
    fn gmp_final_count_is_exact_for_every_target_and_schedule(
        target in 0.05f64..0.97,
        start in 0usize..40,
        length in 1usize..120,
        every in 1usize..25,
        distribution in distributions(),
        first_dense in any::<bool>(),
        last_dense in any::<bool>(),
        inputs in 8usize..40,
    ) {
        let mut model = LeNet300::<f32>::new(inputs, 10, &mut derived(7, 1));
        let mut config = gmp(target, start, start + length, every, distribution);
        config.sparsity.shared.first_layer_dense = first_dense;
        config.sparsity.shared.last_layer_dense = last_dense;
        let mut method = config.build_method().unwrap();
        if method.attach(&mut model).is_err() {
            return Ok(()); // the dense layers hold more than the target allows: refused up front
        }
        prune_through(method.as_mut(), &mut model, start + length);
        let total: usize = weights(&model).iter().map(|(_, w)| w.len()).sum();
        prop_assert_eq!(
            zeros(&model).iter().sum::<usize>(),
            (target * total as f64).round() as usize
        );
    }
}

/// GMP with ERK and magnitude with LAMP: each layer ends with the count the budget module
/// allocates for the final target.
#[test]
fn distributions_give_the_budget_modules_per_layer_counts() {
    let target = 0.9;
    // GMP + ERK: shape-based, so the counts are the ERK allocation of the final target.
    let mut model = LeNet300::<f32>::new(784, 10, &mut derived(0, 1));
    let mut method = gmp(target, 2, 20, 3, Distribution::Erk)
        .build_method()
        .unwrap();
    method.attach(&mut model).unwrap();
    let before = weights(&model);
    prune_through(method.as_mut(), &mut model, 20);
    let named: Vec<(&str, &Tensor<f32>)> = before.iter().map(|(n, w)| (n.as_str(), w)).collect();
    let erk = allocate(&Budget::Erk { power_scale: 1.0 }, &named, target).unwrap();
    let want: Vec<usize> = erk.layers.iter().map(|l| l.prune).collect();
    assert_eq!(erk.layers.len(), 3);
    assert_eq!(zeros(&model), want, "GMP + ERK");

    // Magnitude + LAMP: one shot after epoch 1, on the weights as they are then.
    let mut config = TrainConfig {
        method: "magnitude".parse().unwrap(),
        epochs: 2,
        ..TrainConfig::default()
    };
    config.sparsity.shared.target_sparsity = Some(target);
    config.sparsity.shared.distribution = Distribution::Lamp;
    let mut model = LeNet300::<f32>::new(784, 10, &mut derived(3, 1));
    let mut method = config.build_method().unwrap();
    method.attach(&mut model).unwrap();
    let before = weights(&model);
    method.after_epoch(&mut model, 0).unwrap();
    let named: Vec<(&str, &Tensor<f32>)> = before.iter().map(|(n, w)| (n.as_str(), w)).collect();
    let lamp = allocate(&Budget::Lamp, &named, target).unwrap();
    assert_eq!(lamp.layers.len(), 3);
    let want: Vec<usize> = lamp.layers.iter().map(|l| l.prune).collect();
    assert_eq!(zeros(&model), want, "magnitude + LAMP");
}

/// A flag the chosen method does not read is refused, naming the flag and the method.
#[test]
fn flags_the_method_ignores_are_refused() {
    for (args, message) in [
        (
            "train --method dense --target-sparsity 0.9",
            "--target-sparsity is not used by --method dense",
        ),
        (
            "train --method gmp --target-sparsity 0.9 --s-init -3",
            "--s-init is not used by --method gmp",
        ),
        (
            "train --method dense --prune-epoch 2",
            "--prune-epoch is not used by --method dense",
        ),
        (
            "train --method str --distribution erk",
            "--distribution is not used by --method str",
        ),
        // Given explicitly, even at its default value.
        (
            "train --method gmp --target-sparsity 0.9 --s-init -5",
            "--s-init is not used by --method gmp",
        ),
    ] {
        let scratch = Scratch::new("refused");
        let out = scratch.join("refused");
        let mut argv: Vec<&str> = args.split_whitespace().collect();
        argv.extend(["--out", out.to_str().unwrap()]);
        crate::cli_support::assert_error(&argv, message);
        assert!(!out.exists(), "{args}: nothing written");
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/v0")
        .join(name)
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// A finished run and a checkpoint written by the version before the plugin change still load.
#[test]
fn runs_of_the_previous_version_still_eval_and_report() {
    let run = fixture("fastgrnn-gmp");
    for file in ["model.safetensors", "checkpoint.safetensors"] {
        let path = run.join(file);
        let (code, stdout, stderr) = cli(&["eval", "--checkpoint", path.to_str().unwrap()]);
        assert_eq!(code, 0, "eval {file}: {stderr}");
        assert!(
            stdout.contains("(fastgrnn / gmp)") && stdout.contains("sparsity=0.5000"),
            "{stdout}"
        );
    }
    let (code, stdout, stderr) = cli(&["report", run.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("fastgrnn / gmp, 2 epochs"), "{stdout}");
    let both = [run.to_str().unwrap(), run.to_str().unwrap()];
    let (code, stdout, _) = cli(&["report", both[0], both[1]]);
    assert_eq!(code, 0);
    assert!(stdout.contains("| gmp, target 0.5 |"), "{stdout}");
}

/// An interrupted STR run (with a target) written by the previous version resumes with this one
/// and ends with exactly the tensors the previous version wrote when it finished that run.
#[test]
fn a_checkpoint_of_the_previous_version_resumes_to_the_same_model() {
    let dir = Scratch::new("v0-resume");
    copy_dir(&fixture("fastgrnn-str-stopped"), &dir);
    let (code, _, stderr) = cli(&[
        "train",
        "--model",
        "fastgrnn",
        "--width",
        "0.25",
        "--epochs",
        "2",
        "--batch-size",
        "128",
        "--method",
        "str",
        "--target-sparsity",
        "0.5",
        // Configs saved before these settings existed read as the behaviour of that version.
        "--controller-dual-lr",
        "0",
        "--controller-density",
        "kde",
        "--str-finish",
        "learned",
        "--quiet",
        "--resume",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let got = checkpoint::load::<f32>(&dir.join("model.safetensors")).unwrap();
    let want =
        checkpoint::load::<f32>(&fixture("fastgrnn-str-finished-model.safetensors")).unwrap();
    assert_eq!(got.tensors.len(), want.tensors.len());
    for ((a_name, a), (b_name, b)) in got.tensors.iter().zip(&want.tensors) {
        assert_eq!(a_name, b_name);
        crate::methods_support::assert_bits_equal(a_name, a, b);
    }
}
