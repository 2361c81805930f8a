//! Fuzz properties of every reader of untrusted bytes: IDX (raw and gzip) files and directories,
//! CIFAR-10/100 files and directories, safetensors checkpoints and exports with their JSON
//! metadata, the sparse export, the run files `report` and `--resume` read back (`summary.json`,
//! `metrics.jsonl`), and a whole `train --resume` from a damaged checkpoint. Each feeds random
//! bytes, damaged
//! copies of valid files (truncations, bit flips, inserted, removed and overwritten bytes,
//! trailing garbage) and headers with extreme fields, and asserts no panic and, on failure, a
//! one-line error naming the file.
//!
//! Memory bounds (no allocation from an unchecked header) are asserted on the same inputs in
//! `tests/data_idx/fuzz_memory.rs`, which has a counting allocator. A long run raises every
//! property's case count: `SPARSEGRAD_FUZZ_CASES=100000 cargo test --release fuzz_`.

use std::path::Path;

use proptest::prelude::*;
use sparsegrad::data::cifar::{CIFAR10_TEST_FILE, CIFAR10_TRAIN_FILES};
use sparsegrad::data::idx::read_idx;
use sparsegrad::data::{
    Cifar100Labels, load_dir, load_mnist_dir, read_cifar10_file, read_cifar100_file,
};
use sparsegrad::error::Result;
use sparsegrad::io::checkpoint::{Checkpoint, load};
use sparsegrad::io::sparse_export::{load_sparse_export, read_sparse_export};
use sparsegrad::run::dir::read_summary;
use sparsegrad::run::load_model;
use sparsegrad::run::log::JsonLines;
use sparsegrad::run::report::{ComparisonRow, markdown_table};
use sparsegrad::run::{EpochMetrics, PosttrainSummary, Summary};
use sparsegrad::train::{Progress, RunOptions, TrainConfig, train};

use crate::fuzz_formats::*;
use crate::fuzz_json::{edit_json_under, json_edit};
use crate::fuzz_support::*;
use crate::scratch::Scratch;

/// Cases per property on CI; each property takes a few seconds at most.
const CI_CASES: u32 = 96;

/// The checks every reader's result must pass, and what a success must satisfy.
fn check_idx(result: &Result<sparsegrad::data::idx::IdxArray>, path: &Path) {
    assert_error_names(result, path);
    if let Ok(a) = result {
        assert_eq!(a.data.len(), a.dims.iter().product::<usize>(), "{a:?}");
    }
}

proptest! {
    #![proptest_config(fuzz_config(CI_CASES))]

    #[test]
    fn fuzz_idx_raw(bytes in idx_raw_input()) {
        let dir = Scratch::new("fuzz-idx-raw");
        let path = dir.write("f", &bytes);
        check_idx(&read_idx(&path), &path);
    }

    #[test]
    fn fuzz_idx_gzip(bytes in idx_gzip_input()) {
        let dir = Scratch::new("fuzz-idx-gzip");
        let path = dir.write("f.gz", &bytes);
        check_idx(&read_idx(&path), &path);
    }

    /// A directory of four IDX files, one damaged or replaced, the test images possibly of
    /// another height or width: whatever loads has splits that agree.
    #[test]
    fn fuzz_idx_dir(
        which in 0usize..4,
        compress in any::<bool>(),
        test_hw in prop_oneof![Just((4u32, 5u32)), Just((5, 4)), Just((4, 4)), Just((1, 1))],
        edits in prop::collection::vec(edit(), 0..3),
        label in prop_oneof![Just(None), (any::<prop::sample::Index>(), any::<u8>()).prop_map(Some)],
    ) {
        let dir = Scratch::new("fuzz-idx-dir");
        let (train_x, train_y) = idx_pair(6, 4, 5);
        let (test_x, test_y) = idx_pair(4, test_hw.0, test_hw.1);
        let mut files = [train_x, train_y, test_x, test_y];
        for e in &edits {
            e.apply(&mut files[which]);
        }
        if let Some((i, value)) = label {
            // One label set to any byte (past its 8-byte header).
            let labels = &mut files[if which % 2 == 0 { 1 } else { 3 }];
            if labels.len() > 8 {
                let at = 8 + i.index(labels.len() - 8);
                labels[at] = value;
            }
        }
        for (name, bytes) in sparsegrad::data::dataset::IDX_FILES.iter().zip(&files) {
            if compress {
                dir.write(&format!("{name}.gz"), &gzip(bytes));
            } else {
                dir.write(name, bytes);
            }
        }
        let result = load_mnist_dir(dir.path());
        assert_error_within(&result, dir.path());
        if let Ok(data) = &result {
            prop_assert_eq!(data.train.image_shape(), data.test.image_shape());
            for split in [&data.train, &data.test] {
                prop_assert!(split.labels.iter().all(|&l| (l as usize) < split.classes));
                prop_assert_eq!(split.labels.len(), split.images.shape()[0]);
            }
        }
    }

    #[test]
    fn fuzz_cifar10_file(bytes in cifar10_input()) {
        let dir = Scratch::new("fuzz-cifar10");
        let path = dir.write("test_batch.bin", &bytes);
        let result = read_cifar10_file(&path);
        assert_error_names(&result, &path);
        if let Ok(d) = result {
            prop_assert_eq!(d.len() * 3073, bytes.len());
            prop_assert!(d.labels.iter().all(|&l| l < 10));
        }
    }

    #[test]
    fn fuzz_cifar100_file(
        bytes in cifar100_input(),
        coarse in any::<bool>(),
    ) {
        let dir = Scratch::new("fuzz-cifar100");
        let path = dir.write("test.bin", &bytes);
        let labels = if coarse { Cifar100Labels::Coarse } else { Cifar100Labels::Fine };
        let result = read_cifar100_file(&path, labels);
        assert_error_names(&result, &path);
        if let Ok(d) = result {
            prop_assert_eq!(d.len() * 3074, bytes.len());
            prop_assert!(d.labels.iter().all(|&l| (l as usize) < d.classes));
        }
    }

    /// A CIFAR-10 directory with one of its six files damaged (or missing).
    #[test]
    fn fuzz_cifar10_dir(
        which in 0usize..6,
        edits in prop::collection::vec(edit(), 0..3),
        remove in prop::bool::weighted(0.1),
    ) {
        let dir = Scratch::new("fuzz-cifar10-dir");
        let names: Vec<&str> = CIFAR10_TRAIN_FILES.iter().copied().chain([CIFAR10_TEST_FILE]).collect();
        for (i, name) in names.iter().enumerate() {
            let mut bytes = cifar_records(1, 1, 10);
            if i == which {
                for e in &edits {
                    e.apply(&mut bytes);
                }
            }
            if !(remove && i == which) {
                dir.write(name, &bytes);
            }
        }
        let result = load_dir(dir.path());
        assert_error_within(&result, dir.path());
    }
}

// ---- checkpoints and run files ----------------------------------------------------------------

/// A checkpoint file's readers: the tensor reader in both element types, and the model loader.
fn check_checkpoint(path: &Path) {
    let as_f32: Result<Checkpoint<f32>> = load(path);
    assert_error_names(&as_f32, path);
    let as_f64: Result<Checkpoint<f64>> = load(path);
    assert_error_names(&as_f64, path);
    assert_eq!(as_f32.is_ok(), as_f64.is_ok(), "element types disagree");
    // Including what the model and method builders refuse in the metadata (`load_model` names
    // the file for them).
    assert_error_names(&load_model(path), path);
}

proptest! {
    #![proptest_config(fuzz_config(CI_CASES))]

    #[test]
    fn fuzz_checkpoint(bytes in checkpoint_input()) {
        let dir = Scratch::new("fuzz-checkpoint");
        let path = dir.write("model.safetensors", &bytes);
        check_checkpoint(&path);
    }

    /// `summary.json` of a training run, read and formatted as `report` does.
    #[test]
    fn fuzz_train_summary(bytes in json_input(seed_file("run", "summary.json"))) {
        let dir = Scratch::new("fuzz-train-summary");
        let path = dir.write("summary.json", &bytes);
        let result = read_summary::<Summary>(dir.path());
        assert_error_names(&result, &path);
        if let Ok(s) = result {
            markdown_table(&[ComparisonRow::from_summary("run", &s)]);
        }
    }

    /// `summary.json` of a post-training run, read and formatted as `report` does.
    #[test]
    fn fuzz_posttrain_summary(bytes in json_input(seed_file("post", "summary.json"))) {
        let dir = Scratch::new("fuzz-post-summary");
        let path = dir.write("summary.json", &bytes);
        let result = read_summary::<PosttrainSummary>(dir.path());
        assert_error_names(&result, &path);
        if let Ok(s) = result {
            markdown_table(&[ComparisonRow::from_posttrain("run", &s)]);
        }
    }

    /// `metrics.jsonl`, read back by `--resume`.
    #[test]
    fn fuzz_metrics_log(bytes in json_input(seed_file("run", "metrics.jsonl"))) {
        let dir = Scratch::new("fuzz-metrics");
        let path = dir.write("metrics.jsonl", &bytes);
        assert_error_names(&JsonLines::<EpochMetrics>::read(&path), &path);
    }
}

/// A file of the cached seed runs: `run` (training) or `post` (post-training).
fn seed_file(run: &str, name: &str) -> String {
    let runs = seed_runs_cached();
    let dir = if run == "run" {
        &runs.train
    } else {
        &runs.post
    };
    std::fs::read_to_string(dir.join(name)).unwrap()
}

/// The resumable seed run's checkpoint, damaged as bytes, or with its loop state or its
/// optimiser and model tensors edited in the metadata: `train --resume` refuses it or runs on.
fn resume_input() -> impl Strategy<Value = Vec<u8>> {
    let valid = std::fs::read(seed_runs_cached().resumable.join("checkpoint.safetensors")).unwrap();
    let state = {
        let valid = valid.clone();
        prop::collection::vec(json_edit(), 1..=3).prop_map(move |edits| {
            let metadata = edit_json_under(&metadata_of(&valid), "/state", &edits);
            with_metadata(&valid, &metadata)
        })
    };
    prop_oneof![damaged(valid), state]
}

proptest! {
    #![proptest_config(fuzz_config(CI_CASES / 8))]

    /// `train --resume` from a damaged checkpoint: no panic, and a failure is one line.
    #[test]
    fn fuzz_resume(bytes in resume_input()) {
        let seed = seed_runs_cached();
        let dir = Scratch::new("fuzz-resume");
        let run = dir.path().join("run");
        std::fs::create_dir_all(&run).unwrap();
        for entry in std::fs::read_dir(&seed.resumable).unwrap() {
            let from = entry.unwrap().path();
            std::fs::copy(&from, run.join(from.file_name().unwrap())).unwrap();
        }
        std::fs::write(run.join("checkpoint.safetensors"), &bytes).unwrap();
        let config = TrainConfig { out: Some(run), ..seed.resumable_config.clone() };
        let resume = RunOptions { resume: true, ..RunOptions::default() };
        if let Err(e) = train(&config, resume, &mut Progress::plain()) {
            prop_assert!(!e.to_string().contains('\n'), "error is not one line: {}", e);
        }
    }
}

// ---- the sparse export -------------------------------------------------------------------------

proptest! {
    #![proptest_config(fuzz_config(CI_CASES))]

    /// `read_sparse_export` in both element types, and loading into the model it came from.
    #[test]
    fn fuzz_sparse_export(bytes in sparse_export_input()) {
        let dir = Scratch::new("fuzz-sparse-export");
        let path = dir.write("model.sparse.safetensors", &bytes);
        let as_f32 = read_sparse_export::<f32>(&path);
        assert_error_names(&as_f32, &path);
        assert_error_names(&read_sparse_export::<f64>(&path), &path);
        if as_f32.is_ok() {
            let (mut model, _) =
                load_model(&seed_runs_cached().train.join("model.safetensors")).unwrap();
            assert_error_names(&load_sparse_export(model.as_mut(), &path), &path);
        }
    }
}
