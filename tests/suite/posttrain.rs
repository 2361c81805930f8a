//! `sparsegrad posttrain` end to end on a small dense LeNet-300-100 trained once per test binary:
//! FCPTS meets the target to the weight (both variants, several targets) and reports its fix-up;
//! the code variant sends no reconstruction gradient to the thresholds; every baseline meets the
//! target with its budget's per-layer allocation; `--no-finetune` keeps the surviving weights;
//! the export loads with `sparsegrad eval`; results do not depend on the thread count; bad input
//! gets one exact error line.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::cli_support::{assert_error, run as cli};
use crate::scratch::Scratch;
use sparsegrad::io::checkpoint;
use sparsegrad::methods::{FixUp, fcpts, fixup};
use sparsegrad::posttrain::{self, PosttrainConfig, PosttrainSummary};
use sparsegrad::run::dir::MODEL_FILE;
use sparsegrad::run::meta::{CheckpointMeta, load_model};
use sparsegrad::sparsity::budget::{Budget, allocate};
use sparsegrad::sparsity::report::sparsity_report;
use sparsegrad::sparsity::{FcptsVariant, ThresholdMask};
use sparsegrad::tape::Tensor;
use sparsegrad::train::{Progress, RunOptions, TrainConfig, train};

/// A copy, written into `dir`, of the export of a dense LeNet-300-100 trained for one epoch (one
/// training per test binary, in a scratch directory removed once the bytes are read; shared with
/// the Wanda tests). Returns the copy's path.
pub fn dense_model(dir: &Path) -> PathBuf {
    static EXPORT: OnceLock<Vec<u8>> = OnceLock::new();
    let bytes = EXPORT.get_or_init(|| {
        let scratch = Scratch::new("pt-dense");
        let config = TrainConfig {
            epochs: 1,
            batch_size: 256,
            out: Some(scratch.join("run")),
            ..TrainConfig::default()
        };
        train(&config, RunOptions::default(), &mut Progress::plain()).unwrap();
        std::fs::read(config.out_dir().join(MODEL_FILE)).unwrap()
    });
    let path = dir.join("dense.safetensors");
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The dense model, loaded (from a copy in a scratch directory removed on return).
pub fn load_dense() -> (Box<dyn sparsegrad::nn::Module<f32>>, CheckpointMeta) {
    let scratch = Scratch::new("pt-dense-load");
    load_model(&dense_model(&scratch)).unwrap()
}

/// A short run on a copy of the dense model in `dir`, into `dir/<name>`: 256 calibration images,
/// 24 iterations.
fn small(dir: &Path, name: &str, method: &str, r0: f64) -> PosttrainConfig {
    PosttrainConfig {
        checkpoint: Some(dense_model(dir)),
        method: method.parse().unwrap(),
        target_sparsity: Some(r0),
        calib: 256,
        iters: 24,
        warmup: 4,
        log_every: 8,
        out: Some(dir.join(name)),
        ..PosttrainConfig::default()
    }
}

fn run(config: &PosttrainConfig) -> PosttrainSummary {
    posttrain::run(config, false, &mut Progress::plain()).unwrap()
}

fn goal(r0: f64, total: usize) -> usize {
    (r0 * total as f64).round() as usize
}

/// Zeros among the prunable weights of an export, as `sparsegrad eval` would load it.
fn pruned_in_export(path: &Path) -> (usize, usize) {
    let (model, _) = load_model(path).unwrap();
    let report = sparsity_report(model.as_ref());
    (
        report.params_total - report.params_nonzero,
        report.params_total,
    )
}

fn tensors(path: &Path) -> HashMap<String, Tensor<f32>> {
    checkpoint::load::<f32>(path)
        .unwrap()
        .tensors
        .into_iter()
        .collect()
}

/// The dense model's prunable weights in forward order.
fn dense_weights() -> Vec<(String, Tensor<f32>)> {
    let (model, _) = load_dense();
    let mut out = Vec::new();
    model.visit_weights("", &mut |name, w| {
        out.push((name.to_string(), w.raw.value().clone()))
    });
    out
}

#[test]
fn fcpts_hits_the_target_exactly_for_both_variants() {
    let dir = Scratch::new("pt-fcpts");
    for variant in ["paper", "code"] {
        for r0 in [0.5, 0.8, 0.95] {
            let mut config = small(&dir, &format!("fcpts-{variant}-{r0}"), "fcpts", r0);
            config.methods.fcpts.variant = Some(clap::ValueEnum::from_str(variant, false).unwrap());
            let s = run(&config);
            let want = goal(r0, s.params_total);
            let case = format!("{variant} r0={r0}");
            assert_eq!(s.params_total - s.params_nonzero, want, "{case}");
            assert_eq!(s.pruned_goal, want, "{case}");
            let fixup = s.fixup.as_ref().expect("FCPTS reports its fix-up");
            assert_eq!(fixup.goal, want, "{case}");
            assert_eq!(fixup.pruned_after, want, "{case}");
            assert!(
                fixup.changed >= fixup.pruned_before.abs_diff(want),
                "{case}: {fixup:?}"
            );
            // The summary's per-layer table agrees with the fix-up's count of moved weights.
            let moved: usize = s
                .layers
                .iter()
                .map(|l| {
                    let before = (l.learned_sparsity.unwrap() * l.report.params as f64).round();
                    (before as usize).abs_diff(l.report.params - l.report.nonzero)
                })
                .sum();
            assert_eq!(moved, fixup.changed, "{case}");
            assert_eq!(
                pruned_in_export(&config.out_dir().join(MODEL_FILE)),
                (want, s.params_total),
                "{case}: the export holds exactly the target's zeros"
            );
            assert_eq!(s.variant.as_deref(), Some(variant));
            assert_eq!(s.iterations, 24);
        }
    }
}

/// FCPTS prepared at `r0` on the dense model with fc2's weights multiplied by `fc2_scale`, then
/// thresholds moved so fc1 prunes 700 more and fc2 100 fewer (600 too many), then fixed up.
/// Returns the fix-up, the weights it restored per layer, and the model.
fn fixed_up_after_overshoot(
    r0: f64,
    fc2_scale: f32,
) -> (FixUp, Vec<usize>, Box<dyn sparsegrad::nn::Module<f32>>) {
    let (mut model, _) = load_dense();
    model.visit_weights_mut("", &mut |name, w| {
        if name == "fc2.weight" {
            *w.raw.value_mut() *= fc2_scale;
        }
    });
    let weights: Vec<(String, Tensor<f32>)> = {
        let mut out = Vec::new();
        model.visit_weights("", &mut |n, w| out.push((n.to_string(), w.effective())));
        out
    };
    let named: Vec<(&str, &Tensor<f32>)> = weights.iter().map(|(n, w)| (n.as_str(), w)).collect();
    let alloc = allocate(&Budget::Erk { power_scale: 1.0 }, &named, r0).unwrap();
    fcpts::attach_thresholds(model.as_mut(), r0, FcptsVariant::Code).unwrap();
    let at_init = fixup::fix_up(model.as_mut(), r0);
    assert_eq!(
        (at_init.pruned_before, at_init.changed),
        (alloc.total_pruned(), 0)
    );
    let shift = [700i64, -100, 0];
    let mut layer = 0;
    model.visit_weights_mut("", &mut |_, w| {
        let k = alloc.layers[layer].prune as i64 + shift[layer];
        w.transform = Some(Box::new(ThresholdMask::for_prune_count(
            w.raw.value(),
            k as usize,
            FcptsVariant::Code,
        )));
        layer += 1;
    });
    let fixup = fixup::fix_up(model.as_mut(), r0);
    let after = sparsity_report(model.as_ref());
    let restored = alloc
        .layers
        .iter()
        .zip(&after.layers)
        .zip(shift)
        .map(|((budget, now), shift)| {
            let before = budget.prune as i64 + shift;
            (before - (now.params - now.nonzero) as i64) as usize
        })
        .collect();
    (fixup, restored, model)
}

#[test]
fn fix_up_moves_every_threshold_by_one_common_factor_to_the_exact_count() {
    let r0 = 0.8;
    let (fixup, restored, model) = fixed_up_after_overshoot(r0, 1.0);
    let want = goal(r0, 266_200);
    assert_eq!(fixup.pruned_before, want + 600);
    assert_eq!(fixup.pruned_after, want);
    assert_eq!(fixup.changed, 600, "only restorations are needed");
    assert_eq!(restored.iter().sum::<usize>(), 600);
    let report = sparsity_report(model.as_ref());
    assert_eq!(report.params_total - report.params_nonzero, want);

    // The restored weights are the pruned ones with the largest |w| / t_l (t_l before the
    // fix-up): every restored ratio is at least every still-pruned ratio.
    let (mut restored_min, mut pruned_max) = (f64::INFINITY, 0.0f64);
    let mut layer = 0;
    model.visit_weights("", &mut |_, w| {
        let t = fixup.learned_threshold[layer];
        let effective = w.effective();
        for (raw, eff) in w.raw.value().iter().zip(effective.iter()) {
            let ratio = raw.abs() as f64 / t;
            if ratio <= 1.0 && *eff != 0.0 {
                restored_min = restored_min.min(ratio);
            } else if *eff == 0.0 {
                pruned_max = pruned_max.max(ratio);
            }
        }
        layer += 1;
    });
    assert!(
        restored_min >= pruned_max,
        "restored down to ratio {restored_min}, but a weight of ratio {pruned_max} stayed pruned"
    );

    // Ratios make the rule blind to a layer's scale: fc2 eight times larger (exact in floating
    // point) gets the same restorations. Several layers take part, so the check has teeth.
    assert!(
        restored.iter().filter(|&&r| r > 0).count() >= 2,
        "{restored:?}"
    );
    let (_, scaled, _) = fixed_up_after_overshoot(r0, 8.0);
    assert_eq!(scaled, restored);
}

/// The thresholds FCPTS starts from: the ERK allocation of `r0` on the dense weights.
fn initial_thresholds(r0: f64) -> Vec<f64> {
    let weights = dense_weights();
    let layers: Vec<(&str, &Tensor<f32>)> = weights.iter().map(|(n, w)| (n.as_str(), w)).collect();
    let alloc = allocate(&Budget::Erk { power_scale: 1.0 }, &layers, r0).unwrap();
    weights
        .iter()
        .zip(&alloc.layers)
        .map(|((_, w), l)| {
            ThresholdMask::for_prune_count(w, l.prune, FcptsVariant::Code).threshold() as f64
        })
        .collect()
}

#[test]
fn only_the_control_loss_moves_the_thresholds_of_the_code_variant() {
    let r0 = 0.9;
    let initial = initial_thresholds(r0);
    let dir = Scratch::new("pt-no-control");
    let learned = |variant: &str| -> Vec<f64> {
        let mut config = small(&dir, &format!("no-control-{variant}"), "fcpts", r0);
        config.methods.fcpts.variant = Some(clap::ValueEnum::from_str(variant, false).unwrap());
        config.methods.fcpts.control_weight = 0.0;
        run(&config)
            .layers
            .iter()
            .map(|l| l.learned_threshold.unwrap())
            .collect()
    };
    // Code variant without L_c: no gradient reaches the scores, so the thresholds are bitwise
    // the initial ones after 24 iterations of fine-tuning the weights.
    assert_eq!(learned("code"), initial);
    // Paper variant without L_c: the reconstruction loss alone moves them (eq. 14).
    let paper = learned("paper");
    assert!(
        paper.iter().zip(&initial).any(|(p, i)| p != i),
        "paper variant thresholds {paper:?} never left {initial:?}"
    );
}

#[test]
fn baselines_meet_the_target_with_their_budgets_allocation() {
    let r0 = 0.9;
    let weights = dense_weights();
    let layers: Vec<(&str, &Tensor<f32>)> = weights.iter().map(|(n, w)| (n.as_str(), w)).collect();
    let dir = Scratch::new("pt-baselines");
    for (method, budget) in [
        (
            "magnitude-uniform",
            Budget::Uniform {
                first_layer_dense: false,
            },
        ),
        ("magnitude-erk", Budget::Erk { power_scale: 1.0 }),
        (
            "magnitude-global",
            Budget::GlobalMagnitude { normalised: false },
        ),
        (
            "magnitude-l2norm",
            Budget::GlobalMagnitude { normalised: true },
        ),
        ("lamp", Budget::Lamp),
    ] {
        let s = run(&small(&dir, method, method, r0));
        let alloc = allocate(&budget, &layers, r0).unwrap();
        assert_eq!(
            s.params_total - s.params_nonzero,
            goal(r0, s.params_total),
            "{method}"
        );
        assert!(s.fixup.is_none() && s.variant.is_none(), "{method}");
        assert_eq!(
            s.layers.len(),
            alloc.layers.len(),
            "{method}: one row per layer"
        );
        for (l, budget) in s.layers.iter().zip(&alloc.layers) {
            // Fine-tuning kept the masks: the result prunes exactly the allocation's counts.
            assert_eq!(
                l.report.params - l.report.nonzero,
                budget.prune,
                "{method} {}",
                l.report.name
            );
            assert_eq!(l.initial_sparsity, budget.sparsity(), "{method}");
        }
        if method == "magnitude-erk" {
            // The ERK golden values for LeNet-300-100 at 90% (docs/methods.md).
            let erk: Vec<f64> = s.layers.iter().map(|l| l.initial_sparsity).collect();
            assert_eq!(erk.len(), 3, "one allocation per layer: {erk:?}");
            for (got, want) in erk.iter().zip([0.9204, 0.7698, 0.0]) {
                assert!((got - want).abs() < 5e-5, "ERK {erk:?}");
            }
        }
    }
}

#[test]
fn no_finetune_keeps_the_surviving_weights_of_the_dense_model() {
    let r0 = 0.7;
    let dir = Scratch::new("pt-no-finetune");
    let config = PosttrainConfig {
        no_finetune: true,
        ..small(&dir, "no-finetune", "magnitude-global", r0)
    };
    let s = run(&config);
    assert_eq!(s.iterations, 0);
    let dense = tensors(&config.checkpoint());
    let sparse = tensors(&config.out_dir().join(MODEL_FILE));
    assert_eq!(dense.len(), sparse.len());
    let mut zeros = 0;
    for (name, d) in &dense {
        let p = &sparse[name];
        let prunable = name.ends_with(".weight");
        let mut pruned_max = 0.0f32;
        let mut kept_min = f32::INFINITY;
        for (i, (a, b)) in d.iter().zip(p.iter()).enumerate() {
            if prunable && *b == 0.0 {
                zeros += 1;
                pruned_max = pruned_max.max(a.abs());
            } else {
                assert_eq!(a.to_bits(), b.to_bits(), "{name}[{i}] changed");
                kept_min = kept_min.min(a.abs());
            }
        }
        assert!(pruned_max <= kept_min, "{name}: not a magnitude mask");
    }
    assert_eq!(zeros, goal(r0, s.params_total));
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let dir = Scratch::new("pt-threads");
    let run_with = |threads: usize| {
        let config = small(&dir, &format!("threads-{threads}"), "fcpts", 0.9);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| run(&config));
        config.out_dir()
    };
    let (a, b) = (run_with(1), run_with(3));
    for file in [MODEL_FILE, sparsegrad::run::dir::POSTTRAIN_LOG_FILE] {
        let (x, y) = (
            std::fs::read(a.join(file)).unwrap(),
            std::fs::read(b.join(file)).unwrap(),
        );
        assert!(x == y, "{file} differs between 1 and 3 threads");
    }
}

#[test]
fn calibration_images_come_from_the_training_split() {
    let train_idx: Vec<usize> = (0..100).filter(|i| i % 10 != 3).collect();
    let calib = posttrain::calibration_indices(&train_idx, 40, 7);
    assert_eq!(calib.len(), 40);
    assert!(
        calib.windows(2).all(|w| w[0] < w[1]),
        "ascending, no repeats"
    );
    assert!(calib.iter().all(|i| train_idx.contains(i)));
    assert_eq!(calib, posttrain::calibration_indices(&train_idx, 40, 7));
    assert_ne!(calib, posttrain::calibration_indices(&train_idx, 40, 8));
}

#[test]
fn the_command_reports_the_fix_up_and_its_export_loads_with_eval() {
    let dir = Scratch::new("pt-cli");
    let dense = dense_model(&dir);
    let out = dir.join("run");
    let (code, stdout, stderr) = cli(&[
        "posttrain",
        "--quiet",
        "--checkpoint",
        dense.to_str().unwrap(),
        "--target-sparsity",
        "0.85",
        "--calib",
        "128",
        "--iters",
        "16",
        "--warmup",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let summary: PosttrainSummary =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let fixup = summary.fixup.as_ref().unwrap();
    assert!(
        stdout.contains(&format!(
            " sparsity=0.8500 target=0.85 weights={}/{} fixup_weights={} ",
            summary.params_nonzero, summary.params_total, fixup.changed
        )),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("test_accuracy={:.4} ", summary.test_accuracy)));
    for file in ["config.json", "posttrain.jsonl", "sparsity.svg"] {
        assert!(out.join(file).exists(), "{file}");
    }
    let lines = std::fs::read_to_string(out.join("posttrain.jsonl")).unwrap();
    let last: posttrain::IterationLog =
        serde_json::from_str(lines.lines().last().unwrap()).unwrap();
    assert_eq!((last.iter, lines.lines().count()), (16, 1));
    assert!(last.l_c.is_some());

    let model = out.join(MODEL_FILE);
    let (code, stdout, stderr) = cli(&["eval", "--checkpoint", model.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!(
            "(lenet300 / fcpts) on data/mnist-10k: test_accuracy={:.4} sparsity=0.8500 (2000 test images)",
            summary.test_accuracy
        )),
        "{stdout}"
    );

    let (code, stdout, stderr) = cli(&["report", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with(&format!(
            "{}: lenet300 / fcpts (paper, clipped, kde), target 85.00%, 16 iterations on 128 images: test accuracy {:.2}% (input {:.2}%), fix-up {} weights, optimise ",
            out.display(),
            100.0 * summary.test_accuracy,
            100.0 * summary.dense_test_accuracy,
            fixup.changed
        )),
        "{stdout}"
    );
    assert!(stdout.contains("\ntotal "), "{stdout}");

    // A second run into the same directory is refused and the first is kept.
    let before = std::fs::read(&model).unwrap();
    assert_error(
        &[
            "posttrain",
            "--checkpoint",
            dense.to_str().unwrap(),
            "--target-sparsity",
            "0.5",
            "--out",
            out.to_str().unwrap(),
        ],
        &format!(
            "{} already holds a run; pass --force to overwrite it",
            out.display()
        ),
    );
    assert!(std::fs::read(&model).unwrap() == before);
}

#[test]
fn bad_input_gets_one_exact_error_line() {
    let dir = Scratch::new("pt-bad");
    let dense = dense_model(&dir);
    let dense = dense.to_str().unwrap();
    let out = dir.join("run");
    let out = out.to_str().unwrap();
    let with = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = ["posttrain", "--checkpoint", dense, "--out", out]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let check = |extra: &[&str], message: &str| {
        let args = with(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_error(&args, message);
    };
    for r0 in ["0", "1", "1.5", "-0.2"] {
        check(
            &["--target-sparsity", r0],
            &format!("--target-sparsity must be in (0, 1), got {r0}"),
        );
    }
    check(
        &["--target-sparsity", "0.9", "--method", "magic"],
        "unknown --method `magic` (expected one of: fcpts, magnitude-uniform, magnitude-erk, magnitude-global, magnitude-l2norm, lamp, wanda)",
    );
    check(
        &["--target-sparsity", "0.9", "--variant", "magic"],
        "unknown --variant `magic` (expected one of: paper, code)",
    );
    check(
        &["--target-sparsity", "0.9", "--surrogate", "tanh"],
        "unknown --surrogate `tanh` (expected clipped or sigmoid:T with T > 0)",
    );
    check(
        &[
            "--target-sparsity",
            "0.9",
            "--method",
            "lamp",
            "--variant",
            "code",
        ],
        "--variant is not used by --method lamp",
    );
    check(
        &["--target-sparsity", "0.9", "--no-finetune"],
        "--no-finetune is not used by --method fcpts",
    );
    check(
        &[
            "--target-sparsity",
            "0.9",
            "--warmup",
            "50",
            "--iters",
            "50",
        ],
        "--warmup (50 iterations) must be shorter than --iters (50)",
    );
    check(
        &["--target-sparsity", "0.9", "--calib", "7201"],
        "--calib 7201 is more than the 7200 images of the run's training split of data/mnist-10k (800 are held out for validation)",
    );
    // A safetensors file without sparsegrad's metadata.
    let foreign = dir.join("foreign.safetensors");
    let t = Tensor::<f32>::zeros(ndarray::IxDyn(&[2]));
    checkpoint::save(&foreign, &[("w".to_string(), t)], &Default::default()).unwrap();
    assert_error(
        &[
            "posttrain",
            "--checkpoint",
            foreign.to_str().unwrap(),
            "--target-sparsity",
            "0.9",
            "--out",
            out,
        ],
        &format!(
            "{}: no sparsegrad metadata (not written by sparsegrad train)",
            foreign.display()
        ),
    );
    assert!(
        !Path::new(out).exists(),
        "a refused run must not create its directory"
    );
}
