//! Batch normalisation and dropout (`src/ops/norm.rs`) and their layers (`src/nn/batchnorm.rs`,
//! `src/nn/dropout.rs`): forward against naive per-channel loops, property-based gradient checks
//! through the batch statistics (f64, 2-D/3-D/4-D, with and without affine), the running
//! statistics PyTorch keeps, dropout's mask and scaling, and bit-identical results for every
//! thread count.

use ndarray::{ArrayD, IxDyn, array};
use proptest::prelude::*;
use sparsegrad::check::strategies::tensor;
use sparsegrad::check::{CheckOptions, gradcheck};
use sparsegrad::nn::{BatchNorm, Dropout, Module, named_params};
use sparsegrad::rng::{seeded, standard_normal};
use sparsegrad::tape::{Tape, Tensor, Var};

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

fn assert_close(actual: &Tensor<f64>, expected: &Tensor<f64>, tol: f64) {
    assert_eq!(actual.shape(), expected.shape(), "shapes differ");
    for (a, e) in actual.iter().zip(expected) {
        assert!(
            (a - e).abs() <= tol * (1.0 + e.abs()),
            "{a} differs from {e}\nactual {actual}\nexpected {expected}"
        );
    }
}

fn normal(shape: &[usize], seed: u64) -> Tensor<f64> {
    let mut rng = seeded(seed);
    Tensor::from_shape_simple_fn(IxDyn(shape), || standard_normal(&mut rng))
}

/// Per-channel (mean, biased variance, unbiased variance) by a plain loop over every element.
fn reference_moments(x: &Tensor<f64>) -> Vec<(f64, f64, f64)> {
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
fn reference_affine(
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
    #![proptest_config(config())]

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
        assert_close(&y.value(), &reference_train(&x, &gamma, &beta, affine), 1e-10);
        assert_close(&stats.mean, &ndarray::Array1::from_vec(mean).into_dyn(), 1e-12);
        assert_close(&stats.var_unbiased, &ndarray::Array1::from_vec(unbiased).into_dyn(), 1e-12);

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
        assert_close(&y.value(), &expected, 1e-12);
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
    assert_close(&y32.value().mapv(f64::from), &y64.value(), 2e-4);
    assert_close(&s32.mean.mapv(f64::from), &s64.mean, 1e-6);
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

// ---------------------------------------------------------------- BatchNorm layer

fn train_step(layer: &mut BatchNorm<f64>, x: Tensor<f64>) -> Tensor<f64> {
    let tape = Tape::<f64>::new();
    (*layer.forward(tape.leaf(x)).value()).clone()
}

fn buffer(layer: &BatchNorm<f64>, name: &str) -> Tensor<f64> {
    named_params(layer)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no {name}"))
        .1
        .value()
        .clone()
}

/// Hand-computed: momentum 0.1, running_var updated with the unbiased variance.
#[test]
fn running_stats_follow_momentum_with_the_unbiased_variance() {
    let mut bn = BatchNorm::<f64>::new_1d(2);
    // Channel 0: {1, 3} (mean 2, unbiased var 2); channel 1: {0, 4} (mean 2, unbiased var 8).
    train_step(&mut bn, array![[1.0, 0.0], [3.0, 4.0]].into_dyn());
    // running_mean = 0.9 * 0 + 0.1 * 2; running_var = 0.9 * 1 + 0.1 * [2, 8].
    assert_close(
        &buffer(&bn, "running_mean"),
        &array![0.2, 0.2].into_dyn(),
        1e-15,
    );
    assert_close(
        &buffer(&bn, "running_var"),
        &array![1.1, 1.7].into_dyn(),
        1e-15,
    );
    // Channel 0: {2, 2} (mean 2, var 0); channel 1: {-1, 1} (mean 0, unbiased var 2).
    train_step(&mut bn, array![[2.0, -1.0], [2.0, 1.0]].into_dyn());
    assert_close(
        &buffer(&bn, "running_mean"),
        &array![0.38, 0.18].into_dyn(),
        1e-15,
    );
    assert_close(
        &buffer(&bn, "running_var"),
        &array![0.99, 1.73].into_dyn(),
        1e-15,
    );
    assert_eq!(
        buffer(&bn, "num_batches_tracked"),
        ArrayD::from_elem(IxDyn(&[]), 2.0)
    );
}

/// The same recursion on random 4-D batches against the naive per-channel moments.
#[test]
fn batch_norm_2d_running_stats_over_several_steps() {
    let mut bn = BatchNorm::<f64>::new_2d(3);
    let (mut rm, mut rv) = (vec![0.0; 3], vec![1.0; 3]);
    for step in 0..4 {
        let x = normal(&[4, 3, 5, 2], 10 + step).mapv(|v| 2.0 * v + step as f64);
        for (c, (mean, _, unbiased)) in reference_moments(&x).into_iter().enumerate() {
            rm[c] = 0.9 * rm[c] + 0.1 * mean;
            rv[c] = 0.9 * rv[c] + 0.1 * unbiased;
        }
        train_step(&mut bn, x);
    }
    assert_close(
        &buffer(&bn, "running_mean"),
        &ndarray::Array1::from_vec(rm).into_dyn(),
        1e-12,
    );
    assert_close(
        &buffer(&bn, "running_var"),
        &ndarray::Array1::from_vec(rv).into_dyn(),
        1e-12,
    );
    assert_eq!(buffer(&bn, "num_batches_tracked")[[]], 4.0);
}

/// momentum None: PyTorch's cumulative moving average (the running mean is the mean of the
/// batch means).
#[test]
fn momentum_none_is_a_cumulative_average() {
    let mut bn = BatchNorm::<f64>::new_1d(1).with_momentum(None);
    train_step(&mut bn, array![[1.0], [3.0]].into_dyn());
    train_step(&mut bn, array![[5.0], [7.0]].into_dyn());
    train_step(&mut bn, array![[0.0], [0.0]].into_dyn());
    assert_close(
        &buffer(&bn, "running_mean"),
        &array![(2.0 + 6.0 + 0.0) / 3.0].into_dyn(),
        1e-15,
    );
    // var: 1 (initial) replaced by the average of {2, 2, 0}.
    assert_close(
        &buffer(&bn, "running_var"),
        &array![4.0 / 3.0].into_dyn(),
        1e-15,
    );
}

#[test]
fn eval_mode_uses_the_running_stats_and_leaves_them_alone() {
    let mut bn = BatchNorm::<f64>::new_2d(2);
    bn.running_mean.set_value(array![1.0, -2.0].into_dyn());
    bn.running_var.set_value(array![4.0, 0.25].into_dyn());
    bn.weight
        .as_mut()
        .unwrap()
        .set_value(array![2.0, 3.0].into_dyn());
    bn.bias
        .as_mut()
        .unwrap()
        .set_value(array![0.5, -0.5].into_dyn());
    bn.set_training(false);
    let x = normal(&[3, 2, 2, 2], 5);
    let y = train_step(&mut bn, x.clone());
    let expected = reference_affine(
        &x,
        &[1.0, -2.0],
        &[4.0, 0.25],
        &[2.0, 3.0],
        &[0.5, -0.5],
        1e-5,
    );
    assert_close(&y, &expected, 1e-12);
    assert_eq!(buffer(&bn, "running_mean"), array![1.0, -2.0].into_dyn());
    assert_eq!(buffer(&bn, "running_var"), array![4.0, 0.25].into_dyn());
    assert_eq!(buffer(&bn, "num_batches_tracked")[[]], 0.0);

    // Back in training mode the batch statistics are used and the step is counted.
    bn.set_training(true);
    let y = train_step(&mut bn, x.clone());
    let moments = reference_moments(&x);
    let (mean, var): (Vec<f64>, Vec<f64>) = moments.iter().map(|m| (m.0, m.1)).unzip();
    let expected = reference_affine(&x, &mean, &var, &[2.0, 3.0], &[0.5, -0.5], 1e-5);
    assert_close(&y, &expected, 1e-10);
    assert_eq!(buffer(&bn, "num_batches_tracked")[[]], 1.0);
}

#[test]
fn batch_norm_names_and_trainability_follow_pytorch() {
    let bn = BatchNorm::<f32>::new_2d(4);
    let params = named_params(&bn);
    let names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "weight",
            "bias",
            "running_mean",
            "running_var",
            "num_batches_tracked"
        ]
    );
    let trainable: Vec<bool> = params.iter().map(|(_, p)| p.trainable()).collect();
    assert_eq!(trainable, [true, true, false, false, false]);
    assert_eq!(params[4].1.shape(), &[] as &[usize]);
    assert_eq!(params[0].1.value(), &ArrayD::from_elem(IxDyn(&[4]), 1.0f32));
    assert_eq!(params[1].1.value(), &ArrayD::from_elem(IxDyn(&[4]), 0.0f32));
    let mut weights = 0;
    bn.visit_weights("bn", &mut |_, _| weights += 1);
    assert_eq!(weights, 0, "batch norm stays dense");

    let plain = BatchNorm::<f32>::new_1d(4).without_affine();
    let names: Vec<String> = named_params(&plain).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["running_mean", "running_var", "num_batches_tracked"]
    );
}

/// The layer's weight and bias get their gradients through the tape.
#[test]
fn batch_norm_layer_gradients_reach_weight_and_bias() {
    let mut bn = BatchNorm::<f64>::new_1d(3);
    let x = normal(&[5, 3, 4], 7);
    let w = normal(&[5, 3, 4], 8);
    let tape = Tape::<f64>::new();
    let y = bn.forward(tape.leaf(x.clone()));
    let grads = (y * tape.constant(w.clone())).sum().backward();
    // dbeta = sum(g) per channel; dgamma = sum(g * xhat) = sum(g * y) with gamma 1, beta 0.
    let y = reference_affine(
        &x,
        &reference_moments(&x)
            .iter()
            .map(|m| m.0)
            .collect::<Vec<_>>(),
        &reference_moments(&x)
            .iter()
            .map(|m| m.1)
            .collect::<Vec<_>>(),
        &[1.0; 3],
        &[0.0; 3],
        1e-5,
    );
    let per_channel = |t: Tensor<f64>| t.sum_axis(ndarray::Axis(2)).sum_axis(ndarray::Axis(0));
    let dbeta = per_channel(w.clone());
    let dgamma = per_channel(&w * &y);
    assert_close(grads.of(bn.bias.as_ref().unwrap()).unwrap(), &dbeta, 1e-12);
    assert_close(
        grads.of(bn.weight.as_ref().unwrap()).unwrap(),
        &dgamma,
        1e-10,
    );
}

#[test]
#[should_panic(expected = "unexpected input shape")]
fn batch_norm_2d_rejects_a_3d_input() {
    let mut bn = BatchNorm::<f64>::new_2d(2);
    train_step(&mut bn, Tensor::zeros(IxDyn(&[2, 2, 3])));
}

// ---------------------------------------------------------------- Dropout

fn dropped(layer: &mut Dropout, x: &Tensor<f64>) -> Tensor<f64> {
    let tape = Tape::<f64>::new();
    (*layer.forward(tape.leaf(x.clone())).value()).clone()
}

#[test]
fn dropout_scales_kept_entries_and_is_off_in_eval() {
    let x = normal(&[64, 32], 3).mapv(|v| v + 5.0); // never zero
    let mut layer = Dropout::new(0.25, seeded(1));
    let y = dropped(&mut layer, &x);
    let mut kept = 0;
    for (&yi, &xi) in y.iter().zip(&x) {
        if yi != 0.0 {
            kept += 1;
            assert!(
                (yi - xi / 0.75).abs() < 1e-12,
                "kept entry {yi} is not {xi} / 0.75"
            );
        }
    }
    assert!(
        kept > 0 && kept < x.len(),
        "the mask should drop some and keep some"
    );
    layer.set_training(false);
    assert_eq!(dropped(&mut layer, &x), x);
}

#[test]
fn dropout_masks_are_fixed_by_the_seed() {
    let x = normal(&[16, 16], 4);
    let tape = Tape::<f64>::new();
    let v = tape.leaf(x);
    let a = v.dropout(0.5, &mut seeded(9)).value();
    let b = v.dropout(0.5, &mut seeded(9)).value();
    let c = v.dropout(0.5, &mut seeded(10)).value();
    assert_eq!(a, b);
    assert_ne!(a, c);
    // A layer draws a fresh mask every step from its own stream.
    let mut layer = Dropout::new(0.5, seeded(9));
    let x = normal(&[16, 16], 4);
    let first = dropped(&mut layer, &x);
    assert_eq!(first, *a);
    assert_ne!(dropped(&mut layer, &x), first);
}

#[test]
fn dropout_with_p_zero_is_the_identity() {
    let tape = Tape::<f64>::new();
    let v = tape.leaf(normal(&[3, 4], 5));
    let mut rng = seeded(0);
    let y = v.dropout(0.0, &mut rng);
    assert_eq!(y.id(), v.id(), "p = 0 records nothing");
    assert_eq!(rng, seeded(0), "p = 0 draws nothing");
    let mut all = Dropout::new(1.0, seeded(0));
    assert!(
        dropped(&mut all, &normal(&[3, 4], 5))
            .iter()
            .all(|&v| v == 0.0)
    );
}

/// Over 200k entries the kept fraction is 1 - p within 0.01 (about 9 standard deviations) and
/// the mean is preserved by the inverted scaling.
#[test]
fn dropout_keeps_a_fraction_one_minus_p() {
    for p in [0.1, 0.5, 0.8] {
        let x = Tensor::<f64>::ones(IxDyn(&[200, 1000]));
        let tape = Tape::<f64>::new();
        let y = tape.leaf(x).dropout(p, &mut seeded(42)).value();
        let kept = y.iter().filter(|&&v| v != 0.0).count() as f64 / y.len() as f64;
        assert!(
            (kept - (1.0 - p)).abs() < 0.01,
            "p {p}: kept fraction {kept}"
        );
        let mean = y.mean().unwrap();
        assert!((mean - 1.0).abs() < 0.01 / (1.0 - p), "p {p}: mean {mean}");
    }
}

#[test]
#[should_panic(expected = "not in [0, 1]")]
fn dropout_rejects_a_probability_above_one() {
    Dropout::new(1.5, seeded(0));
}
