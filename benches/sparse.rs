//! Sparse kernels against our dense masked path, in one run (f32, batch 128, random masks).
//!
//! - `sparse_layers/{layer}/{t}t/dense_{fwd,fwd_bwd}`: the dense masked op (`matmul_nt(w * m)`,
//!   `conv2d(w * m)`) on 1 or 2 threads (independent of the density);
//!   `sparse_layers/{layer}/{t}t/{sparsity}/{fwd,fwd_bwd}`: `sparse_linear` / `sparse_conv2d` at
//!   80, 90, 95 and 98% sparsity. Layers: LeNet-300 fc1 784->300 and fc2 300->100, LeNet-5-Caffe conv2 20->50 5x5
//!   at 12x12, ResNet-20 3x3 convolutions 16/32/64 channels at 32/16/8 (padding 1). Every layer
//!   but a first one computes its input gradient, so the input is a parameter.
//! - `sparse_inference/{model}/{t}t/{dense,sparse}`: LeNet-300 and LeNet-5 forward (no gradient)
//!   with 95%-sparse masks on every weight, sparse kernels off and `auto` (the default).
//! - `sparse_layout/...`: the measurements behind the kernels' design (1 thread): CSR against
//!   padded constant fan-in (ELL) storage for fc1's forward, and the phase-plane convolution
//!   against a batch-innermost one (SparseProp's layout) for the convolutions' forward.
//!
//! Quote ratios `dense / sparse` from one run. `cargo bench --bench sparse` (a few minutes).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkGroup, Criterion, criterion_group, measurement::WallTime};
use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;
use sparsegrad::kernels::sparse_conv::{SparseConvShape, sparse_conv2d_forward};
use sparsegrad::kernels::sparse_linear::BatchInner;
use sparsegrad::kernels::sparse_micro::{gather_accumulate, round_up_lanes};
use sparsegrad::kernels::sparse_pattern::SparsePattern;
use sparsegrad::kernels::transpose::{transpose_back, transpose_padded};
use sparsegrad::models::{LeNet5, LeNet5Options, LeNet300};
use sparsegrad::nn::{Module, SparseKernels, set_sparse_kernels};
use sparsegrad::ops::conv::Conv2dConfig;
use sparsegrad::param::Param;
use sparsegrad::rng::{Rng, seeded, uniform};
use sparsegrad::sparsity::mask::Mask;
use sparsegrad::tape::{Tape, Var};
use std::sync::Arc;

mod common;

const BATCH: usize = 128;
const SPARSITIES: [f64; 4] = [0.8, 0.9, 0.95, 0.98];

/// A layer: linear `[in] -> [out]` (hw = 0) or a stride-1 convolution.
struct Layer {
    name: &'static str,
    c_in: usize,
    c_out: usize,
    hw: usize,
    kernel: usize,
    padding: usize,
}

const LAYERS: &[Layer] = &[
    Layer {
        name: "lenet300_fc1_784x300",
        c_in: 784,
        c_out: 300,
        hw: 0,
        kernel: 0,
        padding: 0,
    },
    // Small (3.8 M MACs): the evidence for `sparse_select::MIN_DENSE_MACS`.
    Layer {
        name: "lenet300_fc2_300x100",
        c_in: 300,
        c_out: 100,
        hw: 0,
        kernel: 0,
        padding: 0,
    },
    Layer {
        name: "lenet5_conv2_20x50_k5_12",
        c_in: 20,
        c_out: 50,
        hw: 12,
        kernel: 5,
        padding: 0,
    },
    Layer {
        name: "resnet20_16x16_k3_32",
        c_in: 16,
        c_out: 16,
        hw: 32,
        kernel: 3,
        padding: 1,
    },
    Layer {
        name: "resnet20_32x32_k3_16",
        c_in: 32,
        c_out: 32,
        hw: 16,
        kernel: 3,
        padding: 1,
    },
    Layer {
        name: "resnet20_64x64_k3_8",
        c_in: 64,
        c_out: 64,
        hw: 8,
        kernel: 3,
        padding: 1,
    },
];

impl Layer {
    fn conv(&self) -> bool {
        self.hw > 0
    }
    fn x_shape(&self) -> Vec<usize> {
        if self.conv() {
            vec![BATCH, self.c_in, self.hw, self.hw]
        } else {
            vec![BATCH, self.c_in]
        }
    }
    fn w_shape(&self) -> Vec<usize> {
        if self.conv() {
            vec![self.c_out, self.c_in, self.kernel, self.kernel]
        } else {
            vec![self.c_out, self.c_in]
        }
    }
    fn y_shape(&self) -> Vec<usize> {
        let out = self.hw + 2 * self.padding + 1 - self.kernel.max(1);
        if self.conv() {
            vec![BATCH, self.c_out, out, out]
        } else {
            vec![BATCH, self.c_out]
        }
    }
    fn cfg(&self) -> Conv2dConfig {
        Conv2dConfig {
            padding: [self.padding; 2],
            ..Conv2dConfig::default()
        }
    }
    fn sparse_shape(&self) -> SparseConvShape {
        SparseConvShape {
            batch: BATCH,
            in_channels: self.c_in,
            out_channels: self.c_out,
            groups: 1,
            in_hw: [self.hw; 2],
            kernel: [self.kernel; 2],
            stride: [1; 2],
            padding: [self.padding; 2],
            dilation: [1; 2],
        }
    }
}

fn random(shape: &[usize], rng: &mut Rng) -> ArrayD<f32> {
    ArrayD::from_shape_simple_fn(IxDyn(shape), || uniform(rng, -1.0, 1.0) as f32)
}

fn random_mask(shape: &[usize], sparsity: f64, rng: &mut Rng) -> ArrayD<f32> {
    ArrayD::from_shape_simple_fn(IxDyn(shape), || {
        (uniform(rng, 0.0, 1.0) >= sparsity) as u8 as f32
    })
}

fn pattern_of(mask: &ArrayD<f32>) -> Arc<SparsePattern> {
    let rows = mask.shape()[0];
    Arc::new(SparsePattern::from_mask(
        rows,
        mask.len() / rows,
        mask.as_slice().unwrap(),
    ))
}

fn pools() -> Vec<(usize, rayon::ThreadPool)> {
    [1, 2]
        .into_iter()
        .map(|t| {
            (
                t,
                rayon::ThreadPoolBuilder::new()
                    .num_threads(t)
                    .build()
                    .unwrap(),
            )
        })
        .collect()
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
}

/// The dense masked path (with its mask) or the sparse op (with its pattern).
enum Path {
    Dense(Arc<ArrayD<f32>>),
    Sparse(Arc<SparsePattern>),
}

/// The layer's op on `tape` with input, weight and bias parameters.
fn layer_op<'t>(
    tape: &'t Tape<f32>,
    layer: &Layer,
    (x, w, b): (&Param<f32>, &Param<f32>, &Param<f32>),
    path: &Path,
) -> Var<'t, f32> {
    let (xv, wv, bv) = (tape.param(x), tape.param(w), tape.param(b));
    let cfg = layer.cfg();
    match path {
        Path::Dense(mask) => {
            let w_eff = wv * tape.constant_shared(Arc::clone(mask));
            if layer.conv() {
                xv.conv2d(w_eff, Some(bv), &cfg)
            } else {
                xv.matmul_nt(w_eff) + bv
            }
        }
        Path::Sparse(p) if layer.conv() => xv.sparse_conv2d(wv, Some(bv), &cfg, p),
        Path::Sparse(p) => xv.sparse_linear(wv, Some(bv), p),
    }
}

/// Lets a model (not `Send`: its transforms are plain trait objects) run inside
/// `ThreadPool::install`. Sound here: `install` blocks the caller, so only one thread touches the
/// model at a time, and nothing in it is tied to a thread.
struct AssertSend<T>(T);
// SAFETY: see the type's documentation.
unsafe impl<T> Send for AssertSend<T> {}

fn bench_layers(c: &mut Criterion) {
    let mut group = c.benchmark_group("sparse_layers");
    configure(&mut group);
    for layer in LAYERS {
        let mut rng = seeded(1);
        let x = Param::new(random(&layer.x_shape(), &mut rng));
        let w = Param::new(random(&layer.w_shape(), &mut rng));
        let b = Param::new(random(&[layer.c_out], &mut rng));
        let seed = random(&layer.y_shape(), &mut rng);
        let masks: Vec<ArrayD<f32>> = SPARSITIES
            .iter()
            .map(|&s| random_mask(&layer.w_shape(), s, &mut rng))
            .collect();
        for (threads, pool) in pools() {
            let id = |what: &str| format!("{}/{threads}t/{what}", layer.name);
            // Dense masked path (the 95% mask; the density does not change its work).
            let dense = Path::Dense(Arc::new(masks[2].clone()));
            let params = (&x, &w, &b);
            group.bench_function(id("dense_fwd"), |bench| {
                bench.iter(|| {
                    pool.install(|| {
                        black_box(layer_op(&Tape::new(), layer, params, &dense).value())
                    })
                })
            });
            group.bench_function(id("dense_fwd_bwd"), |bench| {
                bench.iter_batched(
                    || seed.clone(),
                    |g| {
                        pool.install(|| {
                            let tape = Tape::new();
                            black_box(layer_op(&tape, layer, params, &dense).backward_with(g))
                        })
                    },
                    BatchSize::LargeInput,
                )
            });
            for (&sparsity, mask) in SPARSITIES.iter().zip(&masks) {
                let sparse = Path::Sparse(pattern_of(mask));
                let pct = (sparsity * 100.0).round();
                group.bench_function(id(&format!("{pct}/fwd")), |bench| {
                    bench.iter(|| {
                        pool.install(|| {
                            black_box(layer_op(&Tape::new(), layer, params, &sparse).value())
                        })
                    })
                });
                group.bench_function(id(&format!("{pct}/fwd_bwd")), |bench| {
                    bench.iter_batched(
                        || seed.clone(),
                        |g| {
                            pool.install(|| {
                                let tape = Tape::new();
                                black_box(layer_op(&tape, layer, params, &sparse).backward_with(g))
                            })
                        },
                        BatchSize::LargeInput,
                    )
                });
            }
        }
    }
    group.finish();
}

/// Masks keeping 5% of every weight of `model`.
fn mask_95<M: Module<f32>>(model: &mut M, rng: &mut Rng) {
    model.visit_weights_mut("", &mut |_, w| {
        let mask = random_mask(w.raw.shape(), 0.95, rng);
        w.transform = Some(Box::new(Mask::from_tensor(mask).unwrap()));
        w.reapply_mask();
    });
}

/// A model, its name and its input batch.
type Workload<'a> = (&'static str, &'a mut dyn Module<f32>, &'a Arc<ArrayD<f32>>);

fn bench_inference(c: &mut Criterion) {
    let mut group = c.benchmark_group("sparse_inference");
    configure(&mut group);
    let mut rng = seeded(2);
    let mut lenet300 = LeNet300::<f32>::new(784, 10, &mut rng);
    mask_95(&mut lenet300, &mut rng);
    let mut lenet5 =
        LeNet5::<f32>::new((1, 28, 28), 10, LeNet5Options::default(), &mut rng).unwrap();
    mask_95(&mut lenet5, &mut rng);
    let x300 = Arc::new(random(&[BATCH, 784], &mut rng));
    let x5 = Arc::new(random(&[BATCH, 1, 28, 28], &mut rng));
    let models: [Workload<'_>; 2] = [
        ("lenet300", &mut lenet300, &x300),
        ("lenet5", &mut lenet5, &x5),
    ];
    for (name, model, x) in models {
        for (threads, pool) in pools() {
            for (mode, label) in [
                (SparseKernels::Off, "dense"),
                (SparseKernels::Auto, "sparse"),
            ] {
                set_sparse_kernels(model, mode);
                let mut cell = AssertSend(&mut *model);
                group.bench_function(format!("{name}/{threads}t/{label}"), |bench| {
                    bench.iter(|| {
                        let cell = &mut cell;
                        pool.install(move || {
                            let tape = Tape::<f32>::new();
                            let _guard = tape.no_grad();
                            let y = cell.0.forward(tape.constant_shared(Arc::clone(x)));
                            black_box(y.value())
                        })
                    })
                });
            }
        }
    }
    group.finish();
}

/// `Y^T` rows from padded constant fan-in lists (`width` entries per row, zero weights padding).
fn ell_forward(
    values: &[f32],
    cols: &[u32],
    width: usize,
    xt: &BatchInner<f32>,
    rows: usize,
) -> Vec<f32> {
    let mut yt = vec![0.0; rows * xt.ld];
    yt.par_chunks_mut(xt.ld).enumerate().for_each(|(o, row)| {
        let k = o * width..(o + 1) * width;
        gather_accumulate(&values[k.clone()], &cols[k], xt.ld, &xt.data, 0, row);
    });
    yt
}

fn csr_forward(p: &SparsePattern, values: &[f32], xt: &BatchInner<f32>) -> Vec<f32> {
    let mut yt = vec![0.0; p.rows() * xt.ld];
    yt.par_chunks_mut(xt.ld).enumerate().for_each(|(o, row)| {
        let k = p.row_range(o);
        gather_accumulate(
            &values[k.clone()],
            &p.col_indices()[k],
            xt.ld,
            &xt.data,
            0,
            row,
        );
    });
    yt
}

/// Stride-1 sparse convolution with the batch innermost (`[C, Hp, Wp, Np]`): transpose in, one
/// 128-lane gather per output pixel and row, transpose out.
fn batch_inner_conv(layer: &Layer, p: &SparsePattern, values: &[f32], x: &[f32]) -> Vec<f32> {
    let (c, hw, pad, k) = (layer.c_in, layer.hw, layer.padding, layer.kernel);
    let (hp, out) = (hw + 2 * pad, hw + 2 * pad + 1 - k);
    let np = round_up_lanes(BATCH);
    let xt = transpose_padded(x, BATCH, c * hw * hw, np);
    let mut padded = vec![0.0f32; c * hp * hp * np];
    for ch in 0..c {
        for h in 0..hw {
            let src = &xt[(ch * hw + h) * hw * np..][..hw * np];
            padded[((ch * hp + h + pad) * hp + pad) * np..][..hw * np].copy_from_slice(src);
        }
    }
    let offsets: Vec<u32> = p
        .col_indices()
        .iter()
        .map(|&col| {
            let (ch, tap) = (col as usize / (k * k), col as usize % (k * k));
            ((ch * hp + tap / k) * hp + tap % k) as u32
        })
        .collect();
    let mut yt = vec![0.0f32; layer.c_out * out * out * np];
    yt.par_chunks_mut(out * out * np)
        .enumerate()
        .for_each(|(o, plane)| {
            let kk = p.row_range(o);
            for (q, pixel) in plane.chunks_exact_mut(np).enumerate() {
                let base = ((q / out) * hp + q % out) * np;
                gather_accumulate(
                    &values[kk.clone()],
                    &offsets[kk.clone()],
                    np,
                    &padded,
                    base,
                    pixel,
                );
            }
        });
    transpose_back(&yt, BATCH, layer.c_out * out * out, np)
}

fn bench_layout(c: &mut Criterion) {
    let mut group = c.benchmark_group("sparse_layout");
    configure(&mut group);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let mut rng = seeded(3);
    let fc1 = &LAYERS[0];
    let x = random(&fc1.x_shape(), &mut rng);
    let xt = BatchInner::from_rows(x.as_slice().unwrap(), BATCH, fc1.c_in);
    for sparsity in [0.9, 0.95] {
        let w = random(&fc1.w_shape(), &mut rng) * random_mask(&fc1.w_shape(), sparsity, &mut rng);
        let p = pattern_of(&w.mapv(|v| (v != 0.0) as u8 as f32));
        let values = p.gather(w.as_slice().unwrap());
        let width = (0..p.rows())
            .map(|r| p.row_range(r).len())
            .max()
            .unwrap_or(0);
        let (mut ell_v, mut ell_c) = (vec![0.0f32; p.rows() * width], vec![0u32; p.rows() * width]);
        for r in 0..p.rows() {
            for (i, k) in p.row_range(r).enumerate() {
                ell_v[r * width + i] = values[k];
                ell_c[r * width + i] = p.col_indices()[k];
            }
        }
        let pct = (sparsity * 100.0).round();
        group.bench_function(format!("fc1_{pct}/csr"), |b| {
            b.iter(|| pool.install(|| black_box(csr_forward(&p, &values, &xt))))
        });
        group.bench_function(format!("fc1_{pct}/ell_width_{width}"), |b| {
            b.iter(|| pool.install(|| black_box(ell_forward(&ell_v, &ell_c, width, &xt, p.rows()))))
        });
    }
    for layer in LAYERS.iter().filter(|l| l.conv()) {
        let x = random(&layer.x_shape(), &mut rng);
        let mask = random_mask(&layer.w_shape(), 0.95, &mut rng);
        let p = pattern_of(&mask);
        let values = p.gather(random(&layer.w_shape(), &mut rng).as_slice().unwrap());
        let shape = layer.sparse_shape();
        let xs = x.as_slice().unwrap();
        group.bench_function(format!("{}_95/phase_planes", layer.name), |b| {
            b.iter(|| {
                pool.install(|| black_box(sparse_conv2d_forward(&shape, &p, &values, xs, None)))
            })
        });
        group.bench_function(format!("{}_95/batch_inner", layer.name), |b| {
            b.iter(|| pool.install(|| black_box(batch_inner_conv(layer, &p, &values, xs))))
        });
        let direct = sparse_conv2d_forward(&shape, &p, &values, xs, None);
        let inner = batch_inner_conv(layer, &p, &values, xs);
        let max_diff = direct
            .iter()
            .zip(&inner)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            max_diff < 1e-4,
            "{}: layouts disagree by {max_diff}",
            layer.name
        );
    }
    group.finish();
}

criterion_group!(benches, bench_layout, bench_layers, bench_inference);
fn main() {
    common::main(benches);
}
