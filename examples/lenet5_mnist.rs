//! LeNet-5-Caffe on the bundled MNIST-10k (8,000 training and 2,000 test digits), trained by the
//! library's loop (`sparsegrad::train::train`, the code behind `sparsegrad train`): SGD with
//! momentum 0.9, weight decay 5e-4, learning rate 0.05 on a cosine schedule, batch 64, 10 epochs,
//! 10% of the training set held out for validation.
//!
//! cargo run --release --example lenet5_mnist
//!
//! Prints one line per epoch (loss, accuracies, seconds), then `test_accuracy=0.9xxx` and the wall
//! time. The run directory `runs/example-lenet5-mnist` receives what every run writes: config,
//! per-epoch metrics, a resumable checkpoint, the exported model and SVG curves. The same run
//! from the command line: `sparsegrad train --model lenet5 --out runs/example-lenet5-mnist --force`.

use std::time::Instant;

use sparsegrad::prelude::*;
use sparsegrad::train::{Outcome, Progress, RunOptions, TrainConfig, train};

fn main() -> Result<()> {
    sparsegrad::alloc::tune_allocator();
    let start = Instant::now();
    let config = TrainConfig {
        model: "lenet5".parse().unwrap(),
        data: "mnist-10k".into(),
        epochs: 10,
        lr: 0.05,
        out: Some("runs/example-lenet5-mnist".into()),
        ..TrainConfig::default()
    };
    // `force`: a second run of the example replaces the first one's directory.
    let options = RunOptions {
        force: true,
        ..RunOptions::default()
    };
    let Outcome::Finished(summary) = train(&config, options, &mut Progress::new(false))? else {
        unreachable!("the run is not asked to stop early")
    };
    println!("test_accuracy={:.4}", summary.test_accuracy);
    println!("wall_seconds={:.1}", start.elapsed().as_secs_f64());
    Ok(())
}
