//! One full training step at batch 128: forward, cross-entropy, backward, and an SGD update
//! (lr 0.1, momentum 0.9, weight decay 5e-4) through `optim::step`, for LeNet-300-100,
//! LeNet-5-Caffe and ResNet-20. To race PyTorch, time the same steps there (same batch, model and
//! optimiser, `torch.set_num_threads` equal to `RAYON_NUM_THREADS`) in the same sitting and compare
//! medians.
//!
//! Variants (the peer's `reparam`):
//! - `dense`: plain weights;
//! - `str`: STR's soft threshold on every weight (`SoftThreshold`, one s per layer, s = -3.2 as
//!   in the peer), so every step also differentiates through the threshold;
//! - `mask`: a fixed random mask keeping 10% of every weight (`Mask`; the optimiser driver also
//!   masks gradients and momentum, which the peer does not);
//! - `mask95`: the same with 5% kept, on the dense masked path (`--sparse-kernels off`);
//! - `sparse95`: that 95%-sparse model with `--sparse-kernels auto` (the default: the layers the
//!   calibrated rule picks run sparse, the small ones dense), the step
//!   `train` takes once a mask is fixed (`docs/sparse.md`); compare with `dense` and the peer.
//!
//! The peer's LeNet-5-Caffe has a relu after each convolution, so the bench uses that variant
//! (`LeNet5Options { relu_after_conv: true }`). Inputs are N(0, 1) images, labels uniform.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group};

mod common;
mod train_setup;

use train_setup::{BATCH, MODELS, TrainStep};

const VARIANTS: [&str; 5] = ["dense", "str", "mask", "mask95", "sparse95"];

fn bench_train_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("train_step");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(BATCH as u64));
    for name in MODELS {
        for variant in VARIANTS {
            let mut step = TrainStep::new(name, variant);
            group.bench_function(format!("{name}.{variant}"), |b| b.iter(|| step.run()));
        }
    }
    group.finish();
}

criterion_group!(benches, bench_train_step);
fn main() {
    common::main(benches);
}
