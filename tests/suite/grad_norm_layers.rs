//! The batch norm and dropout layers (`src/nn/batchnorm.rs`, `src/nn/dropout.rs`): the running
//! statistics PyTorch keeps (momentum, cumulative average, eval mode), parameter names and
//! trainability, gradients reaching weight and bias, and dropout's mask, scaling and seeding. The
//! ops themselves are in `grad_norm.rs`.

use ndarray::{ArrayD, IxDyn, array};
use sparsegrad::nn::{BatchNorm, Dropout, Module, named_params};
use sparsegrad::rng::seeded;
use sparsegrad::tape::{Tape, Tensor};

use crate::common::{assert_close_tol, normal};
use crate::grad_norm::{reference_affine, reference_moments};

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
    assert_close_tol(
        &buffer(&bn, "running_mean"),
        &array![0.2, 0.2].into_dyn(),
        1e-15,
    );
    assert_close_tol(
        &buffer(&bn, "running_var"),
        &array![1.1, 1.7].into_dyn(),
        1e-15,
    );
    // Channel 0: {2, 2} (mean 2, var 0); channel 1: {-1, 1} (mean 0, unbiased var 2).
    train_step(&mut bn, array![[2.0, -1.0], [2.0, 1.0]].into_dyn());
    assert_close_tol(
        &buffer(&bn, "running_mean"),
        &array![0.38, 0.18].into_dyn(),
        1e-15,
    );
    assert_close_tol(
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
    assert_close_tol(
        &buffer(&bn, "running_mean"),
        &ndarray::Array1::from_vec(rm).into_dyn(),
        1e-12,
    );
    assert_close_tol(
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
    assert_close_tol(
        &buffer(&bn, "running_mean"),
        &array![(2.0 + 6.0 + 0.0) / 3.0].into_dyn(),
        1e-15,
    );
    // var: 1 (initial) replaced by the average of {2, 2, 0}.
    assert_close_tol(
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
    assert_close_tol(&y, &expected, 1e-12);
    assert_eq!(buffer(&bn, "running_mean"), array![1.0, -2.0].into_dyn());
    assert_eq!(buffer(&bn, "running_var"), array![4.0, 0.25].into_dyn());
    assert_eq!(buffer(&bn, "num_batches_tracked")[[]], 0.0);

    // Back in training mode the batch statistics are used and the step is counted.
    bn.set_training(true);
    let y = train_step(&mut bn, x.clone());
    let moments = reference_moments(&x);
    let (mean, var): (Vec<f64>, Vec<f64>) = moments.iter().map(|m| (m.0, m.1)).unzip();
    let expected = reference_affine(&x, &mean, &var, &[2.0, 3.0], &[0.5, -0.5], 1e-5);
    assert_close_tol(&y, &expected, 1e-10);
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
    assert_close_tol(grads.of(bn.bias.as_ref().unwrap()).unwrap(), &dbeta, 1e-12);
    assert_close_tol(
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
