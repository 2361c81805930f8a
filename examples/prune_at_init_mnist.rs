//! Pruning at initialisation on LeNet-300-100: SNIP (|g w| on one batch) and GraSP (−w ⊙ H g with
//! exact Hessian-vector products, T = 200, 10 images per class) at 95% sparsity with the papers'
//! global ranking, then training with fixed masks; prints per-layer sparsity and accuracy.
//! cargo run --release --example prune_at_init_mnist

use std::path::PathBuf;

use sparsegrad::error::Result;
use sparsegrad::sparsity::budget::Distribution;
use sparsegrad::train::{Outcome, Progress, RunOptions, TrainConfig, train};

fn main() -> Result<()> {
    for method in ["snip", "grasp"] {
        let mut config = TrainConfig {
            method: method.parse()?,
            epochs: 5,
            out: Some(PathBuf::from(format!("runs/example-{method}"))),
            ..TrainConfig::default()
        };
        config.sparsity.shared.target_sparsity = Some(0.95);
        // The papers rank all layers together; the shared default (uniform) would not.
        config.sparsity.shared.distribution = Distribution::Global;
        let options = RunOptions {
            force: true,
            ..RunOptions::default()
        };
        let Outcome::Finished(summary) = train(&config, options, &mut Progress::plain())? else {
            unreachable!("no stop was asked for")
        };
        let layers: Vec<String> = summary
            .layers
            .iter()
            .map(|l| format!("{} {:.1}%", l.name, 100.0 * l.sparsity))
            .collect();
        // "Best" is selected on the validation split (`run::best`); none without one.
        let best = summary
            .best
            .as_ref()
            .map_or("no validation split".to_string(), |b| {
                format!("best {:.2}% at epoch {}", 100.0 * b.test_accuracy, b.epoch)
            });
        println!(
            "{method}: test {:.2}% ({best}), sparsity per layer {}",
            100.0 * summary.test_accuracy,
            layers.join(", ")
        );
    }
    Ok(())
}
