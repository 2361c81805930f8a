//! Property-based gradient checks of the reductions (`src/ops/reduce.rs`): random shapes, random
//! axes, keepdim both ways; max reductions on tie-free values. Forward values are checked against
//! an independent scatter-style reference.

use crate::common::{assert_close, assert_grad, distinct_tensor, forward};
use ndarray::{ArrayD, Axis, Dimension, IxDyn};
use proptest::prelude::*;
use sparsegrad::check::strategies::{shape, tensor};
use sparsegrad::tape::Tensor;

/// Folds every element of `x` into its lane's slot (the reduced axes collapsed to index 0), then
/// drops the reduced axes unless `keepdim`.
fn reduce_ref(
    x: &Tensor<f64>,
    axes: &[usize],
    keepdim: bool,
    init: f64,
    fold: impl Fn(f64, f64) -> f64,
) -> Tensor<f64> {
    let kept: Vec<usize> = (0..x.ndim())
        .map(|a| if axes.contains(&a) { 1 } else { x.shape()[a] })
        .collect();
    let mut out = ArrayD::from_elem(IxDyn(&kept), init);
    for (idx, &v) in x.indexed_iter() {
        let mut o = idx.slice().to_vec();
        for &a in axes {
            o[a] = 0;
        }
        let slot = &mut out[IxDyn(&o)];
        *slot = fold(*slot, v);
    }
    if keepdim {
        return out;
    }
    let dropped: Vec<usize> = (0..x.ndim())
        .filter(|a| !axes.contains(a))
        .map(|a| x.shape()[a])
        .collect();
    out.into_shape_with_order(IxDyn(&dropped))
        .expect("same size")
}

/// ln sum exp along `axis`, kept as length 1 (naive: the test values are small).
fn lse_ref(x: &Tensor<f64>, axis: usize) -> Tensor<f64> {
    reduce_ref(&x.mapv(f64::exp), &[axis], true, 0.0, |s, v| s + v).mapv(f64::ln)
}

/// A random tensor in [lo, hi), a random subset of its axes and a keepdim flag.
fn tensor_axes(lo: f64, hi: f64) -> impl Strategy<Value = (Tensor<f64>, Vec<usize>, bool)> {
    shape(4, 4).prop_flat_map(move |s| {
        let rank = s.len();
        (
            tensor(s, lo, hi),
            proptest::collection::vec(any::<bool>(), rank),
            any::<bool>(),
        )
            .prop_map(|(x, pick, keepdim)| {
                let axes = (0..pick.len()).filter(|&a| pick[a]).collect();
                (x, axes, keepdim)
            })
    })
}

/// A tensor with one random axis of it and a keepdim flag.
fn with_axis(x: Tensor<f64>) -> impl Strategy<Value = (Tensor<f64>, usize, bool)> {
    let rank = x.ndim();
    (Just(x), 0..rank, any::<bool>())
}

proptest! {
    #![proptest_config(crate::common::proptest_config())]

    #[test]
    fn grad_sum(x in crate::common::any_tensor(-3.0, 3.0)) {
        let y = forward(|v| v[0].sum(), std::slice::from_ref(&x));
        assert_close(&y, &reduce_ref(&x, &(0..x.ndim()).collect::<Vec<_>>(), false, 0.0, |s, v| s + v));
        assert_grad(|v| v[0].sum(), &[x]);
    }

    #[test]
    fn grad_sum_axes((x, axes, keepdim) in tensor_axes(-3.0, 3.0)) {
        let y = forward(|v| v[0].sum_axes(&axes, keepdim), std::slice::from_ref(&x));
        assert_close(&y, &reduce_ref(&x, &axes, keepdim, 0.0, |s, v| s + v));
        assert_grad(|v| v[0].sum_axes(&axes, keepdim), &[x]);
    }

    #[test]
    fn grad_mean(x in crate::common::any_tensor(-3.0, 3.0)) {
        let y = forward(|v| v[0].mean(), std::slice::from_ref(&x));
        assert_close(&y, &ndarray::arr0(x.sum() / x.len() as f64).into_dyn());
        assert_grad(|v| v[0].mean(), &[x]);
    }

    #[test]
    fn grad_mean_axes((x, axes, keepdim) in tensor_axes(-3.0, 3.0)) {
        let count: usize = axes.iter().map(|&a| x.shape()[a]).product();
        let y = forward(|v| v[0].mean_axes(&axes, keepdim), std::slice::from_ref(&x));
        let expected = reduce_ref(&x, &axes, keepdim, 0.0, |s, v| s + v) / count as f64;
        assert_close(&y, &expected);
        assert_grad(|v| v[0].mean_axes(&axes, keepdim), &[x]);
    }

    #[test]
    fn grad_max_axis((x, axis, keepdim) in distinct_tensor().prop_flat_map(with_axis)) {
        let y = forward(|v| v[0].max_axis(axis, keepdim), std::slice::from_ref(&x));
        assert_close(&y, &reduce_ref(&x, &[axis], keepdim, f64::NEG_INFINITY, f64::max));
        assert_grad(|v| v[0].max_axis(axis, keepdim), &[x]);
    }

    #[test]
    fn grad_max(x in distinct_tensor()) {
        let y = forward(|v| v[0].max(), std::slice::from_ref(&x));
        assert_close(&y, &ndarray::arr0(x.fold(f64::NEG_INFINITY, |m, &v| m.max(v))).into_dyn());
        assert_grad(|v| v[0].max(), &[x]);
    }

    #[test]
    fn grad_logsumexp(
        (x, axis, keepdim) in crate::common::any_tensor(-5.0, 5.0).prop_flat_map(with_axis)
    ) {
        let y = forward(|v| v[0].logsumexp(axis, keepdim), std::slice::from_ref(&x));
        let mut expected = lse_ref(&x, axis);
        if !keepdim {
            expected = expected.remove_axis(Axis(axis));
        }
        assert_close(&y, &expected);
        assert_grad(|v| v[0].logsumexp(axis, keepdim), &[x]);
    }

    #[test]
    fn grad_softmax((x, axis, _) in crate::common::any_tensor(-5.0, 5.0).prop_flat_map(with_axis)) {
        let y = forward(|v| v[0].softmax(axis), std::slice::from_ref(&x));
        assert_close(&y, &(&x - &lse_ref(&x, axis)).mapv(f64::exp));
        assert_grad(|v| v[0].softmax(axis), &[x]);
    }

    #[test]
    fn grad_log_softmax((x, axis, _) in crate::common::any_tensor(-5.0, 5.0).prop_flat_map(with_axis)) {
        let y = forward(|v| v[0].log_softmax(axis), std::slice::from_ref(&x));
        assert_close(&y, &(&x - &lse_ref(&x, axis)));
        assert_grad(|v| v[0].log_softmax(axis), &[x]);
    }

    /// Sum and mean over any axes (and over none) of a column-major value, followed by an
    /// elementwise op so the gradient reaching the reduction is column-major too.
    #[test]
    fn grad_sum_and_mean_axes_of_column_major_values(
        (x, axes, keepdim) in tensor_axes(-1.0, 1.0)
    ) {
        check_column_major(&crate::common::column_major(&x), &axes, keepdim);
        check_column_major(&crate::common::column_major(&x), &[], keepdim);
    }
}

fn check_column_major(x: &Tensor<f64>, axes: &[usize], keepdim: bool) {
    let count: usize = axes.iter().map(|&a| x.shape()[a]).product();
    let sums = reduce_ref(x, axes, keepdim, 0.0, |s, v| s + v);
    let inputs = std::slice::from_ref(x);
    let y = forward(|v| v[0].sum_axes(axes, keepdim).exp(), inputs);
    assert_close(&y, &sums.mapv(f64::exp));
    let y = forward(|v| v[0].mean_axes(axes, keepdim).exp(), inputs);
    assert_close(&y, &(sums / count as f64).mapv(f64::exp));
    assert_grad(|v| v[0].sum_axes(axes, keepdim).exp(), inputs);
    assert_grad(|v| v[0].mean_axes(axes, keepdim).exp(), inputs);
}

/// Regression: reducing over no axes kept a column-major value's layout, which the keepdim
/// reshape and the backward's reshape rejected ("same size" / "reduction gradient" panics).
#[test]
fn reducing_over_no_axes_accepts_column_major_values() {
    let x = ArrayD::from_shape_fn(IxDyn(&[2, 3, 2]), |i| {
        0.1 * (i[0] + 2 * i[1] + 3 * i[2]) as f64
    });
    let x = crate::common::column_major(&x);
    assert!(!x.is_standard_layout());
    for keepdim in [false, true] {
        check_column_major(&x, &[], keepdim);
    }
}

#[test]
fn logsumexp_of_infinite_rows_is_infinite_not_nan() {
    // Row 0 all -inf (a fully masked row), row 1 holds +inf, row 2 is finite.
    let inf = f64::INFINITY;
    let x = ndarray::array![[-inf, -inf, -inf], [0.0, inf, 1.0], [0.0, 0.0, 0.0]].into_dyn();
    let y = forward(|v| v[0].logsumexp(1, false), std::slice::from_ref(&x));
    assert_eq!(y[[0]], -inf);
    assert_eq!(y[[1]], inf);
    assert!((y[[2]] - 3f64.ln()).abs() < 1e-15);
}
