//! Dual numbers `re + eps ε` (ε² = 0) as a [`Float`](crate::float::Float): forward-mode differentiation of anything
//! the crate computes, used by [`crate::hvp`] for exact Hessian-vector products.
//!
//! Every op in the crate is generic over `Float`, so a tape of [`Dual64`] carries, next to each
//! value, its directional derivative: if the inputs are `x + ε v`, every value `y(x)` comes out as
//! `y(x) + ε (Dy(x) v)`, and so do the gradients the backward pass computes (the backward pass is
//! just more arithmetic on duals). That is forward-over-reverse: the ε-part of `∇f(x + ε v)` is
//! `H v`, exact up to rounding, at about the cost of one forward and backward in `f64` times three
//! (see `docs/gradients.md`).
//!
//! Conventions (so that piecewise-smooth code gets the derivative of the piece it is on):
//! - comparisons (`==`, `<`, `max`, `min`, `is_nan`, ...) look at the real part only, so branches
//!   and arg-max choices are those of the `f64` computation;
//! - `abs`, `signum`, `floor`, `round`, ... are differentiated piecewise: the derivative of the
//!   branch taken (`abs'(0) = 0`, as the crate's `abs` op);
//! - a tangent of exactly zero stays zero through unary functions, even where the derivative is
//!   infinite (`sqrt(0 + 0ε) = 0 + 0ε`, not `0 + NaN ε`): constants stay constants.
//!
//! There is no dual GEMM in `matrixmultiply`; [`Float::gemm`](crate::float::Float::gemm) runs three `dgemm`s on real and
//! tangent planes (`gemm.rs`), so a product costs about three `f64` products.

use std::cmp::Ordering;
use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Rem, Sub, SubAssign};

use num_traits::{FromPrimitive, Num, NumCast, One, ToPrimitive, Zero};

mod float_impl;
mod gemm;

/// `re + eps ε` with `ε² = 0`. See the module documentation.
#[derive(Clone, Copy, Debug, Default)]
pub struct Dual64 {
    /// The value.
    pub re: f64,
    /// The directional derivative carried along with it.
    pub eps: f64,
}

impl Dual64 {
    pub const fn new(re: f64, eps: f64) -> Self {
        Dual64 { re, eps }
    }

    /// A constant: no tangent.
    pub const fn constant(re: f64) -> Self {
        Dual64 { re, eps: 0.0 }
    }

    /// `f(re) + ε eps f'(re)`, with `f'` evaluated only when the tangent is not zero.
    fn chain(self, value: f64, derivative: impl FnOnce() -> f64) -> Self {
        let eps = if self.eps == 0.0 {
            0.0
        } else {
            self.eps * derivative()
        };
        Dual64 { re: value, eps }
    }
}

impl From<f64> for Dual64 {
    fn from(re: f64) -> Self {
        Dual64::constant(re)
    }
}

impl From<f32> for Dual64 {
    fn from(re: f32) -> Self {
        Dual64::constant(re as f64)
    }
}

impl fmt::Display for Dual64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match f.precision() {
            Some(p) => write!(f, "{:.*}{:+.*}ε", p, self.re, p, self.eps),
            None => write!(f, "{}{:+}ε", self.re, self.eps),
        }
    }
}

impl PartialEq for Dual64 {
    /// Equal real parts (see the module documentation: comparisons ignore the tangent).
    fn eq(&self, other: &Self) -> bool {
        self.re == other.re
    }
}

impl PartialOrd for Dual64 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        self.re.partial_cmp(&other.re)
    }
}

impl Neg for Dual64 {
    type Output = Self;
    fn neg(self) -> Self {
        Dual64::new(-self.re, -self.eps)
    }
}

impl Add for Dual64 {
    type Output = Self;
    fn add(self, b: Self) -> Self {
        Dual64::new(self.re + b.re, self.eps + b.eps)
    }
}

impl Sub for Dual64 {
    type Output = Self;
    fn sub(self, b: Self) -> Self {
        Dual64::new(self.re - b.re, self.eps - b.eps)
    }
}

impl Mul for Dual64 {
    type Output = Self;
    fn mul(self, b: Self) -> Self {
        Dual64::new(self.re * b.re, self.re * b.eps + self.eps * b.re)
    }
}

impl Div for Dual64 {
    type Output = Self;
    /// d(a / b) = (da - (a / b) db) / b.
    fn div(self, b: Self) -> Self {
        let q = self.re / b.re;
        Dual64::new(q, (self.eps - q * b.eps) / b.re)
    }
}

impl Rem for Dual64 {
    type Output = Self;
    /// a % b = a - b trunc(a / b); the truncation is piecewise constant.
    fn rem(self, b: Self) -> Self {
        let r = self.re % b.re;
        Dual64::new(r, self.eps - b.eps * (self.re / b.re).trunc())
    }
}

macro_rules! assign_ops {
    ($($trait:ident $method:ident $op:tt;)*) => {$(
        impl $trait for Dual64 {
            fn $method(&mut self, b: Self) {
                *self = *self $op b;
            }
        }
    )*};
}
assign_ops! {
    AddAssign add_assign +;
    SubAssign sub_assign -;
    MulAssign mul_assign *;
    DivAssign div_assign /;
}

impl Sum for Dual64 {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Dual64::zero(), |a, b| a + b)
    }
}

impl Zero for Dual64 {
    fn zero() -> Self {
        Dual64::constant(0.0)
    }
    fn is_zero(&self) -> bool {
        self.re == 0.0 && self.eps == 0.0
    }
}

impl One for Dual64 {
    fn one() -> Self {
        Dual64::constant(1.0)
    }
}

impl Num for Dual64 {
    type FromStrRadixErr = <f64 as Num>::FromStrRadixErr;
    fn from_str_radix(s: &str, radix: u32) -> Result<Self, Self::FromStrRadixErr> {
        <f64 as Num>::from_str_radix(s, radix).map(Dual64::constant)
    }
}

impl ToPrimitive for Dual64 {
    fn to_i64(&self) -> Option<i64> {
        self.re.to_i64()
    }
    fn to_u64(&self) -> Option<u64> {
        self.re.to_u64()
    }
    fn to_f64(&self) -> Option<f64> {
        Some(self.re)
    }
}

impl NumCast for Dual64 {
    fn from<T: ToPrimitive>(n: T) -> Option<Self> {
        n.to_f64().map(Dual64::constant)
    }
}

impl FromPrimitive for Dual64 {
    fn from_i64(n: i64) -> Option<Self> {
        Some(Dual64::constant(n as f64))
    }
    fn from_u64(n: u64) -> Option<Self> {
        Some(Dual64::constant(n as f64))
    }
    fn from_f64(n: f64) -> Option<Self> {
        Some(Dual64::constant(n))
    }
}

impl ndarray::ScalarOperand for Dual64 {}
