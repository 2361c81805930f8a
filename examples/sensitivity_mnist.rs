//! Sensitivity-driven regularisation (Tartaglione et al., NeurIPS 2018) on LeNet-300-100: every
//! step shrinks each weight by lambda w max(0, 1 - S), S = sum_k |d y_k / d w| the sensitivity of
//! the softmax outputs to it, and after every epoch the weights below the threshold are pruned.
//! Prints the accuracy and the per-layer sparsity for two lambdas.
//!
//! cargo run --release --example sensitivity_mnist      (about 1 min on 2 cores: one backward
//! pass per class and step)
//! The same from the command line:
//!   sparsegrad train --method sensitivity --sensitivity-lambda 0.003

use sparsegrad::error::Result;
use sparsegrad::train::{Outcome, Progress, RunOptions, TrainConfig, train};

fn main() -> Result<()> {
    sparsegrad::alloc::tune_allocator();
    let force = RunOptions {
        force: true,
        ..RunOptions::default()
    };
    for lambda in [1e-3, 3e-3] {
        let mut config = TrainConfig {
            method: "sensitivity".parse()?,
            epochs: 5,
            out: Some(std::env::temp_dir().join(format!("sparsegrad-sensitivity-{lambda}"))),
            ..TrainConfig::default()
        };
        config.sparsity.methods.sensitivity.sensitivity_lambda = lambda;
        let Outcome::Finished(s) = train(&config, force, &mut Progress::new(false))? else {
            unreachable!("no early stop was asked for")
        };
        let layers: Vec<String> = s
            .layers
            .iter()
            .map(|l| format!("{} {:.1}%", l.name, 100.0 * l.sparsity))
            .collect();
        println!(
            "lambda {lambda}: test accuracy {:.2}%, sparsity {:.2}% ({})",
            100.0 * s.test_accuracy,
            100.0 * s.overall_sparsity,
            layers.join(", ")
        );
    }
    Ok(())
}
