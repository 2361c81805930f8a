//! `Dual64` as a [`num_traits::Float`] (smooth functions with their derivatives, piecewise
//! functions differentiated on their piece) and as the crate's [`Float`], whose GEMM runs on
//! real and tangent planes ([`super::gemm`]). Split from `dual.rs` to keep each file short.

use std::cmp::Ordering;
use std::num::FpCategory;

use num_traits::Zero;

use super::Dual64;
use super::gemm::{self, Layout};
use crate::float::{Accumulator, Float};

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

    /// `C <- alpha A B + beta C` by three `dgemm`s on real and tangent planes (see the `gemm` submodule).
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
