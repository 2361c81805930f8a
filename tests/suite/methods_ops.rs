//! Ops added for the training methods: `Var::threshold_fn` (STR's t = g(s) on the tape, which
//! the target controller differentiates through) and the one-threshold fast path of
//! `Var::soft_threshold` (a contiguous map and a chunked reduction), checked against the general
//! broadcast path on the same values.

use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;
use sparsegrad::check::strategies::shaped_tensor;
use sparsegrad::check::{CheckOptions, gradcheck};
use sparsegrad::ops::sparsity::ThresholdFn;
use sparsegrad::rng::{seeded, uniform};
use sparsegrad::tape::{Tape, Tensor, Var};

fn gradcheck_ok(f: impl for<'t> Fn(&[Var<'t, f64>]) -> Var<'t, f64>, inputs: &[Tensor<f64>]) {
    let report = gradcheck(f, inputs, &CheckOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    assert!(report.compared > 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn grad_threshold_fn_sigmoid(s in shaped_tensor(3, 4, -4.0, 4.0)) {
        let tape = Tape::<f64>::new();
        let t = tape.leaf(s.clone()).threshold_fn(&ThresholdFn::Sigmoid);
        let expected = s.mapv(|s| 1.0 / (1.0 + (-s).exp()));
        for (a, e) in t.value().iter().zip(expected.iter()) {
            prop_assert!((a - e).abs() < 1e-15);
        }
        gradcheck_ok(|v| v[0].threshold_fn(&ThresholdFn::Sigmoid), &[s]);
    }

    #[test]
    fn grad_threshold_fn_exp(s in shaped_tensor(3, 4, -4.0, 1.0)) {
        gradcheck_ok(|v| v[0].threshold_fn(&ThresholdFn::Exp), &[s]);
    }
}

/// The threshold `threshold_fn` gives in f32 is the one `soft_threshold` compares |w| with, so
/// weights exactly at it are pruned by both definitions alike.
#[test]
fn threshold_fn_matches_the_soft_threshold_cut_in_f32() {
    let tape = Tape::<f32>::new();
    let s = tape.leaf(ArrayD::from_elem(IxDyn(&[]), -2.7f32));
    let t = tape
        .leaf(ArrayD::from_elem(IxDyn(&[]), -2.7f32))
        .threshold_fn(&ThresholdFn::Sigmoid);
    let t = t.value()[[]];
    let w = tape.leaf(ndarray::arr1(&[t, -t, t * 1.0001, 0.0]).into_dyn());
    let y = w.soft_threshold(s, &ThresholdFn::Sigmoid);
    assert_eq!(y.value()[[0]], 0.0);
    assert_eq!(y.value()[[1]], 0.0);
    assert!(y.value()[[2]] > 0.0);
}

/// Uniform weights in [-1, 1): with the shapes below, whole chunks of 8 and a remainder.
fn weights(rows: usize, cols: usize, seed: u64) -> Tensor<f64> {
    let mut rng = seeded(seed);
    ArrayD::from_shape_simple_fn(IxDyn(&[rows, cols]), || uniform(&mut rng, -1.0, 1.0))
}

/// Value and gradients (to w and s) of sum(c * soft_threshold(w, s)).
fn run(w: &Tensor<f64>, s: &Tensor<f64>, c: &Tensor<f64>) -> (Tensor<f64>, Tensor<f64>, f64) {
    let tape = Tape::<f64>::new();
    let (wv, sv) = (tape.leaf(w.clone()), tape.leaf(s.clone()));
    let y = wv.soft_threshold(sv, &ThresholdFn::Sigmoid);
    let value = (*y.value()).clone();
    let grads = (y * tape.constant(c.clone())).sum().backward();
    let ds: f64 = grads.wrt(sv).unwrap().iter().sum();
    (value, grads.wrt(wv).unwrap().clone(), ds)
}

#[test]
fn one_threshold_fast_path_matches_the_general_path() {
    for (rows, cols) in [(13, 7), (1, 3), (64, 33)] {
        let w = weights(rows, cols, rows as u64);
        let c = weights(rows, cols, 100 + rows as u64);
        let s = -0.4; // g(s) = 0.40: about 40% of the weights are below it
        let scalar = ArrayD::from_elem(IxDyn(&[]), s);
        // The same threshold per output channel takes the general (broadcast) path; a
        // column-major weight takes the element-order reduction.
        let per_row = ArrayD::from_elem(IxDyn(&[rows, 1]), s);
        let column_major = w.t().as_standard_layout().into_owned().reversed_axes();
        let (y, dw, ds) = run(&w, &scalar, &c);
        for (other_w, other_s, what) in [
            (&w, &per_row, "per-channel path"),
            (&column_major, &scalar, "column-major weight"),
        ] {
            let (y2, dw2, ds2) = run(other_w, other_s, &c);
            assert_eq!(y, y2, "{what}: forward");
            assert_eq!(dw, dw2, "{what}: dL/dw");
            assert!(
                (ds - ds2).abs() <= 1e-12 * ds.abs().max(1.0),
                "{what}: dL/ds {ds} vs {ds2}"
            );
        }
    }
}
