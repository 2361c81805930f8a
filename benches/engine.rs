//! Engine benchmarks: tape overhead on tiny ops, and matmul throughput.
//!
//! - `tape/chain_1000_add_fwd_bwd`: 1,000 adds of 4-element values recorded on a tape, then
//!   backward (compare: PyTorch autograd, 5.3 us per op fwd+bwd on these cores); the baseline in
//!   the same run is the same 1,000 adds on plain ndarray arrays (no tape, no backward).
//! - `matmul/{n}`: f32 n x n x n products: the `Var::matmul` op forward, forward+backward, and the
//!   single-threaded `gemm_serial` baseline of the same product.
//! - `gemm/{shape}`: `kernels::gemm` on the peer's GEMM shapes (see [`gemm_shapes`]).
//!
//! Threads: the pool `benches/common` runs on (sized by `RAYON_NUM_THREADS`), so `RAYON_NUM_THREADS=1 cargo bench --bench engine` and `=2`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use ndarray::{Array2, ArrayD, IxDyn};
use sparsegrad::kernels::gemm::{gemm, gemm_serial};
use sparsegrad::prelude::*;

mod common;

fn tape_overhead(c: &mut Criterion) {
    const OPS: usize = 1000;
    let a = ArrayD::<f32>::from_elem(IxDyn(&[4]), 0.5);
    let b = ArrayD::<f32>::from_elem(IxDyn(&[4]), 0.25);
    let mut group = c.benchmark_group("tape");
    group.throughput(Throughput::Elements(OPS as u64));
    group.bench_function("chain_1000_add_fwd_bwd", |bench| {
        bench.iter(|| {
            let tape = Tape::<f32>::new();
            let (x0, y) = (tape.leaf(a.clone()), tape.leaf(b.clone()));
            let mut x = x0;
            for _ in 0..OPS {
                x = x + y;
            }
            black_box(x.sum().backward());
        })
    });
    group.bench_function("chain_1000_add_ndarray_baseline", |bench| {
        bench.iter(|| {
            let mut x = a.clone();
            for _ in 0..OPS {
                x = &x + &b;
            }
            black_box(x)
        })
    });
    group.finish();
}

fn matmul(c: &mut Criterion) {
    let mut group = c.benchmark_group("matmul");
    for n in [256usize, 512, 1024] {
        let a = Array2::<f32>::from_shape_fn((n, n), |(i, j)| {
            ((i * 7 + j * 3) % 11) as f32 * 0.1 - 0.5
        });
        let b =
            Array2::<f32>::from_shape_fn((n, n), |(i, j)| ((i * 5 + j) % 13) as f32 * 0.1 - 0.6);
        group.throughput(Throughput::Elements((2 * n * n * n) as u64));
        group.bench_with_input(
            BenchmarkId::new("gemm_serial_baseline", n),
            &n,
            |bench, _| {
                let mut out = Array2::<f32>::zeros((n, n));
                bench.iter(|| gemm_serial(1.0, a.view(), b.view(), 0.0, out.view_mut()))
            },
        );
        group.bench_with_input(BenchmarkId::new("op_forward", n), &n, |bench, _| {
            bench.iter(|| {
                let tape = Tape::<f32>::new();
                let y = tape
                    .constant(a.clone().into_dyn())
                    .matmul(tape.constant(b.clone().into_dyn()));
                black_box(y.value());
            })
        });
        group.bench_with_input(
            BenchmarkId::new("op_forward_backward", n),
            &n,
            |bench, _| {
                bench.iter(|| {
                    let tape = Tape::<f32>::new();
                    let (x, w) = (
                        tape.leaf(a.clone().into_dyn()),
                        tape.leaf(b.clone().into_dyn()),
                    );
                    black_box(x.matmul(w).sum().backward());
                })
            },
        );
    }
    group.finish();
}

/// `gemm/{name}`: f32 products through `kernels::gemm` (all threads of the pool, so run once with
/// `RAYON_NUM_THREADS=1` and once with 2), with the names, shapes and operand layouts of the
/// PyTorch peer's `torch.mm` timings (`nt` = A times a transposed view of B):
/// square 1024^3, and ResNet-20's im2col forward (`col[M,K] W[N,K]^T`), input-gradient
/// (`dY[M,N] W[N,K]`) and weight-gradient (`dY^T col`, K = batch x positions) products.
fn gemm_shapes(c: &mut Criterion) {
    const BATCH: usize = 128;
    let mut shapes = vec![("sq1024".to_string(), 1024, 1024, 1024, "nn")];
    for (name, cin, cout, hout) in [
        ("resnet20.16to16_32x32", 16, 16, 32),
        ("resnet20.32to32_16x16", 32, 32, 16),
        ("resnet20.64to64_8x8", 64, 64, 8),
    ] {
        let (m, k, n) = (BATCH * hout * hout, cin * 9, cout);
        shapes.push((format!("{name}.fwd"), m, k, n, "nt"));
        shapes.push((format!("{name}.bwd_data"), m, n, k, "nn"));
        shapes.push((format!("{name}.bwd_weight"), n, m, k, "tn"));
    }
    let mut group = c.benchmark_group("gemm");
    for (name, m, k, n, layout) in shapes {
        let fill = |r: usize, c: usize| {
            Array2::<f32>::from_shape_fn((r, c), |(i, j)| ((i * 7 + j * 3) % 11) as f32 * 0.1 - 0.5)
        };
        // Stored as the peer stores them; `t` operands are transposed views.
        let a = if layout.starts_with('t') {
            fill(k, m)
        } else {
            fill(m, k)
        };
        let b = if layout.ends_with('t') {
            fill(n, k)
        } else {
            fill(k, n)
        };
        let mut out = Array2::<f32>::zeros((m, n));
        group.throughput(Throughput::Elements((2 * m * n * k) as u64));
        group.bench_function(name, |bench| {
            let a = if layout.starts_with('t') {
                a.t()
            } else {
                a.view()
            };
            let b = if layout.ends_with('t') {
                b.t()
            } else {
                b.view()
            };
            bench.iter(|| gemm(1.0, a, b, 0.0, out.view_mut()))
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! { name = benches; config = config(); targets = tape_overhead, matmul, gemm_shapes }
fn main() {
    common::main(benches);
}
