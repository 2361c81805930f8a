//! Sparsity-op benchmarks on one large f32 layer (1M weights, the size of a big ResNet-50 conv).
//!
//! - `soft_threshold/fused_fwd_bwd` (the `soft_threshold` op, gradients to w and a per-layer s)
//!   against `composed_fwd_bwd_baseline`: the same operator written as PyTorch STR writes it,
//!   sign(w) * relu(|w| - sigmoid(s)), from elementwise ops.
//! - `sign_mask/fwd_bwd` (gradients to w and t, sigmoid surrogate) against
//!   `constant_mask_fwd_bwd_baseline`: w times a precomputed constant mask.
//! - `sparsity_rate/{kde_paper,histogram_100}_fwd_bwd` against `forward_only_baseline` (the exact
//!   count alone): what the density estimate in the backward pass costs.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group};
use ndarray::{ArrayD, IxDyn};
use sparsegrad::ops::sparsity::{Density, Surrogate, ThresholdFn};
use sparsegrad::prelude::*;
use sparsegrad::rng::{seeded, standard_normal};

mod common;

const N: usize = 1 << 20;

fn weights() -> ArrayD<f32> {
    let mut rng = seeded(0);
    ArrayD::from_shape_simple_fn(IxDyn(&[1024, 1024]), || {
        0.05 * standard_normal(&mut rng) as f32
    })
}

fn scalar(x: f32) -> ArrayD<f32> {
    ArrayD::from_elem(IxDyn(&[]), x)
}

fn soft_threshold(c: &mut Criterion) {
    let w = weights();
    let mut group = c.benchmark_group("soft_threshold");
    group.throughput(Throughput::Elements(N as u64));
    group.bench_function("fused_fwd_bwd", |b| {
        b.iter(|| {
            let tape = Tape::<f32>::new();
            let (wv, s) = (tape.leaf(w.clone()), tape.leaf(scalar(-3.0)));
            black_box(wv.soft_threshold(s, &ThresholdFn::Sigmoid).sum().backward());
        })
    });
    group.bench_function("composed_fwd_bwd_baseline", |b| {
        b.iter(|| {
            let tape = Tape::<f32>::new();
            let (wv, s) = (tape.leaf(w.clone()), tape.leaf(scalar(-3.0)));
            let y = wv.sign() * (wv.abs() - s.sigmoid()).relu();
            black_box(y.sum().backward());
        })
    });
    group.finish();
}

fn sign_mask(c: &mut Criterion) {
    let w = weights();
    let t = 0.03f32;
    let mask = w.mapv(|x| if x.abs() > t { 1.0 } else { 0.0 });
    let mut group = c.benchmark_group("sign_mask");
    group.throughput(Throughput::Elements(N as u64));
    group.bench_function("fwd_bwd", |b| {
        b.iter(|| {
            let tape = Tape::<f32>::new();
            let (wv, tv) = (tape.leaf(w.clone()), tape.leaf(scalar(t)));
            let y = wv.sign_mask(tv, Surrogate::Sigmoid { temperature: 0.01 });
            black_box(y.sum().backward());
        })
    });
    group.bench_function("constant_mask_fwd_bwd_baseline", |b| {
        b.iter(|| {
            let tape = Tape::<f32>::new();
            let wv = tape.leaf(w.clone());
            let y = wv * tape.constant(mask.clone());
            black_box(y.sum().backward());
        })
    });
    group.finish();
}

fn sparsity_rate(c: &mut Criterion) {
    let w = weights();
    let mut group = c.benchmark_group("sparsity_rate");
    group.throughput(Throughput::Elements(N as u64));
    for (name, density) in [
        ("kde_paper_fwd_bwd", Density::paper()),
        ("histogram_100_fwd_bwd", Density::authors_code()),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let tape = Tape::<f32>::new();
                let (wv, tv) = (tape.constant(w.clone()), tape.leaf(scalar(0.03)));
                black_box(wv.sparsity_rate(tv, &density).backward());
            })
        });
    }
    group.bench_function("forward_only_baseline", |b| {
        b.iter(|| {
            let tape = Tape::<f32>::new();
            let _no_grad = tape.no_grad();
            let (wv, tv) = (tape.constant(w.clone()), tape.leaf(scalar(0.03)));
            black_box(wv.sparsity_rate(tv, &Density::paper()).item());
        })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! { name = benches; config = config(); targets = soft_threshold, sign_mask, sparsity_rate }
fn main() {
    common::main(benches);
}
