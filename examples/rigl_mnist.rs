//! RigL on LeNet-300-100 with the library API: a random ERK mask at 90% sparsity, and every 100
//! steps the smallest active |w| dropped and as many weights grown where the dense gradient of
//! W * m is largest (the loop keeps those gradients on update steps only).
//! cargo run --release --example rigl_mnist

use std::path::Path;

use sparsegrad::data::{Normalize, batches, epoch_order, load_mnist_dir};
use sparsegrad::sparsity::budget::Distribution;
use sparsegrad::sparsity::report::{format_table, sparsity_report};
use sparsegrad::train::build_optimizer;
use sparsegrad::train::{StepInfo, TrainConfig, evaluate::accuracy};
use sparsegrad::{models::LeNet300, optim, prelude::*, rng::derived};

fn main() -> Result<()> {
    let data = load_mnist_dir(Path::new("data/mnist-10k"))?;
    let norm = Normalize::fit(&data.train);
    let mut model = LeNet300::<f32>::new(28 * 28, 10, &mut derived(0, 1));
    let mut config = TrainConfig {
        method: "rigl".parse()?,
        ..TrainConfig::default()
    };
    config.sparsity.shared.target_sparsity = Some(0.9);
    config.sparsity.shared.distribution = Distribution::Erk;
    let mut rigl = config.build_method()?; // --rigl-update-every 100, alpha 0.3, T_end 75%
    rigl.attach(&mut model)?; // random masks at the ERK counts, masked weights zeroed
    let mut opt = build_optimizer(&config, rigl.as_ref())?;
    let (epochs, batch) = (config.epochs, config.batch_size);
    let all: Vec<usize> = (0..data.train.len()).collect();
    let steps_per_epoch = all.len().div_ceil(batch);
    for epoch in 0..epochs {
        let order = epoch_order(&all, 0, epoch);
        for (i, b) in batches::<f32>(&data.train, &order, batch, &norm).enumerate() {
            let info = StepInfo {
                epoch,
                step: epoch * steps_per_epoch + i,
                steps_per_epoch,
                total_steps: epochs * steps_per_epoch,
            };
            let keep = rigl.wants_effective_grads(&info); // true on update steps
            model.visit_weights_mut("", &mut |_, w| w.retain_effective_grad = keep);
            let tape = Tape::new();
            let logits = model.forward(tape.constant(b.images));
            let mut grads = logits.cross_entropy(&b.labels, 0.0).backward();
            rigl.after_backward(&mut model, &mut grads, &info)?; // |dL/d(W m)|: grow scores
            optim::step(opt.as_mut(), &mut model, &grads);
            rigl.after_step(&mut model, &info)?; // drop by |w|, grow by |gradient|
        }
        let sparsity = sparsity_report(&model).overall_sparsity;
        println!("epoch {} sparsity {sparsity:.4}", epoch + 1);
    }
    println!("{}", rigl.summary(&model)); // updates, weights moved, weights revived
    print!("{}", format_table(&sparsity_report(&model)));
    rigl.finish(&mut model)?; // masks baked into plain weights
    let test: Vec<usize> = (0..data.test.len()).collect();
    let acc = accuracy(&mut model, &data.test, &test, &norm);
    println!("test_accuracy={acc:.4}");
    Ok(())
}
