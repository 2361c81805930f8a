//! Property-based gradient checks of every elementwise op (`src/ops/elementwise.rs`): random
//! shapes (binary ops on broadcast-compatible pairs), values sampled away from kinks, f64. Each
//! test also checks the forward value against the scalar formula, so a consistent but wrong
//! forward/backward pair cannot pass. Kink conventions are tested in `tests/kinks.rs`.

use crate::common::{assert_close, assert_grad, broadcast_map, broadcast_tensors, forward};
use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;
use sparsegrad::check::strategies::{broadcast_pair, shape, tensor, tensor_away_from};
use sparsegrad::tape::{Tensor, Var};

/// Forward against `reference` elementwise, then the gradient.
fn check_unary(
    x: &Tensor<f64>,
    op: impl for<'t> Fn(Var<'t, f64>) -> Var<'t, f64>,
    reference: impl Fn(f64) -> f64,
) {
    let inputs = [x.clone()];
    assert_close(&forward(|v| op(v[0]), &inputs), &x.mapv(reference));
    assert_grad(|v| op(v[0]), &inputs);
}

/// Forward against `reference` under broadcasting, then the gradient to both operands.
fn check_binary(
    a: &Tensor<f64>,
    b: &Tensor<f64>,
    op: impl for<'t> Fn(Var<'t, f64>, Var<'t, f64>) -> Var<'t, f64>,
    reference: impl Fn(f64, f64) -> f64,
) {
    let inputs = [a.clone(), b.clone()];
    assert_close(
        &forward(|v| op(v[0], v[1]), &inputs),
        &broadcast_map(a, b, reference),
    );
    assert_grad(|v| op(v[0], v[1]), &inputs);
}

/// A random-shaped tensor in `[lo, hi)` kept `margin` away from each of `kinks`.
fn away(lo: f64, hi: f64, kinks: Vec<f64>, margin: f64) -> impl Strategy<Value = Tensor<f64>> {
    shape(4, 4).prop_flat_map(move |s| tensor_away_from(s, lo, hi, kinks.clone(), margin))
}

/// Values `0.1 k + offset + noise` (k integer in [-20, 20), noise in [0, 0.01)): two tensors
/// built with offsets 0 and 0.05 are at least 0.04 apart everywhere, whatever broadcasts with what.
pub(crate) fn grid_tensor(shape: Vec<usize>, offset: f64) -> impl Strategy<Value = Tensor<f64>> {
    let n: usize = shape.iter().product();
    proptest::collection::vec((-20i32..20, 0.0..0.01), n).prop_map(move |v| {
        let values = v
            .into_iter()
            .map(|(k, e)| 0.1 * f64::from(k) + offset + e)
            .collect();
        ArrayD::from_shape_vec(IxDyn(&shape), values).expect("size matches")
    })
}

proptest! {
    #![proptest_config(crate::common::proptest_config())]

    #[test]
    fn grad_add((a, b) in broadcast_tensors((-3.0, 3.0), (-3.0, 3.0))) {
        check_binary(&a, &b, |a, b| a + b, |a, b| a + b);
    }

    #[test]
    fn grad_sub((a, b) in broadcast_tensors((-3.0, 3.0), (-3.0, 3.0))) {
        check_binary(&a, &b, |a, b| a - b, |a, b| a - b);
    }

    #[test]
    fn grad_mul((a, b) in broadcast_tensors((-3.0, 3.0), (-3.0, 3.0))) {
        check_binary(&a, &b, |a, b| a * b, |a, b| a * b);
    }

    #[test]
    fn grad_div(
        (a, b) in broadcast_pair(4, 4).prop_flat_map(|(sa, sb)| {
            (tensor(sa, -3.0, 3.0), tensor_away_from(sb, -3.0, 3.0, vec![0.0], 0.25))
        })
    ) {
        check_binary(&a, &b, |a, b| a / b, |a, b| a / b);
    }

    #[test]
    fn grad_pow((a, b) in broadcast_tensors((0.2, 3.0), (-2.0, 2.5))) {
        check_binary(&a, &b, |a, b| a.pow(b), f64::powf);
    }

    #[test]
    fn grad_maximum(
        (a, b, swap) in broadcast_pair(4, 4).prop_flat_map(|(sa, sb)| {
            (grid_tensor(sa, 0.0), grid_tensor(sb, 0.05), any::<bool>())
        })
    ) {
        // Either operand may hold the shifted grid; no element of one ever ties one of the other.
        let (a, b) = if swap { (b, a) } else { (a, b) };
        check_binary(&a, &b, |a, b| a.maximum(b), f64::max);
    }

    #[test]
    fn grad_neg(x in crate::common::any_tensor(-3.0, 3.0)) {
        check_unary(&x, |v| -v, |x| -x);
    }

    #[test]
    fn grad_add_scalar(x in crate::common::any_tensor(-3.0, 3.0), c in -5.0..5.0f64) {
        check_unary(&x, |v| v.add_scalar(c), |x| x + c);
    }

    #[test]
    fn grad_mul_scalar(x in crate::common::any_tensor(-3.0, 3.0), c in -5.0..5.0f64) {
        check_unary(&x, |v| v.mul_scalar(c), |x| x * c);
    }

    #[test]
    fn grad_exp(x in crate::common::any_tensor(-3.0, 3.0)) {
        check_unary(&x, |v| v.exp(), f64::exp);
    }

    #[test]
    fn grad_ln(x in crate::common::any_tensor(0.2, 3.0)) {
        check_unary(&x, |v| v.ln(), f64::ln);
    }

    #[test]
    fn grad_sqrt(x in crate::common::any_tensor(0.2, 3.0)) {
        check_unary(&x, |v| v.sqrt(), f64::sqrt);
    }

    #[test]
    fn grad_powf(x in crate::common::any_tensor(0.2, 3.0), p in -2.5..3.5f64) {
        check_unary(&x, |v| v.powf(p), |x| x.powf(p));
    }

    #[test]
    fn grad_abs(x in away(-3.0, 3.0, vec![0.0], 0.05)) {
        check_unary(&x, |v| v.abs(), f64::abs);
    }

    #[test]
    fn grad_sign(x in away(-3.0, 3.0, vec![0.0], 0.05)) {
        check_unary(&x, |v| v.sign(), f64::signum);
    }

    #[test]
    fn grad_relu(x in away(-3.0, 3.0, vec![0.0], 0.05)) {
        check_unary(&x, |v| v.relu(), |x| x.max(0.0));
    }

    #[test]
    fn grad_leaky_relu(x in away(-3.0, 3.0, vec![0.0], 0.05), slope in 0.0..0.5f64) {
        check_unary(&x, |v| v.leaky_relu(slope), |x| if x > 0.0 { x } else { slope * x });
    }

    #[test]
    fn grad_sigmoid(x in crate::common::any_tensor(-8.0, 8.0)) {
        check_unary(&x, |v| v.sigmoid(), |x| 1.0 / (1.0 + (-x).exp()));
    }

    #[test]
    fn grad_tanh(x in crate::common::any_tensor(-4.0, 4.0)) {
        check_unary(&x, |v| v.tanh(), f64::tanh);
    }

    #[test]
    fn grad_softplus(x in crate::common::any_tensor(-8.0, 8.0)) {
        check_unary(&x, |v| v.softplus(), |x| x.exp().ln_1p());
    }

    #[test]
    fn grad_clamp(
        (x, lo, hi) in (shape(4, 4), -2.0..0.5f64, 0.2..3.0f64).prop_flat_map(|(s, lo, width)| {
            let hi = lo + width;
            (tensor_away_from(s, -4.0, 4.0, vec![lo, hi], 0.05), Just(lo), Just(hi))
        })
    ) {
        check_unary(&x, |v| v.clamp(lo, hi), |x| x.clamp(lo, hi));
    }

    #[test]
    fn grad_hardtanh(x in away(-3.0, 3.0, vec![-1.0, 1.0], 0.05)) {
        check_unary(&x, |v| v.hardtanh(), |x| x.clamp(-1.0, 1.0));
    }
}
