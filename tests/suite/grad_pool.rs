//! Pooling ops (`src/ops/pool.rs`): forward against naive reference loops, property-based
//! gradient checks (f64, random shapes, kernels, strides and paddings), the max-pool tie and
//! padding conventions, and bit-identical results for every thread count.

use ndarray::{ArrayD, IxDyn, array};
use proptest::prelude::*;
use sparsegrad::check::strategies::tensor;
use sparsegrad::check::{CheckOptions, gradcheck};
use sparsegrad::nn::{AvgPool2d, GlobalAvgPool2d, MaxPool2d, Module, PoolWindow};
use sparsegrad::tape::{Tape, Tensor, Var};

/// The proptest budget (CI has 2 cores for the whole suite).
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 24,
        ..ProptestConfig::default()
    }
}

/// Panics with the checker's report (naming the worst element) unless the gradient matches.
fn assert_grad(f: impl for<'t> Fn(&[Var<'t, f64>]) -> Var<'t, f64>, inputs: &[Tensor<f64>]) {
    let report = gradcheck(f, inputs, &CheckOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    assert!(report.compared > 0, "gradcheck compared nothing");
}

fn forward(f: impl for<'t> Fn(Var<'t, f64>) -> Var<'t, f64>, x: &Tensor<f64>) -> Tensor<f64> {
    let tape = Tape::<f64>::new();
    (*f(tape.leaf(x.clone())).value()).clone()
}

fn assert_close(actual: &Tensor<f64>, expected: &Tensor<f64>) {
    assert_eq!(actual.shape(), expected.shape(), "shapes differ");
    for (a, e) in actual.iter().zip(expected) {
        assert!(
            (a - e).abs() <= 1e-12 * (1.0 + e.abs()),
            "{a} differs from {e}\nactual {actual}\nexpected {expected}"
        );
    }
}

/// Pooling geometry: kernel, stride, padding (at most half the kernel) and an input shape
/// at least as large as the kernel after padding.
#[derive(Clone, Debug)]
struct Geometry {
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    shape: Vec<usize>,
}

fn geometry() -> impl Strategy<Value = Geometry> {
    let axis = (1usize..=3, 1usize..=3).prop_flat_map(|(k, s)| {
        (Just(k), Just(s), 0..=k / 2).prop_flat_map(|(k, s, p)| {
            let min = (k - 2 * p).max(1);
            (Just(k), Just(s), Just(p), min..=min + 4)
        })
    });
    (1usize..=2, 1usize..=2, axis.clone(), axis).prop_map(
        |(n, c, (kh, sh, ph, h), (kw, sw, pw, w))| Geometry {
            kernel: [kh, kw],
            stride: [sh, sw],
            padding: [ph, pw],
            shape: vec![n, c, h, w],
        },
    )
}

/// A tensor whose values are pairwise at least 0.05 apart (a shuffled grid of spacing 0.1 plus
/// noise below 0.05), so no window has a tie and central differences never swap an arg-max.
fn distinct(shape: Vec<usize>) -> impl Strategy<Value = Tensor<f64>> {
    let n: usize = shape.iter().product();
    (
        Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
        proptest::collection::vec(0.0..0.05, n),
    )
        .prop_map(move |(order, noise)| {
            let v = order
                .iter()
                .zip(noise)
                .map(|(&k, e)| 0.1 * k as f64 - 0.05 * n as f64 + e)
                .collect();
            ArrayD::from_shape_vec(IxDyn(&shape), v).expect("size")
        })
}

/// Naive pooling: every window read element by element with explicit padding (`pad_value`),
/// combined by `reduce`.
fn reference_pool(
    x: &Tensor<f64>,
    g: &Geometry,
    pad_value: f64,
    reduce: impl Fn(&[f64]) -> f64,
) -> Tensor<f64> {
    let (n, c, h, w) = (g.shape[0], g.shape[1], g.shape[2], g.shape[3]);
    let [kh, kw] = g.kernel;
    let ho = (h + 2 * g.padding[0] - kh) / g.stride[0] + 1;
    let wo = (w + 2 * g.padding[1] - kw) / g.stride[1] + 1;
    Tensor::from_shape_fn(IxDyn(&[n, c, ho, wo]), |idx| {
        let mut window = Vec::new();
        for r in 0..kh {
            for q in 0..kw {
                let row = (idx[2] * g.stride[0] + r) as i64 - g.padding[0] as i64;
                let col = (idx[3] * g.stride[1] + q) as i64 - g.padding[1] as i64;
                let inside = (0..h as i64).contains(&row) && (0..w as i64).contains(&col);
                window.push(if inside {
                    x[[idx[0], idx[1], row as usize, col as usize]]
                } else {
                    pad_value
                });
            }
        }
        reduce(&window)
    })
}

fn with_values(
    values: impl Fn(Vec<usize>) -> BoxedStrategy<Tensor<f64>>,
) -> impl Strategy<Value = (Geometry, Tensor<f64>)> {
    geometry().prop_flat_map(move |g| {
        let shape = g.shape.clone();
        (Just(g), values(shape))
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn grad_max_pool2d((g, x) in with_values(|s| distinct(s).boxed())) {
        let expected = reference_pool(&x, &g, f64::NEG_INFINITY, |w| {
            w.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        });
        assert_close(&forward(|v| v.max_pool2d(g.kernel, g.stride, g.padding), &x), &expected);
        assert_grad(|v| v[0].max_pool2d(g.kernel, g.stride, g.padding), &[x]);
    }

    #[test]
    fn grad_avg_pool2d((g, x) in with_values(|s| tensor(s, -2.0, 2.0).boxed())) {
        // count_include_pad=True: zeros in, divisor kH * kW.
        let area = (g.kernel[0] * g.kernel[1]) as f64;
        let expected = reference_pool(&x, &g, 0.0, |w| w.iter().sum::<f64>() / area);
        assert_close(&forward(|v| v.avg_pool2d(g.kernel, g.stride, g.padding), &x), &expected);
        assert_grad(|v| v[0].avg_pool2d(g.kernel, g.stride, g.padding), &[x]);
    }

    #[test]
    fn grad_global_avg_pool2d(
        x in (1usize..=3, 1usize..=3, 1usize..=4, 1usize..=4)
            .prop_flat_map(|(n, c, h, w)| tensor(vec![n, c, h, w], -2.0, 2.0))
    ) {
        let s = x.shape().to_vec();
        let expected = Tensor::from_shape_fn(IxDyn(&s[..2]), |i| {
            let mut sum = 0.0;
            for r in 0..s[2] {
                for q in 0..s[3] {
                    sum += x[[i[0], i[1], r, q]];
                }
            }
            sum / (s[2] * s[3]) as f64
        });
        assert_close(&forward(|v| v.global_avg_pool2d(), &x), &expected);
        assert_grad(|v| v[0].global_avg_pool2d(), &[x]);
    }
}

fn grad_of_sum(x: Tensor<f64>, f: impl for<'t> Fn(Var<'t, f64>) -> Var<'t, f64>) -> Tensor<f64> {
    let tape = Tape::<f64>::new();
    let v = tape.leaf(x);
    let grads = f(v).sum().backward();
    grads.wrt(v).expect("gradient").clone()
}

fn plane(rows: Vec<Vec<f64>>) -> Tensor<f64> {
    let (h, w) = (rows.len(), rows[0].len());
    let flat = rows.into_iter().flatten().collect();
    ArrayD::from_shape_vec(IxDyn(&[1, 1, h, w]), flat).expect("rectangular")
}

/// Convention: on ties the first maximal element in window scan order (row by row, left to
/// right) receives the gradient.
#[test]
fn max_pool2d_ties_send_the_gradient_to_the_first_maximum_in_scan_order() {
    // One 2x2 window tied between (0, 1) and (1, 0): (0, 1) comes first in row-major scan.
    let dx = grad_of_sum(plane(vec![vec![0.0, 5.0], vec![5.0, 1.0]]), |v| {
        v.max_pool2d([2, 2], [2, 2], [0, 0])
    });
    assert_eq!(dx, plane(vec![vec![0.0, 1.0], vec![0.0, 0.0]]));

    // A constant plane, 2x2 windows with stride 1: each window's top-left element wins, and
    // overlapping windows accumulate on shared winners.
    let dx = grad_of_sum(plane(vec![vec![3.0; 3]; 3]), |v| {
        v.max_pool2d([2, 2], [1, 1], [0, 0])
    });
    assert_eq!(
        dx,
        plane(vec![
            vec![1.0, 1.0, 0.0],
            vec![1.0, 1.0, 0.0],
            vec![0.0, 0.0, 0.0]
        ])
    );
}

/// Convention: a NaN propagates as in PyTorch's CPU kernel (which takes every element with
/// `val > max || isnan(val)`): the LAST NaN of a window in scan order is its output (bit for bit)
/// and gets the gradient; a window of -inf values sends the gradient to its first element.
#[test]
fn max_pool2d_propagates_the_last_nan_and_handles_minus_infinity() {
    // Two NaNs with different payloads in one window, so the output tells which one won.
    let first = f64::from_bits(0x7ff8_0000_0000_0001);
    let last = f64::from_bits(0x7ff8_0000_0000_0002);
    let x = plane(vec![vec![1.0, first, 7.0, 2.0], vec![last, 5.0, 3.0, 4.0]]);
    let y = forward(|v| v.max_pool2d([2, 2], [2, 2], [0, 0]), &x);
    assert_eq!(y[[0, 0, 0, 0]].to_bits(), last.to_bits());
    assert_eq!(y[[0, 0, 0, 1]], 7.0);
    let dx = grad_of_sum(x, |v| v.max_pool2d([2, 2], [2, 2], [0, 0]));
    assert_eq!(
        dx,
        plane(vec![vec![0.0, 0.0, 1.0, 0.0], vec![1.0, 0.0, 0.0, 0.0]])
    );

    let x = plane(vec![vec![f64::NEG_INFINITY; 2]; 2]);
    let dx = grad_of_sum(x, |v| v.max_pool2d([2, 2], [2, 2], [0, 0]));
    assert_eq!(dx, plane(vec![vec![1.0, 0.0], vec![0.0, 0.0]]));
}

/// Convention: max pooling pads with -inf, so padding never wins (even over negative values),
/// while average pooling pads with zeros that count in the divisor.
#[test]
fn padding_is_minus_infinity_for_max_and_counted_zeros_for_avg() {
    let x = plane(vec![vec![-1.0, -2.0], vec![-3.0, -4.0]]);
    let y = forward(|v| v.max_pool2d([2, 2], [1, 1], [1, 1]), &x);
    assert_eq!(
        y,
        plane(vec![
            vec![-1.0, -1.0, -2.0],
            vec![-1.0, -1.0, -2.0],
            vec![-3.0, -3.0, -4.0]
        ])
    );
    let dx = grad_of_sum(x.clone(), |v| v.max_pool2d([2, 2], [1, 1], [1, 1]));
    assert_eq!(dx, plane(vec![vec![4.0, 2.0], vec![2.0, 1.0]]));

    let y = forward(|v| v.avg_pool2d([2, 2], [2, 2], [1, 1]), &x);
    assert_eq!(y, plane(vec![vec![-0.25, -0.5], vec![-0.75, -1.0]]));
}

/// PyTorch's `max_pool2d(x, 2)` output shape for odd sizes drops the last row/column.
#[test]
fn output_shapes_follow_pytorch_floor_mode() {
    let x = Tensor::<f64>::zeros(IxDyn(&[2, 3, 7, 5]));
    assert_eq!(
        forward(|v| v.max_pool2d([2, 2], [2, 2], [0, 0]), &x).shape(),
        &[2, 3, 3, 2]
    );
    assert_eq!(
        forward(|v| v.avg_pool2d([3, 3], [2, 2], [1, 1]), &x).shape(),
        &[2, 3, 4, 3]
    );
    assert_eq!(forward(|v| v.global_avg_pool2d(), &x).shape(), &[2, 3]);
}

#[test]
#[should_panic(expected = "exceeds half the kernel")]
fn padding_larger_than_half_the_kernel_is_rejected() {
    let x = Tensor::<f64>::zeros(IxDyn(&[1, 1, 4, 4]));
    forward(|v| v.max_pool2d([2, 2], [1, 1], [2, 2]), &x);
}

/// Values and gradients of a pooled value large enough to run in parallel, on a pool of `threads`.
fn pooled_on(threads: usize, x: &Tensor<f32>) -> Vec<Tensor<f32>> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    pool.install(|| {
        let tape = Tape::<f32>::new();
        let v = tape.leaf(x.clone());
        let max = v.max_pool2d([3, 3], [2, 2], [1, 1]);
        let avg = v.avg_pool2d([3, 3], [2, 2], [1, 1]);
        let (ym, ya) = ((*max.value()).clone(), (*avg.value()).clone());
        let loss = (max.mul(max) + avg.mul(avg)).sum();
        let dx = loss.backward().wrt(v).expect("gradient").clone();
        vec![ym, ya, dx]
    })
}

#[test]
fn pooling_is_bit_identical_for_every_thread_count() {
    let mut rng = sparsegrad::rng::seeded(3);
    let x = Tensor::<f32>::from_shape_simple_fn(IxDyn(&[16, 16, 24, 24]), || {
        sparsegrad::rng::standard_normal(&mut rng) as f32
    });
    assert_eq!(pooled_on(1, &x), pooled_on(2, &x));
    assert_eq!(pooled_on(2, &x), pooled_on(3, &x));
}

#[test]
fn pool_layers_wrap_the_ops_and_hold_no_parameters() {
    let x = plane(vec![vec![1.0, 2.0, 3.0, 4.0]; 4]);
    let tape = Tape::<f64>::new();
    let v = tape.leaf(x.clone());
    let mut max = MaxPool2d(PoolWindow::square(2));
    let mut avg = AvgPool2d(PoolWindow::square(2));
    let y = max.forward(v);
    assert_eq!(*y.value(), plane(vec![vec![2.0, 4.0]; 2]));
    assert_eq!(*avg.forward(v).value(), plane(vec![vec![1.5, 3.5]; 2]));
    assert_eq!(
        *GlobalAvgPool2d.forward(v).value(),
        array![[2.5]].into_dyn()
    );
    assert!(sparsegrad::nn::named_params::<f64, _>(&max).is_empty());
}
