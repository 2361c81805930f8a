//! The element type of every tensor: `f32` for training, `f64` for gradient checks, and
//! [`Dual64`](crate::dual::Dual64) for Hessian-vector products ([`crate::hvp`]).
//!
//! Everything numeric in the crate is generic over [`Float`]. The trait adds to `num_traits::Float`
//! the things the engine needs that the standard traits do not give: a GEMM entry point
//! (dispatching to `matrixmultiply::sgemm` / `dgemm`), lossless-enough conversion from `f64`
//! constants written in the source, and the type long sums are accumulated in ([`Float::Acc`]).

use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{AddAssign, DivAssign, MulAssign, SubAssign};

use ndarray::{LinalgScalar, ScalarOperand};

/// A floating-point element type the engine can train with.
pub trait Float:
    num_traits::Float
    + num_traits::FromPrimitive
    + LinalgScalar
    + ScalarOperand
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Sum
    + Default
    + Debug
    + Display
    + Send
    + Sync
    + 'static
{
    /// Name used in checkpoints and error messages (`"f32"` / `"f64"`).
    const DTYPE: &'static str;

    /// Converts an `f64` constant (rounding to nearest for `f32`).
    fn c(x: f64) -> Self;

    /// Widens to `f64` (exact for `f32` and `f64`; a dual number's real part).
    fn f64(self) -> f64;

    /// The type long sums and per-channel statistics are accumulated in (batch norm): `f64` for
    /// `f32` and `f64`, so a sum of many `f32` values loses nothing to rounding; the dual number
    /// itself for `Dual64`, so the sums keep their tangent.
    type Acc: Accumulator;

    /// Converts to the accumulator type (`f64()` for `f32` and `f64`).
    fn acc(self) -> Self::Acc;

    /// Converts back from the accumulator type (`c()` for `f32` and `f64`).
    fn from_acc(a: Self::Acc) -> Self;

    /// `C <- alpha * A B + beta * C` on raw strided storage (row/column strides in elements).
    ///
    /// # Safety
    /// The pointers and strides must describe valid `m x k`, `k x n` and `m x n` matrices, and `c`
    /// must not alias `a` or `b`. This is exactly `matrixmultiply`'s contract.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );

    /// The hyperbolic tangent of the GRU's candidate gate (`Var::gru_gates`). Its own method so
    /// `f32` can compute it in `f64` ([`tanh_f32`]); `f64` and `Dual64` use their own `tanh`.
    /// The elementwise `tanh` op (FastGRNN's candidate) keeps `libm`'s `tanhf`: runs saved by
    /// earlier versions (`tests/fixtures/v0`) must resume to the same bits, and a 1-ulp change
    /// in tanh would break that.
    fn tanh_op(self) -> Self {
        self.tanh()
    }
}

/// `tanh` of an `f32` through `f64`'s `exp`: `(e^{2x} - 1) / (e^{2x} + 1)`, with `x - x^3 / 3` below
/// 2^-12 (where the next term is 2^-48 relative) and +-1 beyond 20 (tanh(9.1) already rounds to
/// 1 in `f32`). The `f64` result carries ~45 correct bits before the final rounding to `f32`, so
/// it agrees with the correctly rounded tanh except on rare ties. Why: glibc's `tanhf` goes
/// through `expm1f`, which measured 30 ns per call, 40% of a GRU forward; `f64` `exp` is ~5 ns.
#[inline]
pub fn tanh_f32(x: f32) -> f32 {
    let x = f64::from(x);
    if x.abs() > 20.0 {
        return x.signum() as f32;
    }
    if x.abs() < 1.0 / 4096.0 {
        // Written as a product so that tanh(-0) = -0.
        return (x * (1.0 - x * x / 3.0)) as f32;
    }
    let t = (2.0 * x).exp();
    ((t - 1.0) / (t + 1.0)) as f32
}

/// A type [`Float::Acc`] may be: a float with `f64` constants.
pub trait Accumulator: num_traits::Float + AddAssign + Send + Sync + Debug + 'static {
    /// Converts an `f64` constant.
    fn c(x: f64) -> Self;
}

impl Accumulator for f64 {
    fn c(x: f64) -> Self {
        x
    }
}

impl Float for f32 {
    const DTYPE: &'static str = "f32";
    type Acc = f64;
    fn c(x: f64) -> Self {
        x as f32
    }
    fn f64(self) -> f64 {
        self as f64
    }
    fn acc(self) -> f64 {
        self as f64
    }
    fn from_acc(a: f64) -> Self {
        a as f32
    }
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: f32,
        a: *const f32,
        rsa: isize,
        csa: isize,
        b: *const f32,
        rsb: isize,
        csb: isize,
        beta: f32,
        c: *mut f32,
        rsc: isize,
        csc: isize,
    ) {
        // SAFETY: forwarded contract, see the trait method.
        unsafe {
            matrixmultiply::sgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
        }
    }
    #[inline]
    fn tanh_op(self) -> Self {
        tanh_f32(self)
    }
}

impl Float for f64 {
    const DTYPE: &'static str = "f64";
    type Acc = f64;
    fn c(x: f64) -> Self {
        x
    }
    fn f64(self) -> f64 {
        self
    }
    fn acc(self) -> f64 {
        self
    }
    fn from_acc(a: f64) -> Self {
        a
    }
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: f64,
        a: *const f64,
        rsa: isize,
        csa: isize,
        b: *const f64,
        rsb: isize,
        csb: isize,
        beta: f64,
        c: *mut f64,
        rsc: isize,
        csc: isize,
    ) {
        // SAFETY: forwarded contract, see the trait method.
        unsafe {
            matrixmultiply::dgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::tanh_f32;

    /// Distance in units in the last place between two finite `f32` of the same sign.
    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    proptest! {
        /// Within one ulp of `f64`'s tanh rounded to `f32`, over every magnitude that matters.
        #[test]
        fn tanh_f32_is_within_one_ulp(x in prop_oneof![-1e-3f32..1e-3, -2.0f32..2.0, -30.0f32..30.0]) {
            let reference = (x as f64).tanh() as f32;
            prop_assert!(ulps(tanh_f32(x), reference) <= 1, "x = {x}: {} vs {reference}", tanh_f32(x));
        }
    }

    #[test]
    fn tanh_f32_special_values() {
        assert_eq!(tanh_f32(0.0).to_bits(), 0.0f32.to_bits());
        assert_eq!(tanh_f32(-0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!(tanh_f32(f32::INFINITY), 1.0);
        assert_eq!(tanh_f32(f32::NEG_INFINITY), -1.0);
        assert!(tanh_f32(f32::NAN).is_nan());
        assert_eq!(tanh_f32(1e-30), 1e-30);
    }
}
