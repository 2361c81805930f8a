//! Lottery tickets on LeNet-300-100: iterative magnitude pruning (20% per layer, 10% of the output
//! layer per round) with rewinding to the initialisation, next to the reinit control; prints the
//! per-round rows (density, test accuracy at the best validation accuracy and its iteration).
//! cargo run --release --example lottery_mnist

use std::path::PathBuf;

use sparsegrad::error::Result;
use sparsegrad::methods::lottery::LotteryControl;
use sparsegrad::train::{Outcome, Progress, RunOptions, TrainConfig, train};

fn main() -> Result<()> {
    for control in [LotteryControl::None, LotteryControl::Reinit] {
        let mut config = TrainConfig {
            method: "lottery".parse()?,
            epochs: 3,
            out: Some(PathBuf::from(format!("runs/example-lottery-{control:?}"))),
            ..TrainConfig::default()
        };
        config.sparsity.shared.rounds = Some(4);
        config.sparsity.methods.lottery.lottery_control = control;
        let options = RunOptions {
            force: true,
            ..RunOptions::default()
        };
        let Outcome::Finished(summary) = train(&config, options, &mut Progress::plain())? else {
            unreachable!("no stop was asked for")
        };
        println!("control {control:?}");
        for row in summary.method_details["rounds"]
            .as_array()
            .into_iter()
            .flatten()
        {
            println!(
                "  round {}  density {:.3}  test at best val {:.4}  final test {:.4}  best val at iteration {}",
                row["round"],
                row["density"].as_f64().unwrap_or(0.0),
                row["test_accuracy_at_best_val"].as_f64().unwrap_or(0.0),
                row["final_test_accuracy"].as_f64().unwrap_or(0.0),
                row["best_val_iteration"]
            );
        }
    }
    Ok(())
}
