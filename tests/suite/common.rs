//! Helpers shared by the gradient tests: the gradcheck wrapper, the proptest budget, closeness
//! checks, forward references, small numeric helpers (sigmoid, central differences) and a few
//! strategies built on `sparsegrad::check::strategies`.
#![allow(dead_code)] // each test binary uses a different subset

use ndarray::{ArrayD, IxDyn, Zip};
use proptest::prelude::*;
use sparsegrad::check::strategies::tensor;
use sparsegrad::check::{CheckOptions, CheckReport, gradcheck};
use sparsegrad::tape::{Tensor, Var, broadcast_shape};

/// Checks `f`'s analytic gradient at `inputs` against central differences (default options),
/// panicking with the checker's report (which names the worst element) on failure. Also insists
/// that something was compared, so an empty check cannot pass silently.
pub fn assert_grad<Func>(f: Func, inputs: &[Tensor<f64>]) -> CheckReport
where
    Func: for<'t> Fn(&[Var<'t, f64>]) -> Var<'t, f64>,
{
    let report = gradcheck(f, inputs, &CheckOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    assert!(report.compared > 0, "gradcheck compared nothing");
    report
}

/// The proptest budget for every property: CI has 2 cores and 15 minutes for the whole suite.
pub fn proptest_config() -> ProptestConfig {
    ProptestConfig {
        cases: 24,
        ..ProptestConfig::default()
    }
}

/// Asserts equal shapes and elementwise |actual - expected| <= 1e-12 (1 + |expected|).
pub fn assert_close(actual: &Tensor<f64>, expected: &Tensor<f64>) {
    assert_close_tol(actual, expected, 1e-12);
}

/// Asserts equal shapes and elementwise |actual - expected| <= tol (1 + |expected|).
pub fn assert_close_tol(actual: &Tensor<f64>, expected: &Tensor<f64>, tol: f64) {
    assert_eq!(actual.shape(), expected.shape(), "shapes differ");
    Zip::from(actual).and(expected).for_each(|&a, &e| {
        assert!(
            close(a, e, tol),
            "value {a} differs from expected {e}\nactual {actual}\nexpected {expected}"
        )
    });
}

/// |a - b| <= tol (1 + |b|).
pub fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

/// A tensor of shape [] holding `x`.
pub fn scalar(x: f64) -> Tensor<f64> {
    ArrayD::from_elem(IxDyn(&[]), x)
}

/// A tensor of standard normal values drawn from `seeded(seed)`.
pub fn normal(shape: &[usize], seed: u64) -> Tensor<f64> {
    let mut rng = sparsegrad::rng::seeded(seed);
    Tensor::from_shape_simple_fn(IxDyn(shape), || sparsegrad::rng::standard_normal(&mut rng))
}

/// The logistic sigmoid 1 / (1 + e^-x), computed independently of the engine.
pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Central difference of a scalar function at `x` with step `eps`.
pub fn derivative(f: impl Fn(f64) -> f64, x: f64, eps: f64) -> f64 {
    (f(x + eps) - f(x - eps)) / (2.0 * eps)
}

/// Evaluates `f` on fresh leaves holding `inputs` (the forward value an op produces).
pub fn forward<Func>(f: Func, inputs: &[Tensor<f64>]) -> Tensor<f64>
where
    Func: for<'t> Fn(&[Var<'t, f64>]) -> Var<'t, f64>,
{
    let tape = sparsegrad::tape::Tape::<f64>::new();
    let vars: Vec<_> = inputs.iter().map(|x| tape.leaf(x.clone())).collect();
    (*f(&vars).value()).clone()
}

/// `f(a, b)` elementwise under numpy broadcasting, computed independently of the engine.
pub fn broadcast_map(a: &Tensor<f64>, b: &Tensor<f64>, f: impl Fn(f64, f64) -> f64) -> Tensor<f64> {
    let shape = IxDyn(&broadcast_shape("reference", a.shape(), b.shape()));
    Zip::from(&a.broadcast(shape.clone()).unwrap())
        .and(&b.broadcast(shape).unwrap())
        .map_collect(|&x, &y| f(x, y))
}

/// The same logical values stored column-major (a leaf or parameter need not be row-major).
pub fn column_major(x: &Tensor<f64>) -> Tensor<f64> {
    let stored = x.view().reversed_axes().as_standard_layout().into_owned();
    stored.reversed_axes()
}

/// A tensor of a random shape (rank <= 4, dims <= 4) with values in `[lo, hi)`.
pub fn any_tensor(lo: f64, hi: f64) -> impl Strategy<Value = Tensor<f64>> {
    sparsegrad::check::strategies::shaped_tensor(4, 4, lo, hi)
}

/// Two tensors of broadcast-compatible random shapes, values in `[lo, hi)` and `[lo_b, hi_b)`.
pub fn broadcast_tensors(
    (lo, hi): (f64, f64),
    (lo_b, hi_b): (f64, f64),
) -> impl Strategy<Value = (Tensor<f64>, Tensor<f64>)> {
    sparsegrad::check::strategies::broadcast_pair(4, 4)
        .prop_flat_map(move |(sa, sb)| (tensor(sa, lo, hi), tensor(sb, lo_b, hi_b)))
}

/// A tensor of a random shape whose values are pairwise at least 0.05 apart: a shuffled grid of
/// spacing 0.1 plus noise in [0, 0.05), so reductions that pick a maximum never meet a tie.
pub fn distinct_tensor() -> impl Strategy<Value = Tensor<f64>> {
    sparsegrad::check::strategies::shape(4, 4).prop_flat_map(|shape| {
        let n: usize = shape.iter().product();
        (
            Just((0..n).collect::<Vec<usize>>()).prop_shuffle(),
            proptest::collection::vec(0.0..0.05, n),
        )
            .prop_map(move |(order, noise)| {
                let values = order
                    .iter()
                    .zip(noise)
                    .map(|(&k, e)| 0.1 * k as f64 - 0.8 + e)
                    .collect();
                ArrayD::from_shape_vec(IxDyn(&shape), values).expect("size matches")
            })
    })
}
