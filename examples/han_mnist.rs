//! Han et al. prune-retrain on LeNet-300-100 through the whole-run API: dense training, then two
//! rounds of pruning |w| < q std per layer (q per layer) and retraining at lr / 10; prints every
//! round's kept fractions from the summary.
//! cargo run --release --example han_mnist

use std::path::PathBuf;

use sparsegrad::error::Result;
use sparsegrad::train::{Outcome, Progress, RunOptions, TrainConfig, train};

fn main() -> Result<()> {
    let mut config = TrainConfig {
        method: "han".parse()?,
        epochs: 5, // per round: 5 dense epochs, then 5 retraining epochs per round
        out: Some(PathBuf::from("runs/example-han")),
        ..TrainConfig::default()
    };
    config.sparsity.shared.rounds = Some(2);
    // The output layer is pruned more gently, as in the paper's per-layer results.
    config.sparsity.methods.han.han_q = vec![1.0, 1.0, 0.6];
    let options = RunOptions {
        force: true,
        ..RunOptions::default()
    };
    let Outcome::Finished(summary) = train(&config, options, &mut Progress::plain())? else {
        unreachable!("no stop was asked for")
    };
    for round in summary.method_details["rounds"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let kept: Vec<String> = round["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| {
                format!(
                    "{} {:.1}%",
                    l[0].as_str().unwrap_or("?"),
                    100.0 * l[2].as_f64().unwrap_or(0.0)
                )
            })
            .collect();
        println!("round {}: kept {}", round["round"], kept.join(", "));
    }
    // "Best" is selected on the validation split at the final sparsity (`run::best`).
    let best = summary
        .best
        .as_ref()
        .map_or("no validation split".to_string(), |b| {
            format!("best {:.2}% at epoch {}", 100.0 * b.test_accuracy, b.epoch)
        });
    println!(
        "test accuracy {:.2}% ({best}), sparsity {:.2}%",
        100.0 * summary.test_accuracy,
        100.0 * summary.overall_sparsity
    );
    Ok(())
}
