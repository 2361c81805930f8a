//! STR on LeNet-300-100 with the library API: learnable soft thresholds in their own optimiser
//! group, the target controller pulling the run to 95% sparsity, thresholds baked away at the end.
//! cargo run --release --example str_mnist

use std::path::Path;

use sparsegrad::data::{Normalize, batches, epoch_order, load_mnist_dir};
use sparsegrad::methods::{Str, StrConfig};
use sparsegrad::sparsity::report::{format_table, sparsity_report};
use sparsegrad::train::build_optimizer;
use sparsegrad::train::{Method, StepInfo, TrainConfig, evaluate::accuracy};
use sparsegrad::{models::LeNet300, optim, prelude::*, rng::derived};

fn main() -> Result<()> {
    let data = load_mnist_dir(Path::new("data/mnist-10k"))?;
    let norm = Normalize::fit(&data.train);
    let mut model = LeNet300::<f32>::new(28 * 28, 10, &mut derived(0, 1));
    // CLI defaults: per-layer s, g = sigmoid, s_init -5, lr 0.05, wd 5e-4, 10 epochs.
    let mut config = TrainConfig::default();
    config.sparsity.shared.target_sparsity = Some(0.95);
    let mut str = Str::new(StrConfig::new(
        &config.sparsity.methods.str,
        &config.method_context(),
    )?);
    str.attach(&mut model)?; // every Linear weight now computes sign(W) relu(|W| - g(s))
    let mut opt = build_optimizer(&config, &str)?; // SGD; thresholds decay like W (paper)
    let (epochs, batch) = (config.epochs, config.batch_size);
    let schedule = LrSchedule::new(config.lr, None, Schedule::parse("cosine", epochs)?);
    let all: Vec<usize> = (0..data.train.len()).collect();
    let steps_per_epoch = all.len().div_ceil(batch);
    for epoch in 0..epochs {
        schedule.apply(opt.as_mut(), epoch);
        let order = epoch_order(&all, 0, epoch);
        for (i, b) in batches::<f32>(&data.train, &order, batch, &norm).enumerate() {
            let info = StepInfo {
                epoch,
                step: epoch * steps_per_epoch + i,
                steps_per_epoch,
                total_steps: epochs * steps_per_epoch,
            };
            let tape = Tape::new();
            let logits = model.forward(tape.constant(b.images));
            let mut loss = logits.cross_entropy(&b.labels, 0.0);
            if let Some(control) = str.regulariser(&model, &tape, &info) {
                loss = loss + control; // |ln(1 - S_now) - ln(1 - S_target(t))|
            }
            optim::step(opt.as_mut(), &mut model, &loss.backward());
            str.after_step(&mut model, &info)?;
        }
        for warning in str.after_epoch(&mut model, epoch)? {
            eprintln!("warning: {warning}");
        }
        let sparsity = sparsity_report(&model).overall_sparsity;
        println!("epoch {} sparsity {sparsity:.4}", epoch + 1);
    }
    print!("{}", format_table(&sparsity_report(&model))); // per layer, with g(s)
    str.finish(&mut model)?; // W := sign(W) relu(|W| - g(s)): plain sparse weights from here on
    let test: Vec<usize> = (0..data.test.len()).collect();
    let acc = accuracy(&mut model, &data.test, &test, &norm);
    println!("test_accuracy={acc:.4}");
    Ok(())
}
