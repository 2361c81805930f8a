//! `exp`, the logistic sigmoid and `tanh` over `f32` slices, written so the compiler vectorises
//! them (16 lanes under AVX-512): the gate nonlinearities of the GRU cell (`Var::gru_gates`).
//!
//! Why: `libm`'s `expf` and the `f64` `exp` behind a scalar `tanh` cost 5-20 ns per element and
//! were 55% of a GRU forward step (`perf`, input 32, hidden 128, batch 128), more than its two
//! GEMMs. These loops cost about 1 ns per element.
//!
//! How (the Cephes single-precision algorithms, Moshier 1984-2000):
//! - `exp(x) = 2^n e^r` with `n = round(x / ln 2)` and `r = x - n ln 2` (subtracted in two parts,
//!   `ln 2 = C1 + C2` with `n C1` exact), `e^r = 1 + r + r^2 P(r)` for `|r| <= ln 2 / 2` with a
//!   degree-5 `P`, and `2^n` built from its exponent bits. The input is clamped to
//!   `[-87, 88]`, where `2^n` stays a normal number.
//! - `sigmoid(x) = 1 / (1 + exp(-x))`.
//! - `tanh(x) = x + x^3 Q(x^2)` for `|x| < 0.625` (degree-4 `Q`; the closed form below cancels
//!   there), `sign(x) (1 - 2 / (exp(2|x|) + 1))` beyond.
//!
//! Measured accuracy against `f64` rounded to `f32`, over every third `f32` in `[-20, 20]` (a
//! one-off run; the test below checks every 331st): `exp` and `tanh` within 1 ulp, `sigmoid`
//! within 2. NaN stays NaN.
//!
//! Same bits on every CPU: the loops use plain multiplies, adds, divisions and comparisons,
//! which Rust never fuses into FMAs, so the AVX-512, AVX2 and baseline builds of each loop
//! (chosen at run time from the CPU's features) compute the same value for every element.

use crate::simd::{Kernel, widest};

/// `exp` of each element, in place.
pub fn exp_in_place(xs: &mut [f32]) {
    dispatch(xs, Func::Exp);
}

/// `1 / (1 + exp(-x))` of each element, in place.
pub fn sigmoid_in_place(xs: &mut [f32]) {
    dispatch(xs, Func::Sigmoid);
}

/// `tanh` of each element, in place.
pub fn tanh_in_place(xs: &mut [f32]) {
    dispatch(xs, Func::Tanh);
}

#[derive(Clone, Copy)]
enum Func {
    Exp,
    Sigmoid,
    Tanh,
}

/// Runs the loop for `f` compiled for the widest vector instructions this CPU has
/// (`simd::widest`).
fn dispatch(xs: &mut [f32], f: Func) {
    widest(Apply { xs, f });
}

/// The loop of one function over a slice.
struct Apply<'a> {
    xs: &'a mut [f32],
    f: Func,
}

impl Kernel for Apply<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Apply { xs, f } = self;
        match f {
            Func::Exp => xs.iter_mut().for_each(|v| *v = exp(*v)),
            Func::Sigmoid => xs.iter_mut().for_each(|v| *v = sigmoid(*v)),
            Func::Tanh => xs.iter_mut().for_each(|v| *v = tanh(*v)),
        }
    }
}

/// `x` limited to `[lo, hi]`; NaN passes through (both comparisons are false).
#[inline(always)]
fn clamp(x: f32, lo: f32, hi: f32) -> f32 {
    if x > hi {
        hi
    } else if x < lo {
        lo
    } else {
        x
    }
}

/// `e^x` (see the module documentation).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // ln 2 = C1 + C2, C1 with 9 significant bits so that n C1 is exact for |n| <= 128.
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    // Adding 1.5 * 2^23 rounds to an integer (to nearest) and leaves it in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = clamp(x, -87.0, 88.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let n_bits = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let r = x - n * C1 - n * C2;
    let p = ((((1.987_569_1e-4 * r + 1.398_2e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 0.166_666_65)
        * r
        + 0.5;
    let e_r = p * (r * r) + r + 1.0;
    // 2^n from its exponent bits: n is in [-126, 127] after the clamp.
    e_r * f32::from_bits((n_bits.wrapping_add(127) as u32) << 23)
}

/// `1 / (1 + e^-x)`.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `tanh(x)` (see the module documentation).
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let z = x * x;
    let q = (((-5.704_988_7e-3 * z + 2.063_909e-2) * z - 5.373_971_6e-2) * z + 0.133_314_42) * z
        - 0.333_332_8;
    // x (1 + z q) rather than x + x z q: the product keeps the sign of -0.
    let small = x * (1.0 + z * q);
    let a = x.abs();
    let large = 1.0 - 2.0 / (exp(2.0 * a) + 1.0);
    let large = if x < 0.0 { -large } else { large };
    if a < 0.625 { small } else { large }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Distance in units in the last place between two finite `f32` of the same sign.
    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    fn close(got: f32, want: f64, max_ulps: u32) -> bool {
        ulps(got, want as f32) <= max_ulps
    }

    /// Every `step`-th `f32` bit pattern between `lo` and `hi` (same sign ranges joined).
    fn sweep(lo: f32, hi: f32, step: usize) -> Vec<f32> {
        let mut xs: Vec<f32> = (0..(lo.abs().to_bits()))
            .step_by(step)
            .map(|b| -f32::from_bits(b))
            .collect();
        xs.extend((0..hi.to_bits()).step_by(step).map(f32::from_bits));
        xs
    }

    #[test]
    fn sweep_is_within_the_documented_error() {
        let xs = sweep(20.0, 20.0, 331);
        for &x in &xs {
            let d = f64::from(x);
            assert!(close(exp(x), d.exp(), 1), "exp({x}) = {}", exp(x));
            let s = 1.0 / (1.0 + (-d).exp());
            assert!(close(sigmoid(x), s, 2), "sigmoid({x}) = {}", sigmoid(x));
            let t = d.tanh();
            assert!(close(tanh(x), t, 1), "tanh({x}) = {}", tanh(x));
        }
    }

    #[test]
    fn special_values() {
        for f in [exp, sigmoid, tanh] {
            assert!(f(f32::NAN).is_nan());
        }
        assert_eq!(exp(0.0), 1.0);
        assert!(close(exp(f32::NEG_INFINITY), (-87.0f64).exp(), 2));
        assert!(exp(f32::INFINITY).is_finite() && exp(100.0) == exp(88.0));
        assert_eq!(sigmoid(0.0), 0.5);
        assert_eq!(sigmoid(f32::INFINITY), 1.0);
        assert!(sigmoid(f32::NEG_INFINITY) < 1e-37);
        assert_eq!(tanh(0.0).to_bits(), 0.0f32.to_bits());
        assert_eq!(tanh(-0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!((tanh(f32::INFINITY), tanh(f32::NEG_INFINITY)), (1.0, -1.0));
        assert_eq!(tanh(1e-30), 1e-30);
    }

    proptest! {
        /// The slice functions (vectorised for this CPU) give the same bits as the scalar
        /// functions element by element, for any length (vector bodies and remainders).
        #[test]
        fn slices_match_the_scalar_functions(xs in prop::collection::vec(-100.0f32..100.0, 0..70)) {
            for (f, scalar) in [
                (exp_in_place as fn(&mut [f32]), exp as fn(f32) -> f32),
                (sigmoid_in_place, sigmoid),
                (tanh_in_place, tanh),
            ] {
                let mut ys = xs.clone();
                f(&mut ys);
                for (&x, &y) in xs.iter().zip(&ys) {
                    prop_assert_eq!(y.to_bits(), scalar(x).to_bits(), "x = {}", x);
                }
            }
        }

        #[test]
        fn tanh_and_sigmoid_are_odd_and_symmetric(x in -30.0f32..30.0) {
            prop_assert_eq!(tanh(-x).to_bits(), (-tanh(x)).to_bits());
            prop_assert!((f64::from(sigmoid(x)) + f64::from(sigmoid(-x)) - 1.0).abs() < 1.2e-7);
        }
    }
}
