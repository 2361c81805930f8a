//! Batch normalisation and dropout as ops (`src/ops/norm.rs`, `src/ops/dropout.rs`): forward
//! against naive per-channel loops, property-based gradient checks through the batch statistics
//! (f64, 2-D/3-D/4-D, with and without affine), dropout's gradient under a fixed mask, f32
//! statistics and bit-identical results for every thread count. The layers are in
//! `grad_norm_layers.rs`, which shares this file's per-channel references.

use ndarray::IxDyn;
use proptest::prelude::*;
use sparsegrad::check::strategies::tensor;
use sparsegrad::rng::seeded;
use sparsegrad::tape::{Tape, Tensor};

use crate::common::{assert_close_tol, assert_grad, normal, proptest_config};

/// Per-channel (mean, biased variance, unbiased variance) by a plain loop over every element.
pub(crate) fn reference_moments(x: &Tensor<f64>) -> Vec<(f64, f64, f64)> {
    let c = x.shape()[1];
    (0..c)
        .map(|ch| {
            let values: Vec<f64> = x
                .indexed_iter()
                .filter(|(i, _)| i[1] == ch)
                .map(|(_, &v)| v)
                .collect();
            let m = values.len() as f64;
            let mean = values.iter().sum::<f64>() / m;
            let ss: f64 = values.iter().map(|v| (v - mean).powi(2)).sum();
            (mean, ss / m, ss / (m - 1.0))
        })
        .collect()
}

/// `(x - mean[c]) / sqrt(var[c] + eps) * gamma[c] + beta[c]` element by element.
pub(crate) fn reference_affine(
    x: &Tensor<f64>,
    mean: &[f64],
    var: &[f64],
    gamma: &[f64],
    beta: &[f64],
    eps: f64,
) -> Tensor<f64> {
    let mut y = x.clone();
    for (i, v) in y.indexed_iter_mut() {
        let c = i[1];
        *v = (*v - mean[c]) / (var[c] + eps).sqrt() * gamma[c] + beta[c];
    }
    y
}

/// The training-mode output by plain loops: `reference_affine` with the batch mean and biased
/// variance, and gamma, beta (1 and 0 without affine).
pub(crate) fn reference_train(
    x: &Tensor<f64>,
    gamma: &Tensor<f64>,
    beta: &Tensor<f64>,
    affine: bool,
) -> Tensor<f64> {
    let c = x.shape()[1];
    let moments = reference_moments(x);
    let mean: Vec<f64> = moments.iter().map(|m| m.0).collect();
    let var: Vec<f64> = moments.iter().map(|m| m.1).collect();
    let (g, b) = if affine {
        (column(gamma), column(beta))
    } else {
        (vec![1.0; c], vec![0.0; c])
    };
    reference_affine(x, &mean, &var, &g, &b, EPS)
}

/// A batch norm input of rank 2, 3 or 4 with at least two values per channel, plus gamma and
/// beta of shape [C].
pub(crate) fn norm_inputs() -> impl Strategy<Value = (Tensor<f64>, Tensor<f64>, Tensor<f64>)> {
    (2usize..=4, 1usize..=3, 1usize..=3, 1usize..=3, 1usize..=3)
        .prop_map(|(rank, n, c, a, b)| {
            let mut shape = vec![n, c, a, b];
            shape.truncate(rank);
            // Two values per channel at least.
            if shape.iter().product::<usize>() / c < 2 {
                shape[0] = 2;
            }
            shape
        })
        .prop_flat_map(|shape| {
            let c = shape[1];
            (
                tensor(shape, -2.0, 2.0),
                tensor(vec![c], 0.5, 2.0),
                tensor(vec![c], -1.0, 1.0),
            )
        })
}

const EPS: f64 = 1e-5;

fn column(t: &Tensor<f64>) -> Vec<f64> {
    t.iter().copied().collect()
}

proptest! {
    #![proptest_config(proptest_config())]

    /// Through the batch statistics, for 2-D, 3-D and 4-D inputs, with and without affine;
    /// also the forward value and the returned mean / unbiased variance.
    #[test]
    fn grad_batch_norm_train((x, gamma, beta) in norm_inputs(), affine in any::<bool>()) {
        let moments = reference_moments(&x);
        let mean: Vec<f64> = moments.iter().map(|m| m.0).collect();
        let unbiased: Vec<f64> = moments.iter().map(|m| m.2).collect();
        let tape = Tape::<f64>::new();
        let (y, stats) = if affine {
            let (g, b) = (tape.leaf(gamma.clone()), tape.leaf(beta.clone()));
            tape.leaf(x.clone()).batch_norm_train(Some(g), Some(b), EPS)
        } else {
            tape.leaf(x.clone()).batch_norm_train(None, None, EPS)
        };
        assert_close_tol(&y.value(), &reference_train(&x, &gamma, &beta, affine), 1e-10);
        assert_close_tol(&stats.mean, &ndarray::Array1::from_vec(mean).into_dyn(), 1e-12);
        assert_close_tol(&stats.var_unbiased, &ndarray::Array1::from_vec(unbiased).into_dyn(), 1e-12);

        if affine {
            assert_grad(|v| v[0].batch_norm_train(Some(v[1]), Some(v[2]), EPS).0, &[x, gamma, beta]);
        } else {
            assert_grad(|v| v[0].batch_norm_train(None, None, EPS).0, &[x]);
        }
    }

    /// Running statistics as constants; gradient to x, gamma and beta.
    #[test]
    fn grad_batch_norm_eval(
        (x, gamma, beta) in norm_inputs(),
        stats in (tensor(vec![3], -1.0, 1.0), tensor(vec![3], 0.2, 3.0)),
        affine in any::<bool>(),
    ) {
        let c = x.shape()[1];
        let (rm, rv) = (
            stats.0.slice(ndarray::s![..c]).to_owned().into_dyn(),
            stats.1.slice(ndarray::s![..c]).to_owned().into_dyn(),
        );
        let (ones, zeros) = (vec![1.0; c], vec![0.0; c]);
        let (g, b) = if affine { (column(&gamma), column(&beta)) } else { (ones, zeros) };
        let expected = reference_affine(&x, &column(&rm), &column(&rv), &g, &b, EPS);
        let tape = Tape::<f64>::new();
        let y = if affine {
            let (g, b) = (tape.leaf(gamma.clone()), tape.leaf(beta.clone()));
            tape.leaf(x.clone()).batch_norm_eval(&rm, &rv, Some(g), Some(b), EPS)
        } else {
            tape.leaf(x.clone()).batch_norm_eval(&rm, &rv, None, None, EPS)
        };
        assert_close_tol(&y.value(), &expected, 1e-12);
        if affine {
            assert_grad(|v| v[0].batch_norm_eval(&rm, &rv, Some(v[1]), Some(v[2]), EPS), &[x, gamma, beta]);
        } else {
            assert_grad(|v| v[0].batch_norm_eval(&rm, &rv, None, None, EPS), &[x]);
        }
    }

    /// The mask is fixed by the seed, so every evaluation of the function drops the same entries.
    #[test]
    fn grad_dropout(
        x in sparsegrad::check::strategies::shaped_tensor(4, 4, -2.0, 2.0),
        p in 0.05f64..0.95,
        seed in any::<u64>(),
    ) {
        let tape = Tape::<f64>::new();
        let y = tape.leaf(x.clone()).dropout(p, &mut seeded(seed)).value();
        for (&yi, &xi) in y.iter().zip(&x) {
            // Dropped, or kept and scaled by 1 / (1 - p).
            prop_assert!(yi == 0.0 || (yi - xi / (1.0 - p)).abs() <= 1e-12 * (1.0 + yi.abs()));
        }
        assert_grad(|v| v[0].dropout(p, &mut seeded(seed)), &[x]);
    }
}

#[test]
#[should_panic(expected = "more than 1 value per channel")]
fn batch_norm_train_rejects_one_value_per_channel() {
    let tape = Tape::<f64>::new();
    let _ = tape
        .leaf(Tensor::zeros(IxDyn(&[1, 3])))
        .batch_norm_train(None, None, EPS);
}

/// f32 statistics are accumulated in f64: a large offset does not cost precision.
#[test]
fn batch_norm_f32_matches_f64_with_a_large_offset() {
    let x64 = normal(&[16, 3, 16, 16], 1).mapv(|v| v + 1000.0);
    let x32 = x64.mapv(|v| v as f32);
    let t64 = Tape::<f64>::new();
    let (y64, s64) = t64.leaf(x64.clone()).batch_norm_train(None, None, EPS);
    let t32 = Tape::<f32>::new();
    let (y32, s32) = t32.leaf(x32).batch_norm_train(None, None, EPS);
    // The f32 input itself is rounded by up to 1000 * 2^-24 = 6e-5, i.e. 6e-5 standard deviations.
    assert_close_tol(&y32.value().mapv(f64::from), &y64.value(), 2e-4);
    assert_close_tol(&s32.mean.mapv(f64::from), &s64.mean, 1e-6);
}

/// Values, statistics and gradients of a large batch norm on a pool of `threads`.
fn batch_norm_on(threads: usize, x: &Tensor<f32>) -> Vec<Tensor<f32>> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    pool.install(|| {
        let tape = Tape::<f32>::new();
        let c = x.shape()[1];
        let v = tape.leaf(x.clone());
        let g = tape.leaf(Tensor::from_shape_fn(IxDyn(&[c]), |i| 1.0 + i[0] as f32));
        let b = tape.leaf(Tensor::zeros(IxDyn(&[c])));
        let (y, stats) = v.batch_norm_train(Some(g), Some(b), EPS);
        let value = (*y.value()).clone();
        let grads = (y.mul(y).mul(v)).sum().backward();
        vec![
            value,
            stats.mean,
            stats.var_unbiased,
            grads.wrt(v).expect("dx").clone(),
            grads.wrt(g).expect("dgamma").clone(),
            grads.wrt(b).expect("dbeta").clone(),
        ]
    })
}

#[test]
fn batch_norm_is_bit_identical_for_every_thread_count() {
    let x = normal(&[16, 8, 24, 24], 2).mapv(|v| v as f32);
    let one = batch_norm_on(1, &x);
    assert_eq!(one, batch_norm_on(2, &x));
    assert_eq!(one, batch_norm_on(3, &x));
}
