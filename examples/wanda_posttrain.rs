//! Wanda (Sun et al., 2023) after training: a dense LeNet-300-100 is pruned to 50% and 80% with
//! scores |W_ij| ||X_j|| from 1,024 unlabelled training images, per output row, with and without
//! the reconstruction fine-tuning, next to uniform magnitude pruning.
//!
//! cargo run --release --example wanda_posttrain      (about 1 min on 2 cores)
//! The same from the command line:
//!   sparsegrad train --epochs 3 --out runs/dense
//!   sparsegrad posttrain --checkpoint runs/dense/model.safetensors --method wanda \
//!     --target-sparsity 0.8 [--no-finetune]

use sparsegrad::error::Result;
use sparsegrad::posttrain::{self, PosttrainConfig};
use sparsegrad::run::dir::MODEL_FILE;
use sparsegrad::train::{Progress, RunOptions, TrainConfig, train};

fn main() -> Result<()> {
    sparsegrad::alloc::tune_allocator();
    let dir = std::env::temp_dir().join("sparsegrad-wanda-example");
    let dense = TrainConfig {
        epochs: 3,
        out: Some(dir.join("dense")),
        ..TrainConfig::default()
    };
    let force = RunOptions {
        force: true,
        ..RunOptions::default()
    };
    train(&dense, force, &mut Progress::new(false))?;
    for r0 in [0.5, 0.8] {
        for method in ["wanda", "magnitude-uniform"] {
            for no_finetune in [true, false] {
                let config = PosttrainConfig {
                    checkpoint: Some(dense.out_dir().join(MODEL_FILE)),
                    method: method.parse()?,
                    target_sparsity: Some(r0),
                    iters: 400,
                    no_finetune,
                    out: Some(dir.join(format!("{method}-{r0}-{no_finetune}"))),
                    ..PosttrainConfig::default()
                };
                let s = posttrain::run(&config, true, &mut Progress::new(false))?;
                println!(
                    "r0 {r0} {method:<17} fine-tuned {:<5}: test {:.2}% (dense {:.2}%)",
                    !no_finetune,
                    100.0 * s.test_accuracy,
                    100.0 * s.dense_test_accuracy
                );
            }
        }
    }
    Ok(())
}
