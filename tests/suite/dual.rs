//! `Dual64`: every scalar function's tangent against central differences of the `f64` function,
//! the conventions at kinks (comparisons, max/min, abs on the real part; zero tangents stay
//! zero), and the three-dgemm GEMM against a naive dual loop over strided operands.

use ndarray::{Array2, ArrayView2};
use num_traits::Float as _;
use proptest::prelude::*;
use sparsegrad::dual::Dual64;
use sparsegrad::kernels::gemm::gemm;
use sparsegrad::rng::{seeded, uniform};

use crate::common::proptest_config;

/// Central-difference step for the scalar functions (error ~1e-10 for these smooth functions).
const STEP: f64 = 1e-5;

/// A unary function of `Dual64`, its `f64` counterpart and the open interval it is tested on.
type Unary = (&'static str, fn(Dual64) -> Dual64, fn(f64) -> f64, f64, f64);

fn unary_functions() -> Vec<Unary> {
    vec![
        ("sqrt", |x| x.sqrt(), f64::sqrt, 0.1, 4.0),
        ("cbrt", |x| x.cbrt(), f64::cbrt, 0.1, 4.0),
        ("exp", |x| x.exp(), f64::exp, -3.0, 3.0),
        ("exp2", |x| x.exp2(), f64::exp2, -3.0, 3.0),
        ("exp_m1", |x| x.exp_m1(), f64::exp_m1, -3.0, 3.0),
        ("ln", |x| x.ln(), f64::ln, 0.1, 4.0),
        ("ln_1p", |x| x.ln_1p(), f64::ln_1p, -0.9, 3.0),
        ("log2", |x| x.log2(), f64::log2, 0.1, 4.0),
        ("log10", |x| x.log10(), f64::log10, 0.1, 4.0),
        ("recip", |x| x.recip(), f64::recip, 0.2, 4.0),
        ("sin", |x| x.sin(), f64::sin, -3.0, 3.0),
        ("cos", |x| x.cos(), f64::cos, -3.0, 3.0),
        ("tan", |x| x.tan(), f64::tan, -1.2, 1.2),
        ("asin", |x| x.asin(), f64::asin, -0.9, 0.9),
        ("acos", |x| x.acos(), f64::acos, -0.9, 0.9),
        ("atan", |x| x.atan(), f64::atan, -3.0, 3.0),
        ("sinh", |x| x.sinh(), f64::sinh, -3.0, 3.0),
        ("cosh", |x| x.cosh(), f64::cosh, -3.0, 3.0),
        ("tanh", |x| x.tanh(), f64::tanh, -3.0, 3.0),
        ("asinh", |x| x.asinh(), f64::asinh, -3.0, 3.0),
        ("acosh", |x| x.acosh(), f64::acosh, 1.1, 4.0),
        ("atanh", |x| x.atanh(), f64::atanh, -0.9, 0.9),
        ("powi(3)", |x| x.powi(3), |x| x.powi(3), -3.0, 3.0),
        ("powi(-2)", |x| x.powi(-2), |x| x.powi(-2), 0.2, 3.0),
        (
            "powf(1.7)",
            |x| x.powf(Dual64::constant(1.7)),
            |x| x.powf(1.7),
            0.1,
            3.0,
        ),
        ("to_degrees", |x| x.to_degrees(), f64::to_degrees, -3.0, 3.0),
        ("to_radians", |x| x.to_radians(), f64::to_radians, -3.0, 3.0),
        ("abs", |x| x.abs(), f64::abs, -3.0, -0.1),
        ("fract", |x| x.fract(), f64::fract, 0.05, 0.95),
        ("floor", |x| x.floor(), f64::floor, 0.05, 0.95),
        ("signum", |x| x.signum(), f64::signum, 0.05, 3.0),
    ]
}

/// A binary function of `Dual64`, its `f64` counterpart, and the intervals of both arguments.
type Binary = (
    &'static str,
    fn(Dual64, Dual64) -> Dual64,
    fn(f64, f64) -> f64,
    [f64; 4],
);

fn binary_functions() -> Vec<Binary> {
    vec![
        ("add", |a, b| a + b, |a, b| a + b, [-3.0, 3.0, -3.0, 3.0]),
        ("sub", |a, b| a - b, |a, b| a - b, [-3.0, 3.0, -3.0, 3.0]),
        ("mul", |a, b| a * b, |a, b| a * b, [-3.0, 3.0, -3.0, 3.0]),
        ("div", |a, b| a / b, |a, b| a / b, [-3.0, 3.0, 0.3, 3.0]),
        ("rem", |a, b| a % b, |a, b| a % b, [0.1, 0.9, 1.0, 2.0]),
        ("powf", |a, b| a.powf(b), f64::powf, [0.2, 3.0, -2.0, 2.0]),
        ("log", |a, b| a.log(b), f64::log, [0.2, 3.0, 1.5, 4.0]),
        (
            "hypot",
            |a, b| a.hypot(b),
            f64::hypot,
            [-3.0, 3.0, 0.3, 3.0],
        ),
        (
            "atan2",
            |a, b| a.atan2(b),
            f64::atan2,
            [-3.0, 3.0, 0.3, 3.0],
        ),
        (
            "mul_add(2)",
            |a, b| a.mul_add(b, a),
            |a, b| a.mul_add(b, a),
            [-3.0, 3.0, -3.0, 3.0],
        ),
    ]
}

fn assert_tangent(name: &str, at: f64, tangent: f64, numeric: f64) {
    assert!(
        (tangent - numeric).abs() <= 1e-7 * (1.0 + numeric.abs()),
        "{name} at {at}: tangent {tangent:e} vs central difference {numeric:e}"
    );
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn unary_tangents_are_derivatives(t in 0.0..1.0f64, dir in -2.0..2.0f64) {
        for (name, f, reference, lo, hi) in unary_functions() {
            let x = lo + t * (hi - lo);
            let y = f(Dual64::new(x, dir));
            prop_assert_eq!(y.re.to_bits(), reference(x).to_bits(), "{} value at {}", name, x);
            let numeric = dir * (reference(x + STEP) - reference(x - STEP)) / (2.0 * STEP);
            assert_tangent(name, x, y.eps, numeric);
        }
    }

    #[test]
    fn binary_tangents_are_directional_derivatives(
        t in 0.0..1.0f64, u in 0.0..1.0f64, da in -2.0..2.0f64, db in -2.0..2.0f64,
    ) {
        for (name, f, reference, [alo, ahi, blo, bhi]) in binary_functions() {
            let (a, b) = (alo + t * (ahi - alo), blo + u * (bhi - blo));
            let y = f(Dual64::new(a, da), Dual64::new(b, db));
            prop_assert_eq!(y.re.to_bits(), reference(a, b).to_bits(), "{} value", name);
            let moved = |h: f64| reference(a + h * da, b + h * db);
            let numeric = (moved(STEP) - moved(-STEP)) / (2.0 * STEP);
            assert_tangent(name, a, y.eps, numeric);
        }
    }

    #[test]
    fn gemm_matches_a_naive_dual_loop(
        m in 0..12usize, k in 0..12usize, n in 0..12usize,
        transpose_a: bool, transpose_b: bool, tangent_free_a: bool, use_beta: bool, seed: u64,
    ) {
        let mut rng = seeded(seed);
        let mut draw = |tangent: bool| {
            let re = uniform(&mut rng, -1.0, 1.0);
            let eps = uniform(&mut rng, -1.0, 1.0);
            Dual64::new(re, if tangent { eps } else { 0.0 })
        };
        // Stored transposed when asked, so the kernel sees column-major strides.
        let a_store = if transpose_a { Array2::from_shape_simple_fn((k, m), || draw(!tangent_free_a)) } else { Array2::from_shape_simple_fn((m, k), || draw(!tangent_free_a)) };
        let b_store = if transpose_b { Array2::from_shape_simple_fn((n, k), || draw(true)) } else { Array2::from_shape_simple_fn((k, n), || draw(true)) };
        let a = if transpose_a { a_store.t() } else { a_store.view() };
        let b = if transpose_b { b_store.t() } else { b_store.view() };
        let (alpha, beta) = (draw(true), if use_beta { draw(true) } else { Dual64::constant(0.0) });
        let c0 = Array2::from_shape_simple_fn((m, n), || draw(true));
        // With beta = 0 the output is not read: garbage (NaN) must not leak into the result.
        let mut c = if use_beta { c0.clone() } else { Array2::from_elem((m, n), Dual64::new(f64::NAN, f64::NAN)) };
        gemm(alpha, a, b, beta, c.view_mut());
        let expected = naive(alpha, a, b, beta, &c0);
        for (got, want) in c.iter().zip(&expected) {
            prop_assert!((got.re - want.re).abs() <= 1e-13 * (1.0 + k as f64), "re {} vs {}", got, want);
            prop_assert!((got.eps - want.eps).abs() <= 1e-13 * (1.0 + k as f64), "eps {} vs {}", got, want);
        }
    }
}

fn naive(
    alpha: Dual64,
    a: ArrayView2<'_, Dual64>,
    b: ArrayView2<'_, Dual64>,
    beta: Dual64,
    c: &Array2<Dual64>,
) -> Array2<Dual64> {
    Array2::from_shape_fn(c.dim(), |(i, j)| {
        let dot = (0..a.ncols()).fold(Dual64::constant(0.0), |s, p| s + a[(i, p)] * b[(p, j)]);
        alpha * dot
            + if beta.re == 0.0 && beta.eps == 0.0 {
                Dual64::constant(0.0)
            } else {
                beta * c[(i, j)]
            }
    })
}

#[test]
#[allow(clippy::neg_cmp_op_on_partial_ord)] // `!(a < b)` is the operator under test
fn comparisons_max_min_and_equality_look_at_the_real_part_only() {
    let (a, b) = (Dual64::new(1.0, 5.0), Dual64::new(1.0, -5.0));
    assert!(a == b && a <= b && a >= b && !a.lt(&b));
    assert!(Dual64::new(1.0, 0.0) < Dual64::new(2.0, -9.0));
    // Ties keep the first operand (so the gradient goes where the f64 code sends it).
    assert_eq!(a.max(b).eps, 5.0);
    assert_eq!(b.min(a).eps, -5.0);
    // A NaN loses, as in f64::max.
    let nan = Dual64::new(f64::NAN, 1.0);
    assert_eq!(nan.max(b).eps, -5.0);
    assert_eq!(b.max(nan).eps, -5.0);
    assert!(nan.is_nan() && !Dual64::new(1.0, f64::NAN).is_nan());
}

#[test]
fn abs_at_zero_has_derivative_zero_and_elsewhere_follows_the_branch() {
    assert_eq!(Dual64::new(0.0, 3.0).abs(), Dual64::new(0.0, 0.0));
    assert_eq!(Dual64::new(0.0, 3.0).abs().eps, 0.0);
    assert_eq!(Dual64::new(-2.0, 3.0).abs().eps, -3.0);
    assert_eq!(Dual64::new(2.0, 3.0).abs().eps, 3.0);
    assert_eq!(Dual64::new(-0.0, 3.0).signum().eps, 0.0);
}

#[test]
fn zero_tangents_stay_zero_where_the_derivative_is_infinite() {
    for y in [
        Dual64::constant(0.0).sqrt(),
        Dual64::constant(0.0).ln(),
        Dual64::constant(0.0).cbrt(),
        Dual64::constant(1.0).atanh(),
        Dual64::constant(0.0).powf(Dual64::constant(0.5)),
        Dual64::constant(0.0).powf(Dual64::constant(-1.0)),
    ] {
        assert_eq!(y.eps.to_bits(), 0.0f64.to_bits(), "{y}");
    }
    // A non-zero tangent at a singular point is infinite, as the derivative.
    assert_eq!(Dual64::new(0.0, 1.0).sqrt().eps, f64::INFINITY);
}

#[test]
fn display_shows_both_parts_and_honours_the_precision() {
    assert_eq!(Dual64::new(1.5, -0.25).to_string(), "1.5-0.25ε");
    assert_eq!(format!("{:.2}", Dual64::new(1.0, 2.0)), "1.00+2.00ε");
}
