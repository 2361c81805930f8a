//! A model of your own: a small convolutional network written as a `Module`, trained for one
//! epoch on the bundled MNIST-10k, then pruned to 90% by magnitude with the library's masks and
//! evaluated on the sparse kernels. `docs/extending.md` walks through it.
//!
//! cargo run --release --example custom_model

use std::path::Path;

use sparsegrad::data::{Normalize, batches, epoch_order, load_mnist_dir};
use sparsegrad::metrics::correct;
use sparsegrad::nn::{SparseKernels, Weight, join, set_sparse_kernels};
use sparsegrad::optim;
use sparsegrad::prelude::*;
use sparsegrad::rng::derived;
use sparsegrad::sparsity::Mask;
use sparsegrad::sparsity::report::sparsity_report;

/// conv(1 -> 8, 5x5) -> relu -> 2x2 max-pool -> fc(8*12*12 -> 10).
struct TinyConv {
    conv: Conv2d<f32>,
    fc: Linear<f32>,
}

impl Module<f32> for TinyConv {
    fn forward<'t>(&mut self, x: Var<'t, f32>) -> Var<'t, f32> {
        let x = self
            .conv
            .forward(x)
            .relu()
            .max_pool2d([2, 2], [2, 2], [0, 0]);
        self.fc.forward(x.flatten(1))
    }

    // Every parameter, named as PyTorch's state_dict would name it: checkpoints and exports
    // use these names.
    fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(&str, &'a Param<f32>)) {
        self.conv.visit(&join(prefix, "conv"), f);
        self.fc.visit(&join(prefix, "fc"), f);
    }

    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<f32>)) {
        self.conv.visit_mut(&join(prefix, "conv"), f);
        self.fc.visit_mut(&join(prefix, "fc"), f);
    }

    // The weights sparsification methods may reparameterise (masks, thresholds, gates).
    fn visit_weights_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Weight<f32>)) {
        self.conv.visit_weights_mut(&join(prefix, "conv"), f);
        self.fc.visit_weights_mut(&join(prefix, "fc"), f);
    }

    fn visit_weights<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(&str, &'a Weight<f32>)) {
        self.conv.visit_weights(&join(prefix, "conv"), f);
        self.fc.visit_weights(&join(prefix, "fc"), f);
    }
}

fn accuracy(model: &mut TinyConv, data: &sparsegrad::data::Dataset, norm: &Normalize) -> f64 {
    let order: Vec<usize> = (0..data.len()).collect();
    let right: usize = batches::<f32>(data, &order, 500, norm)
        .map(|batch| {
            let tape = Tape::new();
            let _no_grad = tape.no_grad();
            let logits = model.forward(tape.constant(batch.images));
            correct(&logits.value(), &batch.labels)
        })
        .sum();
    right as f64 / data.len() as f64
}

fn main() -> Result<()> {
    let data = load_mnist_dir(Path::new("data/mnist-10k"))?;
    let norm = Normalize::fit(&data.train);
    let rng = &mut derived(0, 1);
    let mut model = TinyConv {
        conv: Conv2d::new(1, 8, [5, 5], Conv2dConfig::default(), true, rng),
        fc: Linear::new(8 * 12 * 12, 10, true, rng),
    };
    let mut opt = Sgd::new(SgdConfig {
        lr: 0.05,
        momentum: 0.9,
        ..Default::default()
    });
    let all: Vec<usize> = (0..data.train.len()).collect();
    for batch in batches::<f32>(&data.train, &epoch_order(&all, 0, 0), 64, &norm) {
        let tape = Tape::new();
        let loss = model
            .forward(tape.constant(batch.images))
            .cross_entropy(&batch.labels, 0.0);
        let grads = loss.backward();
        optim::step(&mut opt, &mut model, &grads);
    }
    println!(
        "dense: test_accuracy={:.4}",
        accuracy(&mut model, &data.test, &norm)
    );

    // Prune each weight to 90% by magnitude with a fixed mask, and run masked layers on the
    // sparse kernels where the calibrated rule says they are faster.
    model.visit_weights_mut("", &mut |_, w| {
        let mask = Mask::for_sparsity(&w.effective(), 0.9).expect("0.9 is a valid sparsity");
        w.transform = Some(Box::new(mask));
    });
    set_sparse_kernels(&mut model, SparseKernels::Auto);
    let report = sparsity_report(&model);
    println!(
        "90% magnitude-pruned: test_accuracy={:.4} sparsity={:.4} (no fine-tuning)",
        accuracy(&mut model, &data.test, &norm),
        report.overall_sparsity
    );
    Ok(())
}
