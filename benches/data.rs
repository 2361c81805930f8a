//! Data pipeline benchmarks: turning one CIFAR-sized batch (128 images, 3x32x32 bytes) into a
//! normalised f32 tensor.
//!
//! - `batch/gather`: evaluation batch (normalisation only).
//! - `batch/gather_augmented`: training batch (pad-4 random crop + flip, then normalisation).
//! - `batch/cast_baseline`: the same bytes only cast to f32 (the least any conversion must do).

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group};
use ndarray::Array4;
use sparsegrad::data::{Augment, Dataset, Normalize, gather, gather_augmented};

mod common;

const BATCH: usize = 128;

fn batch(c: &mut Criterion) {
    let n = 1024;
    let images = Array4::from_shape_fn((n, 3, 32, 32), |(i, ch, y, x)| {
        (i * 31 + ch * 7 + y * 3 + x) as u8
    });
    let labels = (0..n).map(|i| (i % 10) as u8).collect();
    let data = Dataset::new(images, labels, 10, Path::new("synthetic")).unwrap();
    let norm = Normalize::cifar10();
    let augment = Augment::cifar(0);
    let indices: Vec<usize> = (0..BATCH).map(|k| k * 7 % n).collect();

    let mut group = c.benchmark_group("batch");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("gather", |b| {
        b.iter(|| black_box(gather::<f32>(&data, &indices, &norm)))
    });
    group.bench_function("gather_augmented", |b| {
        b.iter(|| {
            black_box(gather_augmented::<f32>(
                &data,
                &indices,
                &norm,
                Some(&augment),
                1,
            ))
        })
    });
    group.bench_function("cast_baseline", |b| {
        b.iter(|| {
            let out: Vec<_> = indices
                .iter()
                .map(|&i| {
                    data.images
                        .index_axis(ndarray::Axis(0), i)
                        .mapv(|p| p as f32)
                })
                .collect();
            black_box(out)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = batch
}
fn main() {
    common::main(benches);
}
