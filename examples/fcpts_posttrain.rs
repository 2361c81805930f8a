//! Post-training sparsity with FCPTS (Gong et al., AAAI 2024) on LeNet-300-100.
//!
//! Trains a dense model on the bundled MNIST-10k for 3 epochs, then sparsifies it to 90% with
//! 1,024 unlabelled training images: FCPTS (learned per-layer thresholds under a control loss) and,
//! for comparison, ERK magnitude pruning with the same reconstruction fine-tuning. Prints each
//! layer's sparsity: the ERK start, what FCPTS learned, and the result after the exact fix-up.
//!
//! cargo run --release --example fcpts_posttrain      (about 20 s on 2 cores)
//! The same from the command line:
//!   sparsegrad train --epochs 3 --out runs/dense
//!   sparsegrad posttrain --checkpoint runs/dense/model.safetensors --target-sparsity 0.9

use sparsegrad::error::Result;
use sparsegrad::posttrain::{self, PosttrainConfig};
use sparsegrad::run::dir::MODEL_FILE;
use sparsegrad::train::{Progress, RunOptions, TrainConfig, train};

fn main() -> Result<()> {
    sparsegrad::alloc::tune_allocator();
    let dir = std::env::temp_dir().join("sparsegrad-fcpts-example");
    let force = RunOptions {
        force: true,
        ..RunOptions::default()
    };
    let dense = TrainConfig {
        epochs: 3,
        out: Some(dir.join("dense")),
        ..TrainConfig::default()
    };
    train(&dense, force, &mut Progress::new(false))?;

    for method in ["fcpts", "magnitude-erk"] {
        let config = PosttrainConfig {
            checkpoint: Some(dense.out_dir().join(MODEL_FILE)),
            method: method.parse().unwrap(),
            target_sparsity: Some(0.9),
            out: Some(dir.join(method)),
            ..PosttrainConfig::default()
        };
        let s = posttrain::run(&config, true, &mut Progress::new(false))?;
        println!(
            "\n{method}: test accuracy {:.2}% (dense {:.2}%), {:.2}% sparse, {:.1}s",
            100.0 * s.test_accuracy,
            100.0 * s.dense_test_accuracy,
            100.0 * s.achieved_sparsity,
            s.optimise_seconds
        );
        for l in &s.layers {
            let learned = l
                .learned_sparsity
                .map(|r| format!("  learned {:6.2}%", 100.0 * r))
                .unwrap_or_default();
            println!(
                "  {:<10} start {:6.2}%{learned}  final {:6.2}%",
                l.report.name,
                100.0 * l.initial_sparsity,
                100.0 * l.report.sparsity
            );
        }
    }
    println!("\nrun directories in {}", dir.display());
    Ok(())
}
