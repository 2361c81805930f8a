//! The documented gradient conventions at non-differentiable points (see the module docs of
//! `src/ops/elementwise.rs` and `src/ops/reduce.rs`). Central differences are meaningless there,
//! so each convention is asserted exactly.

use ndarray::array;
use sparsegrad::tape::{Tape, Tensor, Var};

/// d/dx sum(op(x)) at `x`, by backward.
fn grad_of(x: Tensor<f64>, op: impl for<'t> Fn(Var<'t, f64>) -> Var<'t, f64>) -> Tensor<f64> {
    let tape = Tape::<f64>::new();
    let v = tape.leaf(x);
    let grads = op(v).sum().backward();
    grads
        .wrt(v)
        .expect("the output depends on the leaf")
        .clone()
}

#[test]
fn relu_gradient_at_zero_is_zero() {
    let g = grad_of(array![0.0, -0.0, 1.5, -1.5].into_dyn(), |v| v.relu());
    assert_eq!(g, array![0.0, 0.0, 1.0, 0.0].into_dyn());
}

#[test]
fn abs_gradient_at_zero_is_zero() {
    let g = grad_of(array![0.0, -0.0, 2.0, -2.0].into_dyn(), |v| v.abs());
    assert_eq!(g, array![0.0, 0.0, 1.0, -1.0].into_dyn());
}

#[test]
fn sign_gradient_is_zero_everywhere() {
    let x = array![0.0, 3.0, -3.0, 1e-300].into_dyn();
    let tape = Tape::<f64>::new();
    let v = tape.leaf(x);
    let y = v.sign();
    assert_eq!(*y.value(), array![0.0, 1.0, -1.0, 1.0].into_dyn());
    // Mixed with a differentiable path, so a missing gradient cannot pass as a zero one.
    let grads = (y + v).sum().backward();
    assert_eq!(
        grads.wrt(v).unwrap(),
        &array![1.0, 1.0, 1.0, 1.0].into_dyn()
    );
    let g = grad_of(array![0.0, 3.0, -3.0].into_dyn(), |v| v.sign());
    assert_eq!(g, array![0.0, 0.0, 0.0].into_dyn());
}

#[test]
fn leaky_relu_gradient_at_zero_is_the_slope() {
    let g = grad_of(array![0.0, 1.0, -1.0].into_dyn(), |v| v.leaky_relu(0.1));
    assert_eq!(g, array![0.1, 1.0, 0.1].into_dyn());
}

#[test]
fn clamp_gradient_is_one_at_exactly_lo_and_hi() {
    let (lo, hi) = (-0.5, 2.0);
    let g = grad_of(array![lo, hi, lo - 0.25, hi + 0.25, 1.0].into_dyn(), |v| {
        v.clamp(lo, hi)
    });
    assert_eq!(g, array![1.0, 1.0, 0.0, 0.0, 1.0].into_dyn());
    let g = grad_of(array![-1.0, 1.0, -1.5, 1.5].into_dyn(), |v| v.hardtanh());
    assert_eq!(g, array![1.0, 1.0, 0.0, 0.0].into_dyn());
}

#[test]
fn maximum_tie_sends_the_gradient_to_the_first_operand() {
    let tape = Tape::<f64>::new();
    let a = tape.leaf(array![1.0, 2.0, 5.0].into_dyn());
    let b = tape.leaf(array![1.0, 3.0, 4.0].into_dyn());
    let grads = a.maximum(b).sum().backward();
    assert_eq!(grads.wrt(a).unwrap(), &array![1.0, 0.0, 1.0].into_dyn());
    assert_eq!(grads.wrt(b).unwrap(), &array![0.0, 1.0, 0.0].into_dyn());

    // Broadcast: a scalar-like [1] operand tying two elements collects both tie gradients.
    let tape = Tape::<f64>::new();
    let a = tape.leaf(array![2.0].into_dyn());
    let b = tape.leaf(array![2.0, 1.0, 2.0, 3.0].into_dyn());
    let grads = a.maximum(b).sum().backward();
    assert_eq!(grads.wrt(a).unwrap(), &array![3.0].into_dyn());
    assert_eq!(
        grads.wrt(b).unwrap(),
        &array![0.0, 0.0, 0.0, 1.0].into_dyn()
    );
}

#[test]
fn max_axis_tie_sends_the_gradient_to_the_first_maximal_element() {
    // Ties in rows 1 and 2 and in columns 0 and 2; the overall maximum 4 appears three times.
    let x = array![[3.0, 1.0, 4.0], [2.0, 2.0, 0.0], [3.0, 4.0, 4.0]].into_dyn();
    let g = grad_of(x.clone(), |v| v.max_axis(1, false));
    assert_eq!(
        g,
        array![[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]].into_dyn()
    );
    let g = grad_of(x.clone(), |v| v.max_axis(0, true));
    assert_eq!(
        g,
        array![[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]].into_dyn()
    );
    // Over all elements: the first maximum in row-major order.
    let g = grad_of(x, |v| v.max());
    assert_eq!(
        g,
        array![[0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]].into_dyn()
    );
}
