//! Elementwise ops. Two helpers do the work once: [`unary`] (forward map and derivative from
//! `(x, y)`) and [`binary`] (numpy broadcasting, partial derivatives from `(a, b, y)`); every op
//! below is one line of math on top of them.
//!
//! Conventions at kinks (each has its own test in `tests/kinks.rs`): relu'(0) = 0, abs'(0) = 0,
//! sign' = 0 everywhere, leaky_relu'(0) = slope, clamp passes the gradient on the closed interval
//! [lo, hi] (PyTorch `clamp`), max(a, b) sends the gradient to `a` on ties.

use std::sync::Arc;

use ndarray::{IxDyn, Zip};

use crate::float::{Float, sigmoid};
use crate::kernels::parallel::{map_collect, map_slices, product, update_slices};
use crate::tape::{Tensor, Var, broadcast_shape};

/// Records `y = f(x)` elementwise with derivative `dy/dx = df(x, y)`.
/// Contiguous operands take [`map_slices`] (one vectorised loop), others ndarray's `Zip`: the
/// same expression per element, so the same bits either way.
pub fn unary<'t, F: Float>(
    op: &'static str,
    a: Var<'t, F>,
    f: impl Fn(F) -> F + Copy + Sync + Send,
    df: impl Fn(F, F) -> F + Copy + Sync + Send + 'static,
) -> Var<'t, F> {
    let x = a.value();
    let y = Arc::new(match x.as_slice() {
        Some(xs) => shaped(&x, map_slices([xs], |[x]| f(x))),
        None => map_collect!(|&x| f(x); &*x),
    });
    let y_saved = y.clone();
    a.tape().record_owned(op, y, &[a], move |mut g, _| {
        let gradient = move |g: F, [x, y]: [F; 2]| g * df(x, y);
        // Written over the upstream gradient, which this op owns.
        if let (Some(gs), Some(xs), Some(ys)) = (g.as_slice_mut(), x.as_slice(), y_saved.as_slice())
        {
            update_slices(gs, [xs, ys], gradient);
            return vec![Some(g)];
        }
        vec![Some(
            map_collect!(|&g, &x, &y| gradient(g, [x, y]); &g, &*x, &*y_saved),
        )]
    })
}

/// `values` in `like`'s shape.
fn shaped<F: Float>(like: &Tensor<F>, values: Vec<F>) -> Tensor<F> {
    Tensor::from_shape_vec(like.raw_dim(), values).expect("one value per element")
}

/// `g * other` (same shape) written over `g`, a gradient the backward owns (`record_owned`): the
/// vectorised slice loop when both are contiguous. The backward of `mul` and of
/// `Var::mask_prezeroed`.
pub(crate) fn times_into<F: Float>(mut g: Tensor<F>, other: &Tensor<F>) -> Tensor<F> {
    match (g.as_slice_mut(), other.as_slice()) {
        (Some(gs), Some(os)) => update_slices(gs, [os], |g, [o]| g * o),
        _ => Zip::from(&mut g).and(other).for_each(|g, &o| *g *= o),
    }
    g
}

/// Records `y = f(a, b)` elementwise with numpy broadcasting and partial derivatives
/// `dy/da = da(a, b, y)`, `dy/db = db(a, b, y)`; the engine reduces broadcast gradients.
pub fn binary<'t, F: Float>(
    op: &'static str,
    a: Var<'t, F>,
    b: Var<'t, F>,
    f: impl Fn(F, F) -> F + Sync + Send,
    da: impl Fn(F, F, F) -> F + Sync + Send + 'static,
    db: impl Fn(F, F, F) -> F + Sync + Send + 'static,
) -> Var<'t, F> {
    let (av, bv) = (a.value(), b.value());
    let shape = IxDyn(&broadcast_shape(op, av.shape(), bv.shape()));
    let y = {
        let (ab, bb) = (
            av.broadcast(shape.clone()).unwrap(),
            bv.broadcast(shape.clone()).unwrap(),
        );
        Arc::new(map_collect!(|&x, &z| f(x, z); &ab, &bb))
    };
    let y_saved = y.clone();
    a.tape().record(op, y, &[a, b], move |g, needs| {
        let (ab, bb) = (
            av.broadcast(shape.clone()).unwrap(),
            bv.broadcast(shape).unwrap(),
        );
        // Generic, not `&dyn Fn`: the derivative is inlined into the loop (no call per element).
        fn partial<F: Float>(
            g: &Tensor<F>,
            a: &ndarray::ArrayViewD<'_, F>,
            b: &ndarray::ArrayViewD<'_, F>,
            y: &Tensor<F>,
            d: &(impl Fn(F, F, F) -> F + Sync),
        ) -> Tensor<F> {
            map_collect!(|&g, &a, &b, &y| g * d(a, b, y); g, a, b, y)
        }
        vec![
            needs[0].then(|| partial(g, &ab, &bb, &y_saved, &da)),
            needs[1].then(|| partial(g, &ab, &bb, &y_saved, &db)),
        ]
    })
}

#[allow(clippy::should_implement_trait)]
impl<'t, F: Float> Var<'t, F> {
    pub fn add(self, b: Self) -> Self {
        binary(
            "add",
            self,
            b,
            |a, b| a + b,
            |_, _, _| F::one(),
            |_, _, _| F::one(),
        )
    }

    pub fn sub(self, b: Self) -> Self {
        binary(
            "sub",
            self,
            b,
            |a, b| a - b,
            |_, _, _| F::one(),
            |_, _, _| -F::one(),
        )
    }

    /// a * b. Operands of one shape, both contiguous (a masked weight `raw * mask`, a gated
    /// weight): [`product`] loops, and a backward that reads only g and the other operand, where
    /// the broadcasting path zips g, a, b and y (a 15% slower masked LeNet-300 step). Same bits.
    pub fn mul(self, b: Self) -> Self {
        let (av, bv) = (self.value(), b.value());
        if av.shape() != bv.shape() || av.as_slice().is_none() || bv.as_slice().is_none() {
            return binary("mul", self, b, |a, b| a * b, |_, b, _| b, |a, _, _| a);
        }
        let times = |g: &Tensor<F>, other: &Tensor<F>| match (g.as_slice(), other.as_slice()) {
            (Some(gs), Some(os)) => shaped(g, product(gs, os)),
            _ => map_collect!(|&g, &o| g * o; g, other),
        };
        let y = times(&av, &bv);
        self.tape()
            .record_owned("mul", y, &[self, b], move |g, needs| match *needs {
                [true, true] => {
                    let db = times(&g, &av);
                    vec![Some(times_into(g, &bv)), Some(db)]
                }
                [true, false] => vec![Some(times_into(g, &bv)), None],
                [false, true] => vec![None, Some(times_into(g, &av))],
                _ => vec![None, None],
            })
    }

    /// a / b; d/db = -a / b^2 = -y / b.
    pub fn div(self, b: Self) -> Self {
        binary(
            "div",
            self,
            b,
            |a, b| a / b,
            |_, b, _| F::one() / b,
            |_, b, y| -y / b,
        )
    }

    /// a^b elementwise for a > 0; d/da = b a^(b-1), d/db = y ln a.
    pub fn pow(self, b: Self) -> Self {
        binary(
            "pow",
            self,
            b,
            |a, b| a.powf(b),
            |a, b, _| b * a.powf(b - F::one()),
            |a, _, y| y * a.ln(),
        )
    }

    /// Elementwise maximum; on ties the gradient goes to `self`.
    pub fn maximum(self, b: Self) -> Self {
        let ge = |a: F, b: F| if a >= b { F::one() } else { F::zero() };
        binary(
            "maximum",
            self,
            b,
            |a, b| if a >= b { a } else { b },
            move |a, b, _| ge(a, b),
            move |a, b, _| F::one() - ge(a, b),
        )
    }

    pub fn neg(self) -> Self {
        unary("neg", self, |x| -x, |_, _| -F::one())
    }

    pub fn add_scalar(self, c: f64) -> Self {
        let c = F::c(c);
        unary("add_scalar", self, move |x| x + c, |_, _| F::one())
    }

    pub fn mul_scalar(self, c: f64) -> Self {
        let c = F::c(c);
        unary("mul_scalar", self, move |x| x * c, move |_, _| c)
    }

    pub fn exp(self) -> Self {
        unary("exp", self, |x| x.exp(), |_, y| y)
    }

    pub fn ln(self) -> Self {
        unary("ln", self, |x| x.ln(), |x, _| F::one() / x)
    }

    /// d/dx sqrt(x) = 1 / (2 y).
    pub fn sqrt(self) -> Self {
        unary("sqrt", self, |x| x.sqrt(), |_, y| F::c(0.5) / y)
    }

    /// x^p for a constant exponent; d/dx = p x^(p-1).
    pub fn powf(self, p: f64) -> Self {
        let p = F::c(p);
        unary(
            "powf",
            self,
            move |x| x.powf(p),
            move |x, _| p * x.powf(p - F::one()),
        )
    }

    /// |x|, with abs'(0) = 0.
    pub fn abs(self) -> Self {
        unary("abs", self, |x| x.abs(), |x, _| sign_scalar(x))
    }

    /// sign(x) in {-1, 0, 1}; its gradient is 0 everywhere (use a straight-through op to pass one).
    pub fn sign(self) -> Self {
        unary("sign", self, sign_scalar, |_, _| F::zero())
    }

    /// max(x, 0), with relu'(0) = 0.
    pub fn relu(self) -> Self {
        unary(
            "relu",
            self,
            |x| x.max(F::zero()),
            |x, _| if x > F::zero() { F::one() } else { F::zero() },
        )
    }

    /// `relu(self + b)` (numpy broadcasting) in one op, as a residual block ends: the same values
    /// and gradients as `(self + b).relu()` bit for bit (relu'(0) = 0), without storing the sum.
    /// The gated gradient `g 1[y > 0]` (`y > 0` exactly when the sum is) is computed once and
    /// given to both inputs; the engine reduces it to a broadcast input's shape.
    pub fn add_relu(self, b: Self) -> Self {
        const OP: &str = "add_relu";
        let (av, bv) = (self.value(), b.value());
        let shape = IxDyn(&broadcast_shape(OP, av.shape(), bv.shape()));
        let (ab, bb) = (
            av.broadcast(shape.clone()).unwrap(),
            bv.broadcast(shape).unwrap(),
        );
        let y = Arc::new(map_collect!(|&a, &b| (a + b).max(F::zero()); &ab, &bb));
        let y_saved = y.clone();
        self.tape().record(OP, y, &[self, b], move |g, needs| {
            // Times one or zero, as relu's backward, so that the bits are the composition's.
            let gate = |y: F| if y > F::zero() { F::one() } else { F::zero() };
            let gated = map_collect!(|&g, &y| g * gate(y); g, &*y_saved);
            match (needs[0], needs[1]) {
                (true, true) => vec![Some(gated.clone()), Some(gated)],
                (true, false) => vec![Some(gated), None],
                (false, b_needs) => vec![None, b_needs.then_some(gated)],
            }
        })
    }

    /// x for x > 0, slope * x otherwise (derivative `slope` at 0, as PyTorch).
    pub fn leaky_relu(self, slope: f64) -> Self {
        let s = F::c(slope);
        unary(
            "leaky_relu",
            self,
            move |x| if x > F::zero() { x } else { s * x },
            move |x, _| if x > F::zero() { F::one() } else { s },
        )
    }

    /// 1 / (1 + e^-x); derivative y (1 - y).
    pub fn sigmoid(self) -> Self {
        unary("sigmoid", self, sigmoid, |_, y| y * (F::one() - y))
    }

    /// derivative 1 - y^2.
    pub fn tanh(self) -> Self {
        unary("tanh", self, |x| x.tanh(), |_, y| F::one() - y * y)
    }

    /// ln(1 + e^x), computed as max(x, 0) + ln(1 + e^-|x|) so it never overflows; derivative sigmoid(x).
    pub fn softplus(self) -> Self {
        unary(
            "softplus",
            self,
            |x| x.max(F::zero()) + (-x.abs()).exp().ln_1p(),
            |x, _| sigmoid(x),
        )
    }

    /// min(max(x, lo), hi); gradient 1 on the closed interval [lo, hi], 0 outside.
    pub fn clamp(self, lo: f64, hi: f64) -> Self {
        assert!(lo <= hi, "clamp: lo {lo} > hi {hi}");
        let (lo, hi) = (F::c(lo), F::c(hi));
        unary(
            "clamp",
            self,
            move |x| x.max(lo).min(hi),
            move |x, _| {
                if x >= lo && x <= hi {
                    F::one()
                } else {
                    F::zero()
                }
            },
        )
    }

    /// clamp(x, -1, 1).
    pub fn hardtanh(self) -> Self {
        self.clamp(-1.0, 1.0)
    }
}

/// sign(x) in {-1, 0, 1} (sign(0) = 0, unlike `f32::signum`).
pub fn sign_scalar<F: Float>(x: F) -> F {
    if x > F::zero() {
        F::one()
    } else if x < F::zero() {
        -F::one()
    } else {
        F::zero()
    }
}

macro_rules! operator {
    ($trait:ident, $method:ident) => {
        impl<'t, F: Float> std::ops::$trait for Var<'t, F> {
            type Output = Var<'t, F>;
            fn $method(self, rhs: Self) -> Self {
                Var::$method(self, rhs)
            }
        }
    };
}
operator!(Add, add);
operator!(Sub, sub);
operator!(Mul, mul);
operator!(Div, div);

impl<'t, F: Float> std::ops::Neg for Var<'t, F> {
    type Output = Var<'t, F>;
    fn neg(self) -> Self {
        Var::neg(self)
    }
}
