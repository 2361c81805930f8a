//! The element type of every tensor: `f32` for training, `f64` for gradient checks, and
//! [`Dual64`](crate::dual::Dual64) for Hessian-vector products ([`crate::hvp`]).
//!
//! Everything numeric in the crate is generic over [`Float`]. The trait adds to `num_traits::Float`
//! the things the engine needs that the standard traits do not give: a GEMM entry point
//! (dispatching to `matrixmultiply::sgemm` / `dgemm`), lossless-enough conversion from `f64`
//! constants written in the source, and the type long sums are accumulated in ([`Float::Acc`]).

use std::any::TypeId;
use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{AddAssign, DivAssign, MulAssign, SubAssign};

use ndarray::{LinalgScalar, ScalarOperand};

/// `s` as an `f32` slice when `F` is `f32` (for kernels that only have an f32 fast path).
pub fn as_f32<F: 'static>(s: &[F]) -> Option<&[f32]> {
    // SAFETY: F is f32 (checked), so the cast is the identity.
    (TypeId::of::<F>() == TypeId::of::<f32>())
        .then(|| unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<f32>(), s.len()) })
}

/// [`as_f32`] for a mutable slice.
pub fn as_f32_mut<F: 'static>(s: &mut [F]) -> Option<&mut [f32]> {
    // SAFETY: F is f32 (checked), so the cast is the identity; the borrow is moved.
    (TypeId::of::<F>() == TypeId::of::<f32>())
        .then(|| unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<f32>(), s.len()) })
}

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

    /// `sigmoid` of every element, in place: the GRU's reset and update gates
    /// (`Var::gru_gates`). `f32` overrides it with the vectorised loop of [`crate::vmath`].
    fn sigmoid_in_place(xs: &mut [Self]) {
        xs.iter_mut().for_each(|v| *v = sigmoid(*v));
    }

    /// `tanh` of every element, in place: the GRU's candidate gate. `f32` overrides it with
    /// [`crate::vmath`]. The elementwise `tanh` and `sigmoid` ops keep `libm`'s functions: runs
    /// saved by earlier versions (`tests/fixtures/v0`, FastGRNN) must resume to the same bits.
    fn tanh_in_place(xs: &mut [Self]) {
        xs.iter_mut().for_each(|v| *v = v.tanh());
    }
}

/// The logistic function `1 / (1 + e^-x)`, with two branches so that `exp` never overflows.
pub fn sigmoid<F: Float>(x: F) -> F {
    if x >= F::zero() {
        F::one() / (F::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (F::one() + e)
    }
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
    fn sigmoid_in_place(xs: &mut [f32]) {
        crate::vmath::sigmoid_in_place(xs);
    }
    fn tanh_in_place(xs: &mut [f32]) {
        crate::vmath::tanh_in_place(xs);
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
