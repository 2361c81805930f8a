//! LeNet-300-100 on the bundled MNIST-10k with SGD + momentum and a per-epoch cosine learning-rate
//! schedule (`CosineAnnealingLR(T_max = EPOCHS)`): the engine's first real run.
//!
//! cargo run --release --example mlp_mnist
//! Prints the loss and test accuracy per epoch, then `test_accuracy=0.9xxx`.

use std::path::Path;
use std::time::Instant;

use sparsegrad::data::{Dataset, Normalize, batches, epoch_order, load_mnist_dir};
use sparsegrad::metrics::correct;
use sparsegrad::models::LeNet300;
use sparsegrad::optim;
use sparsegrad::prelude::*;
use sparsegrad::rng::derived;

const SEED: u64 = 0;
const EPOCHS: usize = 10;
const BATCH: usize = 64;

fn accuracy(model: &mut LeNet300<f32>, data: &Dataset, norm: &Normalize) -> f64 {
    let order: Vec<usize> = (0..data.len()).collect();
    let right: usize = batches::<f32>(data, &order, 500, norm)
        .map(|batch| {
            let tape = Tape::new();
            let _no_grad = tape.no_grad();
            correct(
                &model.forward(tape.constant(batch.images)).value(),
                &batch.labels,
            )
        })
        .sum();
    right as f64 / data.len() as f64
}

fn main() -> Result<()> {
    sparsegrad::alloc::tune_allocator();
    let start = Instant::now();
    let data = load_mnist_dir(Path::new("data/mnist-10k"))?;
    let norm = Normalize::fit(&data.train);
    let mut model = LeNet300::<f32>::new(28 * 28, 10, &mut derived(SEED, 1));
    let mut opt = Sgd::new(SgdConfig {
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 5e-4,
        ..Default::default()
    });
    let schedule = LrSchedule::new(
        opt.config.lr,
        None,
        Schedule::Cosine {
            t_max: EPOCHS,
            eta_min: 0.0,
        },
    );
    let all: Vec<usize> = (0..data.train.len()).collect();
    let mut test_accuracy = 0.0;
    for epoch in 0..EPOCHS {
        schedule.apply(&mut opt, epoch);
        let (mut loss_sum, mut steps) = (0.0, 0);
        for batch in batches::<f32>(&data.train, &epoch_order(&all, SEED, epoch), BATCH, &norm) {
            let tape = Tape::new();
            let loss = model
                .forward(tape.constant(batch.images))
                .cross_entropy(&batch.labels, 0.0);
            loss_sum += loss.item() as f64;
            steps += 1;
            let grads = loss.backward();
            optim::step(&mut opt, &mut model, &grads);
        }
        test_accuracy = accuracy(&mut model, &data.test, &norm);
        println!(
            "epoch {:2}  lr {:.5}  loss {:.4}  test_acc {:.4}  ({:.1}s)",
            epoch + 1,
            opt.config.lr,
            loss_sum / steps as f64,
            test_accuracy,
            start.elapsed().as_secs_f64()
        );
    }
    println!("test_accuracy={test_accuracy:.4}");
    Ok(())
}
