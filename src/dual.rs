//! Dual numbers `re + eps ε` (ε² = 0) as a [`Float`]: forward-mode differentiation of anything
//! the crate computes, used by [`crate::hvp`] for exact Hessian-vector products.
//!
//! Every op in the crate is generic over [`Float`], so a tape of [`Dual64`] carries, next to each
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
//! There is no dual GEMM in `matrixmultiply`; [`Float::gemm`] runs three `dgemm`s on real and
//! tangent planes (`gemm.rs`), so a product costs about three `f64` products.

use std::cmp::Ordering;
use std::fmt;
use std::iter::Sum;
use std::num::FpCategory;
use std::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Rem, Sub, SubAssign};

use num_traits::{FromPrimitive, Num, NumCast, One, ToPrimitive, Zero};

use crate::float::{Accumulator, Float};

mod gemm;
use gemm::Layout;

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

/// `fn name(self) -> Self` for smooth functions: `f64`'s value, derivative from `(x, y)`.
macro_rules! smooth {
    ($($name:ident: |$x:ident, $y:ident| $d:expr;)*) => {$(
        #[allow(unused_variables)]
        fn $name(self) -> Self {
            let $x = self.re;
            let $y = $x.$name();
            self.chain($y, || $d)
        }
    )*};
}

/// `fn name(self) -> Self` for piecewise-constant functions: derivative 0.
macro_rules! steps {
    ($($name:ident)*) => {$(
        fn $name(self) -> Self {
            Dual64::constant(self.re.$name())
        }
    )*};
}

/// Constants and classification straight from `f64`.
macro_rules! from_f64 {
    (consts: $($c:ident)*; tests: $($t:ident)*) => {
        $(fn $c() -> Self { Dual64::constant(<f64 as num_traits::Float>::$c()) })*
        $(fn $t(self) -> bool { self.re.$t() })*
    };
}

impl num_traits::Float for Dual64 {
    from_f64! {
        consts: nan infinity neg_infinity neg_zero min_value min_positive_value epsilon max_value;
        tests: is_nan is_infinite is_finite is_normal is_subnormal is_sign_positive is_sign_negative
    }

    fn classify(self) -> FpCategory {
        self.re.classify()
    }

    steps! { floor ceil round trunc signum }

    smooth! {
        fract: |x, y| 1.0;
        recip: |x, y| -y * y;
        sqrt: |x, y| 0.5 / y;
        cbrt: |x, y| 1.0 / (3.0 * y * y);
        exp: |x, y| y;
        exp2: |x, y| y * std::f64::consts::LN_2;
        exp_m1: |x, y| y + 1.0;
        ln: |x, y| 1.0 / x;
        ln_1p: |x, y| 1.0 / (1.0 + x);
        log2: |x, y| 1.0 / (x * std::f64::consts::LN_2);
        log10: |x, y| 1.0 / (x * std::f64::consts::LN_10);
        sin: |x, y| x.cos();
        cos: |x, y| -x.sin();
        tan: |x, y| 1.0 + y * y;
        asin: |x, y| 1.0 / (1.0 - x * x).sqrt();
        acos: |x, y| -1.0 / (1.0 - x * x).sqrt();
        atan: |x, y| 1.0 / (1.0 + x * x);
        sinh: |x, y| x.cosh();
        cosh: |x, y| x.sinh();
        tanh: |x, y| 1.0 - y * y;
        asinh: |x, y| 1.0 / (x * x + 1.0).sqrt();
        acosh: |x, y| 1.0 / (x * x - 1.0).sqrt();
        atanh: |x, y| 1.0 / (1.0 - x * x);
        to_degrees: |x, y| 180.0 / std::f64::consts::PI;
        to_radians: |x, y| std::f64::consts::PI / 180.0;
    }

    /// The branch taken: `x` for x > 0, `-x` for x < 0, and derivative 0 at 0 (the crate's
    /// `abs'(0) = 0`).
    fn abs(self) -> Self {
        match self.re.partial_cmp(&0.0) {
            Some(Ordering::Greater) => self,
            Some(Ordering::Less) => -self,
            _ => Dual64::constant(self.re.abs()),
        }
    }

    fn mul_add(self, a: Self, b: Self) -> Self {
        Dual64::new(
            self.re.mul_add(a.re, b.re),
            self.re * a.eps + self.eps * a.re + b.eps,
        )
    }

    fn powi(self, n: i32) -> Self {
        self.chain(self.re.powi(n), || match n {
            0 => 0.0,
            _ => n as f64 * self.re.powi(n - 1),
        })
    }

    /// x^p with both sides dual: d = p x^(p-1) dx + x^p ln(x) dp (a zero tangent adds nothing).
    fn powf(self, p: Self) -> Self {
        let y = self.re.powf(p.re);
        let from_base = self.chain(y, || p.re * self.re.powf(p.re - 1.0)).eps;
        let from_exponent = p.chain(y, || y * self.re.ln()).eps;
        Dual64::new(y, from_base + from_exponent)
    }

    /// ln(x) / ln(base), both dual.
    fn log(self, base: Self) -> Self {
        self.ln() / base.ln()
    }

    /// `f64::max` on the real parts (a NaN loses); ties keep `self`.
    fn max(self, other: Self) -> Self {
        if other.re.is_nan() || self.re >= other.re {
            self
        } else {
            other
        }
    }

    /// `f64::min` on the real parts (a NaN loses); ties keep `self`.
    fn min(self, other: Self) -> Self {
        if other.re.is_nan() || self.re <= other.re {
            self
        } else {
            other
        }
    }

    #[allow(deprecated)]
    fn abs_sub(self, other: Self) -> Self {
        if self.re > other.re {
            self - other
        } else {
            Dual64::zero()
        }
    }

    fn hypot(self, other: Self) -> Self {
        let h = self.re.hypot(other.re);
        let eps = if h == 0.0 {
            0.0
        } else {
            (self.re * self.eps + other.re * other.eps) / h
        };
        Dual64::new(h, eps)
    }

    /// atan2(y = self, x = other): d = (x dy - y dx) / (x² + y²).
    fn atan2(self, other: Self) -> Self {
        let (y, x) = (self.re, other.re);
        let r2 = x * x + y * y;
        let eps = if r2 == 0.0 {
            0.0
        } else {
            (x * self.eps - y * other.eps) / r2
        };
        Dual64::new(y.atan2(x), eps)
    }

    fn sin_cos(self) -> (Self, Self) {
        (self.sin(), self.cos())
    }

    fn integer_decode(self) -> (u64, i16, i8) {
        num_traits::Float::integer_decode(self.re)
    }
}

impl Accumulator for Dual64 {
    fn c(x: f64) -> Self {
        Dual64::constant(x)
    }
}

impl Float for Dual64 {
    const DTYPE: &'static str = "dual64";
    type Acc = Dual64;

    fn c(x: f64) -> Self {
        Dual64::constant(x)
    }

    /// The real part (the tangent is dropped).
    fn f64(self) -> f64 {
        self.re
    }

    fn acc(self) -> Dual64 {
        self
    }

    fn from_acc(a: Dual64) -> Self {
        a
    }

    /// `C <- alpha A B + beta C` by three `dgemm`s on real and tangent planes (see [`gemm`]).
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
    ) {
        let layout = Layout::new;
        // SAFETY: the caller's pointers and strides describe these matrices (the contract).
        unsafe {
            gemm::dual_gemm(
                alpha,
                (a, layout(m, k, rsa, csa)),
                (b, layout(k, n, rsb, csb)),
                beta,
                (c, layout(m, n, rsc, csc)),
            )
        }
    }
}
