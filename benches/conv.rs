//! conv2d forward and forward+backward (f32, batch 128) at the LeNet-5-Caffe and ResNet-20 (CIFAR)
//! layer shapes, each next to two baselines measured in the same run, plain GEMMs (through
//! `kernels::gemm`, both threads) with the forward pass's FLOPs:
//! - `gemm`: the forward pass's own im2col GEMM in one call, `[C_out, Cin*kh*kw] x [Cin*kh*kw, N*OH*OW]`
//!   (thin when C_out is small, and its right operand streams from memory);
//! - `gemm_256`: a well-shaped `[256, 256] x [256, round(MACs / 256^2)]` product (exact for all
//!   shapes but LeNet conv1, which is 0.1% over).
//!
//! Ratios to quote: `fwd / gemm`, and `fwd_bwd / (k * gemm)` where k = 3 for layers that also
//! compute the input gradient and k = 2 for first layers (input is data, `needs[0]` is false).
//!
//! `cargo bench --bench conv` (about a minute on 2 cores).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group};
use ndarray::{Array2, ArrayD, IxDyn};
use sparsegrad::kernels::gemm::gemm;
use sparsegrad::ops::conv::Conv2dConfig;
use sparsegrad::param::Param;
use sparsegrad::rng::{seeded, uniform};
use sparsegrad::tape::{Tape, Var};

mod common;

const BATCH: usize = 128;

struct Shape {
    name: &'static str,
    c_in: usize,
    c_out: usize,
    hw: usize,
    kernel: usize,
    padding: usize,
    bias: bool,
    /// A first layer: its input is data, so no input gradient is computed.
    first: bool,
}

const SHAPES: &[Shape] = &[
    Shape {
        name: "lenet5_conv1_1x20_k5_28",
        c_in: 1,
        c_out: 20,
        hw: 28,
        kernel: 5,
        padding: 0,
        bias: true,
        first: true,
    },
    Shape {
        name: "lenet5_conv2_20x50_k5_12",
        c_in: 20,
        c_out: 50,
        hw: 12,
        kernel: 5,
        padding: 0,
        bias: true,
        first: false,
    },
    Shape {
        name: "resnet20_conv1_3x16_k3_32",
        c_in: 3,
        c_out: 16,
        hw: 32,
        kernel: 3,
        padding: 1,
        bias: false,
        first: true,
    },
    Shape {
        name: "resnet20_16x16_k3_32",
        c_in: 16,
        c_out: 16,
        hw: 32,
        kernel: 3,
        padding: 1,
        bias: false,
        first: false,
    },
    Shape {
        name: "resnet20_32x32_k3_16",
        c_in: 32,
        c_out: 32,
        hw: 16,
        kernel: 3,
        padding: 1,
        bias: false,
        first: false,
    },
    Shape {
        name: "resnet20_64x64_k3_8",
        c_in: 64,
        c_out: 64,
        hw: 8,
        kernel: 3,
        padding: 1,
        bias: false,
        first: false,
    },
];

struct Inputs {
    /// The input of a first layer (a constant sharing this buffer).
    x_data: Arc<ArrayD<f32>>,
    /// The same input as a leaf that needs a gradient (other layers).
    x: Param<f32>,
    w: Param<f32>,
    b: Param<f32>,
}

impl Inputs {
    fn forward<'t>(&self, tape: &'t Tape<f32>, s: &Shape, cfg: &Conv2dConfig) -> Var<'t, f32> {
        let x = if s.first {
            tape.constant_shared(self.x_data.clone())
        } else {
            tape.param(&self.x)
        };
        let bias = s.bias.then(|| tape.param(&self.b));
        x.conv2d(tape.param(&self.w), bias, cfg)
    }
}

fn random(shape: &[usize], seed: u64) -> ArrayD<f32> {
    let mut rng = seeded(seed);
    ArrayD::from_shape_simple_fn(IxDyn(shape), || uniform(&mut rng, -1.0, 1.0) as f32)
}

fn bench_conv(c: &mut Criterion) {
    let mut group = c.benchmark_group("conv2d");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for s in SHAPES {
        let cfg = Conv2dConfig {
            padding: [s.padding; 2],
            ..Conv2dConfig::default()
        };
        let out = s.hw + 2 * s.padding - s.kernel + 1;
        // Params share their buffers with the tape, so no input copy is timed.
        let x_data = Arc::new(random(&[BATCH, s.c_in, s.hw, s.hw], 1));
        let x = Param::new((*x_data).clone());
        let w = Param::new(random(&[s.c_out, s.c_in, s.kernel, s.kernel], 2));
        let b = Param::new(random(&[s.c_out], 3));
        let seed = random(&[BATCH, s.c_out, out, out], 4);

        let inputs = Inputs { x_data, x, w, b };
        let forward = |tape: &Tape<f32>| {
            black_box(inputs.forward(tape, s, &cfg).value());
        };
        group.bench_function(format!("{}/fwd", s.name), |bench| {
            bench.iter(|| {
                let tape = Tape::<f32>::new();
                forward(&tape);
            })
        });
        group.bench_function(format!("{}/fwd_bwd", s.name), |bench| {
            bench.iter_batched(
                || seed.clone(),
                |seed| {
                    let tape = Tape::<f32>::new();
                    black_box(inputs.forward(&tape, s, &cfg).backward_with(seed))
                },
                BatchSize::LargeInput,
            )
        });

        // Baseline: the forward pass's GEMM on its own, [C_out, K] x [K, N*OH*OW].
        let k = s.c_in * s.kernel * s.kernel;
        let a = Array2::from_shape_fn((s.c_out, k), |(i, j)| ((i * 7 + j) % 13) as f32 * 0.1);
        let bm =
            Array2::from_shape_fn((k, BATCH * out * out), |(i, j)| ((i + j) % 11) as f32 * 0.1);
        let mut cm = Array2::<f32>::zeros((s.c_out, BATCH * out * out));
        group.bench_function(format!("{}/gemm", s.name), |bench| {
            bench.iter(|| gemm(1.0, a.view(), bm.view(), 0.0, cm.view_mut()))
        });

        // Baseline: the same multiply-adds as a well-shaped product.
        let macs = s.c_out * k * BATCH * out * out;
        let n = (macs as f64 / 65536.0).round() as usize;
        let a = Array2::from_shape_fn((256, 256), |(i, j)| ((i * 7 + j) % 13) as f32 * 0.1);
        let bm = Array2::from_shape_fn((256, n), |(i, j)| ((i + j) % 11) as f32 * 0.1);
        let mut cm = Array2::<f32>::zeros((256, n));
        group.bench_function(format!("{}/gemm_256", s.name), |bench| {
            bench.iter(|| gemm(1.0, a.view(), bm.view(), 0.0, cm.view_mut()))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_conv);
fn main() {
    common::main(benches);
}
