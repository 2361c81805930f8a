//! STR with `--target-sparsity` (issue 19): the Lagrange multiplier's dual-ascent update against
//! a hand-worked sequence, the exact finish from both sides of the target on every granularity
//! that takes a target, `--str-finish strict`, and resumption with the multiplier in the
//! checkpoint. Whole runs are LeNet-300 on the bundled data, 1-2 epochs.

use crate::methods_support::*;
use sparsegrad::methods::{ControlScale, Controller};
use sparsegrad::ops::sparsity::Density;
use sparsegrad::run::dir::SUMMARY_FILE;
use sparsegrad::run::summary::Summary;
use sparsegrad::tape::Tape;
use sparsegrad::train::{Progress, RunOptions, train};

fn controller(dual_lr: f64) -> Controller {
    Controller {
        target: 0.9,
        weight: 2.0,
        density: Density::paper(),
        scale: ControlScale::Linear,
        ramp: 0.5,
        dual_lr,
    }
}

/// total 10 steps, ramp 0.5: t < 5 is the ramp, S*(t) = 0.9 (1 - (1 - t/5)^3):
/// S*(0) = 0, S*(1) = 0.9 x 0.488 = 0.4392, S*(2) = 0.9 x 0.784 = 0.7056, S*(t >= 5) = 0.9.
#[test]
fn multiplier_follows_dual_ascent_by_hand() {
    let c = controller(0.5);
    // (t, S_now, gap by hand, mu after the step by hand)
    let steps = [
        (0, 0.1, -0.1, 0.0),       // 0 + 0.5 (-0.1) < 0: projected to 0 in the ramp
        (1, 0.2, 0.2392, 0.1196),  // 0 + 0.5 x 0.2392
        (2, 0.8, -0.0944, 0.0724), // 0.1196 - 0.0472
        (5, 0.95, -0.05, 0.0474),  // after the ramp: 0.0724 - 0.025
        (6, 1.0, -0.1, -0.0026),   // equality constraint: mu may go negative
        (7, 0.85, 0.05, 0.0224),   // -0.0026 + 0.025
    ];
    let mut mu = 0.0;
    for (t, now, gap, after) in steps {
        let g = c.gap(now, t, 10);
        assert!((g - gap).abs() < 1e-12, "t {t}: gap {g}, by hand {gap}");
        mu = c.next_multiplier(mu, g, t, 10);
        assert!(
            (mu - after).abs() < 1e-12,
            "t {t}: mu {mu}, by hand {after}"
        );
    }
    // No dual step: mu never moves.
    assert_eq!(controller(0.0).next_multiplier(0.3, 0.7, 6, 10), 0.3);
}

/// The loss adds mu e to lambda_c |e| (relu(e) in the ramp): value and d/dS_now by hand.
#[test]
fn multiplier_adds_the_lagrangian_term_to_the_control_loss() {
    let c = controller(0.5);
    let at = |now: f32, t: usize, mu: f64| {
        let tape = Tape::<f32>::new();
        let v = tape.leaf(ndarray::arr0(now).into_dyn());
        let loss = c.loss(v, t, 10, mu);
        let value = loss.item() as f64;
        let grads = loss.backward();
        (
            value,
            grads.wrt(v).unwrap().iter().next().copied().unwrap() as f64,
        )
    };
    let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
    // After the ramp, S_now = 0.8: e = 0.1; loss 2 x 0.1 + 3 x 0.1 = 0.5; d/dS = -(2 + 3).
    let (v, d) = at(0.8, 6, 3.0);
    assert!(close(v, 0.5) && close(d, -5.0), "{v} {d}");
    // Overshoot S_now = 0.95 with a negative mu: e = -0.05; 2 x 0.05 + (-1)(-0.05) = 0.15;
    // d/dS = -(2 sign(e) + mu) = -(-2 - 1) = 3: both parts pull sparsity down.
    let (v, d) = at(0.95, 6, -1.0);
    assert!(close(v, 0.15) && close(d, 3.0), "{v} {d}");
    // In the ramp and ahead of it (S*(2) = 0.7056, S_now 0.8): relu gives nothing, mu e does.
    let (v, d) = at(0.8, 2, 0.5);
    assert!(close(v, 0.5 * -0.0944) && close(d, -0.5), "{v} {d}");
}

fn with_target(
    out: &std::path::Path,
    granularity: &str,
    s_init: f64,
    target: f64,
) -> sparsegrad::train::TrainConfig {
    let mut config = short(out, "str", 1);
    config.sparsity.shared.target_sparsity = Some(target);
    config.sparsity.methods.str.s_init = s_init;
    config.sparsity.methods.str.str_granularity =
        clap::ValueEnum::from_str(granularity, false).unwrap();
    config
}

/// From both sides of the target, every granularity that takes one: the learned thresholds end
/// short of it (s_init -8 prunes little, the target is high) or past it (s_init -4 prunes a
/// large share of LeNet-300 at once, the target is 0.05), and the run ends at round(S N) zeros
/// exactly.
#[test]
fn runs_end_at_the_exact_target_from_both_sides_on_every_granularity() {
    let dir = temp_dir("exact");
    for granularity in ["layer", "channel", "global"] {
        for (s_init, target, short_of_it) in [(-8.0, 0.97, true), (-4.0, 0.05, false)] {
            let name = format!("{granularity}-{target}");
            let summary = finish(&with_target(&dir.join(name), granularity, s_init, target));
            let fixup = summary.fixup.clone().expect("the fix-up is reported");
            let goal = (target * 266_200.0_f64).round() as usize;
            let what = format!("{granularity}, s_init {s_init}, target {target}: {fixup:?}");
            assert_eq!(fixup.goal, goal, "{what}");
            assert_eq!(fixup.weights, 266_200, "{what}");
            assert_eq!(fixup.pruned_before < goal, short_of_it, "{what}");
            assert_ne!(
                fixup.pruned_before, goal,
                "{what}: the fix-up had work to do"
            );
            assert_eq!(fixup.changed, fixup.pruned_before.abs_diff(goal), "{what}");
            assert_eq!(fixup.pruned_after, goal, "{what}");
            assert_eq!(summary.params_total, 266_200);
            assert_eq!(
                summary.params_total - summary.params_nonzero,
                goal,
                "{what}"
            );
        }
    }
}

/// `--strict-target` and `--str-finish strict` fail instead of warning; `learned` keeps the
/// thresholds as they are.
#[test]
fn strict_finish_fails_and_learned_finish_skips_the_fix_up() {
    let dir = temp_dir("finish");
    for (name, strict_flag) in [("strict-finish", false), ("strict-target", true)] {
        let mut config = with_target(&dir.join(name), "layer", -8.0, 0.97);
        if strict_flag {
            config.sparsity.methods.str.strict_target = true;
        } else {
            config.sparsity.methods.str.str_finish =
                clap::ValueEnum::from_str("strict", false).unwrap();
        }
        let err = train(&config, RunOptions::default(), &mut Progress::plain())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("--strict-target (--str-finish strict): the learned thresholds prune")
                && err.ends_with("the run's last checkpoint is kept"),
            "{err}"
        );
    }
    let mut config = with_target(&dir.join("learned"), "layer", -8.0, 0.97);
    config.sparsity.methods.str.str_finish = clap::ValueEnum::from_str("learned", false).unwrap();
    let summary = finish(&config);
    assert!(summary.fixup.is_none());
    assert!(
        summary.overall_sparsity < 0.97,
        "{}",
        summary.overall_sparsity
    );
}

/// The multiplier is in the checkpoint: a run stopped after its first epoch and resumed ends
/// with the same multiplier, fix-up and export as an uninterrupted one (the tensors are
/// compared bit by bit in `methods_str::resume_is_bit_identical_and_the_summary_keeps_the_thresholds`).
#[test]
fn resume_keeps_the_multiplier() {
    let dir = temp_dir("mu");
    let config = |name: &str| {
        let mut c = with_target(&dir.join(name), "layer", -5.0, 0.98);
        c.epochs = 2;
        c
    };
    let straight = finish(&config("mu-straight"));
    let split = config("mu-split");
    train_in_two_sittings(&split);
    let text = std::fs::read_to_string(split.out_dir().join(SUMMARY_FILE)).unwrap();
    let resumed: Summary = serde_json::from_str(&text).unwrap();
    let mu = straight.method_details["multiplier"].as_f64().unwrap();
    assert!(mu != 0.0, "the multiplier moved");
    assert_eq!(resumed.method_details, straight.method_details);
    // The per-layer learned values are not serialised (they are in the summary's table).
    let serialised = |f: &Option<sparsegrad::methods::FixUp>| serde_json::to_value(f).unwrap();
    assert_eq!(serialised(&resumed.fixup), serialised(&straight.fixup));
    assert_eq!(resumed.params_nonzero, straight.params_nonzero);
}

/// The share of each bundled model's prunable weights that the default `--s-init` (-5,
/// g = sigmoid(-5) = 0.0067) prunes before the first step (seed 0, MNIST-shaped input), as
/// `docs/methods.md` and `--s-init`'s help state it. PyTorch's default init draws U(-b, b) with
/// b = 1/sqrt(fan_in), so a layer loses about 0.0067 sqrt(fan_in) of its weights.
#[test]
fn default_s_init_prunes_the_documented_share_at_step_0() {
    use sparsegrad::methods::str::DEFAULT_S_INIT;
    use sparsegrad::models::{ModelName, ModelSpec, build};
    let documented = [
        ("lenet300", 0.1782),
        ("lenet5", 0.1854),
        ("resnet20", 0.0803),
        ("mobilenet", 0.1661),
        ("fastgrnn", 0.0548),
    ];
    let mut results = Vec::new();
    let dir = temp_dir("s-init");
    for (name, share) in documented {
        let spec = ModelSpec {
            name: name.parse::<ModelName>().unwrap(),
            input: (1, 28, 28),
            classes: 10,
            width: 1.0,
        };
        let mut model = build(&spec, &mut sparsegrad::rng::derived(0, 1)).unwrap();
        let mut config = short(&dir, "str", 1);
        config.sparsity.methods.str.s_init = DEFAULT_S_INIT;
        config
            .build_method()
            .unwrap()
            .attach(model.as_mut())
            .unwrap();
        let (mut zeros, mut total) = (0, 0);
        let mut layers = Vec::new();
        model.visit_weights("", &mut |layer, w| {
            let eff = w.effective();
            let z = eff.iter().filter(|v| **v == 0.0).count();
            layers.push(format!(
                "{layer} {:.1}%",
                100.0 * z as f64 / eff.len() as f64
            ));
            zeros += z;
            total += eff.len();
        });
        let measured = zeros as f64 / total as f64;
        println!("{name}: {:.2}% ({})", 100.0 * measured, layers.join(", "));
        results.push((name, measured, share));
    }
    for (name, measured, share) in results {
        assert!(
            (measured - share).abs() < 5e-4,
            "{name}: {measured:.4} pruned at step 0, documented {share}"
        );
    }
}
