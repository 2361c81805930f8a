//! L0 regularisation (Louizos et al., ICLR 2018) on LeNet-300-100: hard-concrete gates on every
//! input neuron, the expected-L0 penalty lambda = 0.1/N, Adam as in the authors' code, gates
//! baked at the end. Prints the structured result as the paper reports it: input neurons kept
//! per layer ("fc1-fc2-fc3"), and the weight sparsity of the export.
//!
//! cargo run --release --example l0_mnist      (about 10 s on 2 cores)
//! The same from the command line:
//!   sparsegrad train --method l0 --optimizer adam --lr 0.001 --weight-decay 0 \
//!     --l0-drop-rate 0.2,0.5,0.5

use sparsegrad::error::Result;
use sparsegrad::optim::OptimizerKind;
use sparsegrad::train::{Outcome, Progress, RunOptions, TrainConfig, train};

fn main() -> Result<()> {
    sparsegrad::alloc::tune_allocator();
    let mut config = TrainConfig {
        method: "l0".parse()?,
        optimizer: OptimizerKind::Adam,
        lr: 1e-3,
        weight_decay: 0.0,
        out: Some(std::env::temp_dir().join("sparsegrad-l0-example")),
        ..TrainConfig::default()
    };
    // The paper's MLP starts the input gates at drop rate 0.2, the others at 0.5.
    config.sparsity.methods.l0.l0_drop_rate = vec![0.2, 0.5, 0.5];
    let force = RunOptions {
        force: true,
        ..RunOptions::default()
    };
    let Outcome::Finished(s) = train(&config, force, &mut Progress::new(false))? else {
        unreachable!("no early stop was asked for")
    };
    let details = &s.method_details;
    println!(
        "test accuracy {:.2}%, input neurons kept {} (of 784-300-100), weight sparsity {:.2}%",
        100.0 * s.test_accuracy,
        details["architecture"].as_str().unwrap_or("?"),
        100.0 * s.overall_sparsity
    );
    Ok(())
}
