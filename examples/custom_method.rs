//! A sparsification method of your own, written on the plugin shape (`methods::Method`) and
//! driven by a hand-written loop that calls its hooks where `sparsegrad train` calls them.
//! The method: "random pruning at initialisation", the control of SNIP and lottery tickets —
//! every prunable layer loses the same fraction of its weights, chosen uniformly at random, and
//! the masks stay fixed. `docs/extending.md` walks through it and says how to register the
//! method for the command line instead.
//!
//! cargo run --release --example custom_method

use std::path::Path;

use sparsegrad::data::{Normalize, batches, epoch_order, load_mnist_dir};
use sparsegrad::methods::prune::{Score, attach_masks, scores, shrink_masks};
use sparsegrad::methods::{InitData, Method, StepInfo, uniform_prune_counts};
use sparsegrad::metrics::correct;
use sparsegrad::models::{LeNet300, ModelName, ModelSpec};
use sparsegrad::optim;
use sparsegrad::prelude::*;
use sparsegrad::rng::derived;
use sparsegrad::sparsity::report::sparsity_report;

/// Random pruning at initialisation to `target` sparsity, uniform over the layers.
struct RandomAtInit {
    target: f64,
    seed: u64,
}

impl Method for RandomAtInit {
    fn name(&self) -> &'static str {
        "random-at-init"
    }

    // Structure only: a mask of ones on every prunable weight (no data yet).
    fn attach(&mut self, model: &mut dyn Module<f32>) -> Result<()> {
        attach_masks(model, false, false, Some(self.target)).map(|_| ())
    }

    // Data-aware start of a fresh run: here only the seed matters. Random scores, then each
    // layer keeps its highest-scoring (1 - target) share.
    fn init(&mut self, model: &mut dyn Module<f32>, _data: &InitData) -> Result<()> {
        let layers = sparsegrad::methods::prunable_weights(model, false, false)?;
        let counts = uniform_prune_counts(&layers, self.target, true)?;
        let random = scores(model, Score::Random, &mut derived(self.seed, 7));
        shrink_masks(model, &layers, &random, &counts)
    }

    // The default `finish` bakes the masks into plain weights with exact zeros.
}

fn main() -> Result<()> {
    let data = load_mnist_dir(Path::new("data/mnist-10k"))?;
    let norm = Normalize::fit(&data.train);
    let mut model = LeNet300::<f32>::new(28 * 28, 10, &mut derived(0, 1));
    let mut method = RandomAtInit {
        target: 0.9,
        seed: 0,
    };
    let all: Vec<usize> = (0..data.train.len()).collect();

    method.attach(&mut model)?;
    let fresh = |_seed: u64| -> Result<Box<dyn Module<f32>>> {
        Ok(Box::new(LeNet300::<f32>::new(
            28 * 28,
            10,
            &mut derived(0, 1),
        )))
    };
    method.init(
        &mut model,
        &InitData {
            data: &data.train,
            indices: &all,
            norm: &norm,
            batch_size: 64,
            seed: 0,
            fresh_model: &fresh,
            spec: ModelSpec {
                name: ModelName::Lenet300,
                input: (1, 28, 28),
                classes: 10,
                width: 1.0,
            },
        },
    )?;

    let mut opt = Sgd::new(SgdConfig {
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 5e-4,
        ..Default::default()
    });
    let epochs = 2;
    let steps_per_epoch = all.len().div_ceil(64);
    let mut step = 0;
    for epoch in 0..epochs {
        for batch in batches::<f32>(&data.train, &epoch_order(&all, 0, epoch), 64, &norm) {
            let info = StepInfo {
                epoch,
                step,
                steps_per_epoch,
                total_steps: epochs * steps_per_epoch,
            };
            let tape = Tape::new();
            let mut loss = model
                .forward(tape.constant(batch.images))
                .cross_entropy(&batch.labels, 0.0);
            if let Some(penalty) = method.regulariser(&model, &tape, &info) {
                loss = loss + penalty;
            }
            let mut grads = loss.backward();
            method.after_backward(&mut model, &mut grads, &info)?;
            // The optimiser step keeps masked weights and their momentum at exactly zero.
            optim::step(&mut opt, &mut model, &grads);
            method.after_step(&mut model, &info)?;
            step += 1;
        }
        method.after_epoch(&mut model, epoch)?;
    }
    method.finish(&mut model)?;

    let test: Vec<usize> = (0..data.test.len()).collect();
    let right: usize = batches::<f32>(&data.test, &test, 500, &norm)
        .map(|b| {
            let tape = Tape::new();
            let _no_grad = tape.no_grad();
            correct(&model.forward(tape.constant(b.images)).value(), &b.labels)
        })
        .sum();
    println!(
        "{}: test_accuracy={:.4} sparsity={:.4}",
        method.name(),
        right as f64 / test.len() as f64,
        sparsity_report(&model).overall_sparsity
    );
    Ok(())
}
