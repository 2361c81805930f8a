//! Whole training runs on the bundled data: resumption is bit-identical, results do not depend on
//! the thread count, divergence stops cleanly with the last good checkpoint kept.

use std::path::Path;

use crate::methods_support::{temp_dir, train_in_two_sittings};

use sparsegrad::io::checkpoint;
use sparsegrad::run::dir::{CHECKPOINT_FILE, MODEL_FILE};
use sparsegrad::run::meta::CheckpointMeta;
use sparsegrad::train::{Outcome, Progress, RunOptions, TrainConfig, train};

fn small(out: &Path) -> TrainConfig {
    TrainConfig {
        epochs: 2,
        batch_size: 128,
        out: Some(out.to_path_buf()),
        ..TrainConfig::default()
    }
}

fn bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Panics naming the first tensor (or the metadata) in which two safetensors files differ.
fn assert_same_file(a: &Path, b: &Path) {
    if bytes(a) == bytes(b) {
        return;
    }
    let (x, y) = (
        checkpoint::load::<f32>(a).unwrap(),
        checkpoint::load::<f32>(b).unwrap(),
    );
    for ((name, ta), (_, tb)) in x.tensors.iter().zip(&y.tensors) {
        let diff = ta
            .iter()
            .zip(tb.iter())
            .filter(|(p, q)| p.to_bits() != q.to_bits())
            .count();
        assert_eq!(
            diff,
            0,
            "{name}: {diff} of {} entries differ between {} and {}",
            ta.len(),
            a.display(),
            b.display()
        );
    }
    panic!(
        "{} and {} differ outside the tensors (metadata)",
        a.display(),
        b.display()
    );
}

#[test]
fn resume_is_bit_identical_to_an_uninterrupted_run() {
    let dir = temp_dir("resume");
    let straight = small(&dir.join("straight"));
    let outcome = train(&straight, RunOptions::default(), &mut Progress::plain()).unwrap();
    assert!(matches!(outcome, Outcome::Finished(_)));

    let split = small(&dir.join("split"));
    train_in_two_sittings(&split);

    assert_same_file(
        &straight.out_dir().join(MODEL_FILE),
        &split.out_dir().join(MODEL_FILE),
    );
    let a = checkpoint::load::<f32>(&straight.out_dir().join(CHECKPOINT_FILE)).unwrap();
    let b = checkpoint::load::<f32>(&split.out_dir().join(CHECKPOINT_FILE)).unwrap();
    assert!(
        a.tensors == b.tensors,
        "final checkpoints (weights and optimiser state) differ"
    );
    let metrics = |p: &Path| -> Vec<(f64, f64)> {
        sparsegrad::run::log::JsonLines::<sparsegrad::run::EpochMetrics>::read(
            &p.join("metrics.jsonl"),
        )
        .unwrap()
        .iter()
        .map(|m| (m.train_loss, m.test_acc))
        .collect()
    };
    assert_eq!(metrics(&straight.out_dir()), metrics(&split.out_dir()));
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let dir = temp_dir("threads");
    let run = |threads: usize| {
        let config = TrainConfig {
            epochs: 1,
            ..small(&dir.join(format!("t{threads}")))
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| train(&config, RunOptions::default(), &mut Progress::plain()))
            .unwrap();
        config.out_dir().join(MODEL_FILE)
    };
    assert_same_file(&run(1), &run(3));
}

#[test]
fn divergence_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint() {
    let dir = temp_dir("diverge");
    // Warm-up from lr 0.1 in epoch 1 to an absurd 5000 in epoch 2: epoch 1 is fine, epoch 2 blows up.
    let config = TrainConfig {
        lr: 1e4,
        warmup: Some("2:0.00001".into()),
        schedule: "constant".into(),
        epochs: 3,
        ..small(&dir.join("run"))
    };
    let err = train(&config, RunOptions::default(), &mut Progress::plain())
        .unwrap_err()
        .to_string();
    let ckpt_path = config.out_dir().join(CHECKPOINT_FILE);
    assert!(
        err.starts_with("training diverged in epoch 2 at step "),
        "{err}"
    );
    assert!(
        err.ends_with(&format!(
            "the last good checkpoint is {} (try a smaller --lr)",
            ckpt_path.display()
        )),
        "{err}"
    );
    let ckpt = checkpoint::load::<f32>(&ckpt_path).unwrap();
    let meta = CheckpointMeta::from_checkpoint(&ckpt, &ckpt_path).unwrap();
    assert_eq!(
        meta.state.unwrap().epoch,
        1,
        "the kept checkpoint is the one after epoch 1"
    );
    assert!(
        ckpt.tensors
            .iter()
            .all(|(_, t)| t.iter().all(|v| v.is_finite()))
    );
    assert!(!config.out_dir().join(MODEL_FILE).exists());
}
