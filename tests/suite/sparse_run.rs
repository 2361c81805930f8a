//! Runs on the sparse kernels (`--sparse-kernels`): which layers ran sparse is recorded, both
//! exports are written and read back by `eval`, and a run on the sparse kernels is still
//! deterministic (resume and thread count).

use std::path::Path;

use crate::cli_support::run;
use crate::methods_support::{temp_dir, train_in_two_sittings};

use sparsegrad::methods::TrainMethod;
use sparsegrad::nn::SparseKernels;
use sparsegrad::run::dir::{MODEL_FILE, SPARSE_MODEL_FILE};
use sparsegrad::run::evaluate::evaluate_checkpoint;
use sparsegrad::run::summary::Summary;
use sparsegrad::train::{Progress, RunOptions, TrainConfig, train};

/// GMP to 95% on LeNet-300, finishing its schedule in the first of two epochs (batch 128: 57
/// steps per epoch), so the second epoch trains on fixed 95%-sparse masks.
fn gmp95(out: &Path, mode: SparseKernels) -> TrainConfig {
    let mut config = TrainConfig {
        method: TrainMethod::Gmp,
        epochs: 2,
        batch_size: 128,
        sparse_kernels: mode,
        out: Some(out.to_path_buf()),
        ..TrainConfig::default()
    };
    config.sparsity.shared.target_sparsity = Some(0.95);
    config.sparsity.methods.gmp.prune_start = Some(0);
    config.sparsity.methods.gmp.prune_end = Some(40);
    config.sparsity.methods.gmp.prune_every = 10;
    config
}

fn summary(out: &Path) -> Summary {
    sparsegrad::run::dir::read_summary(out).unwrap()
}

#[test]
fn a_fixed_mask_run_trains_and_evaluates_on_the_sparse_kernels_and_writes_both_exports() {
    let dir = temp_dir("sparse-run");
    let config = gmp95(&dir.join("auto"), SparseKernels::Auto);
    train(&config, RunOptions::default(), &mut Progress::plain()).unwrap();
    let out = config.out_dir();
    let s = summary(&out);
    let used = s.sparse_kernels.expect("recorded");
    assert_eq!(used.mode, SparseKernels::Auto);
    // fc1 (784 -> 300, 30 M MACs per batch of 128) and fc2 (300 -> 100, 3.8 M) run sparse at
    // 95%; fc3 (0.13 M, and 1 M in evaluation batches of 1,000) is below the size floor.
    assert_eq!(used.training, ["fc1.weight", "fc2.weight"]);
    assert_eq!(used.evaluation, ["fc1.weight", "fc2.weight"]);

    let sizes = s.exports.expect("recorded");
    let size = |f: &str| std::fs::metadata(out.join(f)).unwrap().len();
    assert_eq!(sizes.dense_bytes, size(MODEL_FILE));
    assert_eq!(sizes.sparse_bytes, size(SPARSE_MODEL_FILE));
    assert!(
        sizes.sparse_bytes * 100 < sizes.dense_bytes * 12,
        "sparse export {} bytes against dense {}",
        sizes.sparse_bytes,
        sizes.dense_bytes
    );

    // `eval` reads either export; both run the same kernels on the same weights.
    let dense = evaluate_checkpoint(&out.join(MODEL_FILE), None, SparseKernels::Auto).unwrap();
    let sparse =
        evaluate_checkpoint(&out.join(SPARSE_MODEL_FILE), None, SparseKernels::Auto).unwrap();
    assert_eq!(dense, sparse.clone());
    assert_eq!(sparse.test_accuracy, s.test_accuracy);
    assert_eq!(sparse.sparse_layers, used.evaluation);
    let off = evaluate_checkpoint(&out.join(SPARSE_MODEL_FILE), None, SparseKernels::Off).unwrap();
    assert!(off.sparse_layers.is_empty());
    assert!((off.test_accuracy - sparse.test_accuracy).abs() <= 1.0 / 2000.0);

    // The CLI: the sparse export by name, and the line naming the sparse layers.
    let path = out.join(SPARSE_MODEL_FILE);
    let (code, stdout, stderr) = run(&["eval", "--checkpoint", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.ends_with("sparse kernels: fc1.weight, fc2.weight\n"),
        "{stdout}"
    );
}

#[test]
fn off_keeps_every_layer_dense_and_gives_the_same_accuracy_to_rounding() {
    let dir = temp_dir("sparse-off");
    let auto = gmp95(&dir.join("auto"), SparseKernels::Auto);
    let off = gmp95(&dir.join("off"), SparseKernels::Off);
    train(&off, RunOptions::default(), &mut Progress::plain()).unwrap();
    train(&auto, RunOptions::default(), &mut Progress::plain()).unwrap();
    let (a, o) = (summary(&auto.out_dir()), summary(&off.out_dir()));
    let used = o.sparse_kernels.expect("recorded");
    assert!(used.training.is_empty() && used.evaluation.is_empty());
    // Same training up to float rounding in fc1's products: a handful of test images at most.
    assert!(
        (a.test_accuracy - o.test_accuracy).abs() <= 5.0 / 2000.0,
        "auto {} against off {}",
        a.test_accuracy,
        o.test_accuracy
    );
}

#[test]
fn a_run_on_the_sparse_kernels_resumes_bit_identically_and_ignores_the_thread_count() {
    let dir = temp_dir("sparse-determinism");
    let threads = |n: usize| {
        let config = gmp95(&dir.join(format!("t{n}")), SparseKernels::On);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap();
        pool.install(|| train(&config, RunOptions::default(), &mut Progress::plain()))
            .unwrap();
        std::fs::read(config.out_dir().join(MODEL_FILE)).unwrap()
    };
    let one = threads(1);
    assert!(one == threads(3), "1 and 3 threads differ");

    let split = gmp95(&dir.join("split"), SparseKernels::On);
    train_in_two_sittings(&split);
    let resumed = std::fs::read(split.out_dir().join(MODEL_FILE)).unwrap();
    assert!(one == resumed, "the resumed run differs");
    let used = summary(&split.out_dir()).sparse_kernels.unwrap();
    assert!(used.training.contains(&"fc1.weight".to_string()));
}
