//! ResNet-20 (He et al. 2016, option-A shortcuts) on CIFAR-10, trained by the library's loop with
//! the usual CIFAR settings: SGD with momentum 0.9, weight decay 1e-4, learning rate 0.1 on a
//! cosine schedule, batch 128, random crops and flips, 10% of the training set held out for
//! validation.
//!
//! cargo run --release --example resnet20_cifar -- DIR [EPOCHS]
//!
//! DIR holds the CIFAR-10 binary version (`data_batch_1.bin` .. `data_batch_5.bin` and
//! `test_batch.bin`, directly or in `cifar-10-batches-bin/`), as unpacked from
//! https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz. EPOCHS defaults to 30, a short
//! schedule for a laptop. The paper (91.25% test accuracy) trains for 64k iterations at batch 128
//! and divides the learning rate by 10 at 32k and 48k; akamaster's `pytorch_resnet_cifar10` recipe
//! is 200 epochs with the divisions at epochs 100 and 150, which on the command line is
//! `sparsegrad train --model resnet20 --data DIR --epochs 200 --lr 0.1 --batch-size 128
//! --weight-decay 1e-4 --schedule multistep:100,150:0.1`.
//!
//! Prints one line per epoch, then `test_accuracy=0.xxxx` and the wall time; the run directory is
//! `runs/example-resnet20-cifar`.

use std::process::ExitCode;
use std::time::Instant;

use sparsegrad::prelude::*;
use sparsegrad::train::{Outcome, Progress, RunOptions, TrainConfig, train};

const USAGE: &str = "usage: cargo run --release --example resnet20_cifar -- DIR [EPOCHS]

Trains ResNet-20 on the CIFAR-10 binary files in DIR (data_batch_1.bin .. data_batch_5.bin and
test_batch.bin, directly or in DIR/cifar-10-batches-bin), for EPOCHS epochs (default 30).
Download: https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";

const DEFAULT_EPOCHS: usize = 30;

/// (data directory, epochs) from the command line, or the message to print.
fn parse_args(args: &[String]) -> std::result::Result<(String, usize), String> {
    match args {
        [flag] if flag == "-h" || flag == "--help" => Err(String::new()),
        [dir] => Ok((dir.clone(), DEFAULT_EPOCHS)),
        [dir, epochs] => match epochs.parse() {
            Ok(n) if n > 0 => Ok((dir.clone(), n)),
            _ => Err(format!("EPOCHS must be a positive integer, got `{epochs}`")),
        },
        [] => Err("missing the CIFAR-10 directory DIR".into()),
        _ => Err(format!(
            "expected DIR [EPOCHS], got {} arguments",
            args.len()
        )),
    }
}

fn run(data: String, epochs: usize) -> Result<f64> {
    let config = TrainConfig {
        model: "resnet20".parse().unwrap(),
        data,
        epochs,
        batch_size: 128,
        lr: 0.1,
        weight_decay: 1e-4,
        out: Some("runs/example-resnet20-cifar".into()),
        ..TrainConfig::default()
    };
    let options = RunOptions {
        force: true,
        ..RunOptions::default()
    };
    let Outcome::Finished(summary) = train(&config, options, &mut Progress::new(false))? else {
        unreachable!("the run is not asked to stop early")
    };
    Ok(summary.test_accuracy)
}

fn main() -> ExitCode {
    sparsegrad::alloc::tune_allocator();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (data, epochs) = match parse_args(&args) {
        Ok(parsed) => parsed,
        Err(problem) if problem.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(problem) => {
            eprintln!("error: {problem}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let start = Instant::now();
    match run(data, epochs) {
        Ok(accuracy) => {
            println!("test_accuracy={accuracy:.4}");
            println!("wall_seconds={:.1}", start.elapsed().as_secs_f64());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
