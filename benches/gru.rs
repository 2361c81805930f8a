//! Recurrent cells unrolled over 28 steps (input 32, hidden 128, batch 128, f32): forward only
//! (under `no_grad`) and forward + backward of `sum(all states)`, as a PyTorch `GRUCell` loop
//! timed on the same cores would (compare per step).
//!
//! - `gru/{fwd, fwd_bwd}`: [`GruCell`] through `unroll_sequence`.
//! - `gru/gemm_floor_fwd_bwd`: baseline in the same run, only the GEMMs a GRU step needs
//!   (forward x W_ih^T, h W_hh^T; backward dx, dW_ih, dh, dW_hh) on preallocated buffers, 28 times:
//!   the cost the composition of ops adds on top is the difference.
//! - `fastgrnn/{fwd, fwd_bwd}` and `fastgrnn_low_rank16/fwd_bwd`: [`FastGrnnCell`], same shapes.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group};
use ndarray::{Array2, IxDyn};
use sparsegrad::kernels::gemm::gemm;
use sparsegrad::nn::{FastGrnnCell, FastGrnnConfig, GruCell, RecurrentCell, unroll_sequence};
use sparsegrad::rng::{seeded, standard_normal};
use sparsegrad::tape::{Tape, Tensor};

mod common;

const STEPS: usize = 28;
const INPUT: usize = 32;
const HIDDEN: usize = 128;
const BATCH: usize = 128;

fn sequence() -> Arc<Tensor<f32>> {
    let mut rng = seeded(1);
    Arc::new(Tensor::from_shape_simple_fn(
        IxDyn(&[STEPS, BATCH, INPUT]),
        || standard_normal(&mut rng) as f32,
    ))
}

/// Forward-only and forward+backward benches of one cell under `group`.
fn bench_cell<C: RecurrentCell<f32>>(c: &mut Criterion, group: &str, cell: &C, forward_only: bool) {
    let xs = sequence();
    let mut group = c.benchmark_group(group);
    if forward_only {
        group.bench_function("fwd", |bench| {
            bench.iter(|| {
                let tape = Tape::<f32>::new();
                let _no_grad = tape.no_grad();
                let run = unroll_sequence(cell, tape.constant_shared(xs.clone()), None);
                black_box(run.last.value());
            })
        });
    }
    group.bench_function("fwd_bwd", |bench| {
        bench.iter(|| {
            let tape = Tape::<f32>::new();
            let run = unroll_sequence(cell, tape.constant_shared(xs.clone()), None);
            black_box(run.stacked().sum().backward());
        })
    });
    group.finish();
}

fn gru(c: &mut Criterion) {
    let cell = GruCell::<f32>::new(INPUT, HIDDEN, true, &mut seeded(0));
    bench_cell(c, "gru", &cell, true);

    let matrix = |r: usize, k: usize| Array2::<f32>::from_elem((r, k), 0.01);
    let (w_ih, w_hh) = (matrix(3 * HIDDEN, INPUT), matrix(3 * HIDDEN, HIDDEN));
    let (x, h) = (matrix(BATCH, INPUT), matrix(BATCH, HIDDEN));
    let (mut gi, mut gh) = (matrix(BATCH, 3 * HIDDEN), matrix(BATCH, 3 * HIDDEN));
    let (mut dx, mut dh) = (matrix(BATCH, INPUT), matrix(BATCH, HIDDEN));
    let (mut dw_ih, mut dw_hh) = (w_ih.clone(), w_hh.clone());
    c.benchmark_group("gru")
        .bench_function("gemm_floor_fwd_bwd", |bench| {
            bench.iter(|| {
                for _ in 0..STEPS {
                    gemm(1.0, x.view(), w_ih.t(), 0.0, gi.view_mut());
                    gemm(1.0, h.view(), w_hh.t(), 0.0, gh.view_mut());
                }
                for _ in 0..STEPS {
                    gemm(1.0, gi.view(), w_ih.view(), 0.0, dx.view_mut());
                    gemm(1.0, gi.t(), x.view(), 1.0, dw_ih.view_mut());
                    gemm(1.0, gh.view(), w_hh.view(), 0.0, dh.view_mut());
                    gemm(1.0, gh.t(), h.view(), 1.0, dw_hh.view_mut());
                }
                black_box((&dx, &dh, &dw_ih, &dw_hh));
            })
        });
}

fn fastgrnn(c: &mut Criterion) {
    let full = FastGrnnCell::<f32>::new(&FastGrnnConfig::new(INPUT, HIDDEN), &mut seeded(0))
        .expect("valid sizes");
    bench_cell(c, "fastgrnn", &full, true);
    let config = FastGrnnConfig::new(INPUT, HIDDEN).low_rank(16, 16);
    let low = FastGrnnCell::<f32>::new(&config, &mut seeded(0)).expect("valid ranks");
    bench_cell(c, "fastgrnn_low_rank16", &low, false);
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! { name = benches; config = config(); targets = gru, fastgrnn }
fn main() {
    common::main(benches);
}
