//! The engine (`src/tape.rs`, `src/param.rs`, `src/grads.rs`, `src/check.rs`): accumulation,
//! broadcast reduction, no_grad, parameters, constants, consumption, memory release, seeded
//! backward, and a gradient checker that does fail on a wrong derivative.

use ndarray::{Array2, array};
use sparsegrad::check::{CheckMode, CheckOptions, gradcheck};
use sparsegrad::param::Param;
use sparsegrad::tape::{Tape, Tensor, Var};

#[test]
fn a_value_used_twice_accumulates_both_gradients() {
    let tape = Tape::<f64>::new();
    let x = tape.leaf(array![1.0, -2.0, 3.0].into_dyn());
    let grads = (x * x).sum().backward();
    assert_eq!(grads.wrt(x).unwrap(), &array![2.0, -4.0, 6.0].into_dyn());

    // Three uses through different paths: d/dx (x^2 + 3x) = 2x + 3.
    let tape = Tape::<f64>::new();
    let x = tape.leaf(array![1.0, -2.0, 3.0].into_dyn());
    let grads = (x * x + x.mul_scalar(2.0) + x).sum().backward();
    assert_eq!(grads.wrt(x).unwrap(), &array![5.0, -1.0, 9.0].into_dyn());
}

/// Elementwise backwards write their input's gradient over the upstream one they own
/// (`Tape::record_owned`): a retained gradient is the value before that overwrite, and a
/// value used twice still gets both contributions.
#[test]
fn a_retained_gradient_is_not_overwritten_by_an_in_place_backward() {
    let tape = Tape::<f64>::new();
    let x = tape.leaf(array![1.0, -2.0, 3.0, -0.5].into_dyn());
    let c = array![0.5, 7.0, -2.0, 4.0].into_dyn();
    let h = x.mul_scalar(3.0);
    tape.retain_grad(h);
    let y = h.relu();
    tape.retain_grad(y);
    // h used twice: through relu and directly.
    let loss = (y * tape.constant(c.clone())).sum() + h.sum();
    let grads = loss.backward();
    let gate = array![1.0, 0.0, 1.0, 0.0].into_dyn();
    assert_eq!(grads.wrt(y).unwrap(), &c);
    let dh = &c * &gate + 1.0;
    assert_eq!(grads.wrt(h).unwrap(), &dh);
    assert_eq!(grads.wrt(x).unwrap(), &(dh * 3.0));
}

#[test]
fn a_broadcast_operand_gets_the_gradient_summed_to_its_shape() {
    let tape = Tape::<f64>::new();
    let x = tape.leaf(Tensor::zeros(ndarray::IxDyn(&[4, 3])));
    let bias = tape.leaf(array![0.1, 0.2, 0.3].into_dyn());
    let row_bias = tape.leaf(array![[1.0], [2.0], [3.0], [4.0]].into_dyn());
    let weights = array![
        [1.0, 2.0, 3.0],
        [4.0, 5.0, 6.0],
        [7.0, 8.0, 9.0],
        [10.0, 11.0, 12.0]
    ]
    .into_dyn();
    let c = tape.constant(weights.clone());
    let grads = ((x + bias + row_bias) * c).sum().backward();
    assert_eq!(grads.wrt(x).unwrap(), &weights);
    // [3] added to [4, 3]: column sums. [4, 1]: row sums.
    assert_eq!(
        grads.wrt(bias).unwrap(),
        &array![22.0, 26.0, 30.0].into_dyn()
    );
    assert_eq!(
        grads.wrt(row_bias).unwrap(),
        &array![[6.0], [15.0], [24.0], [33.0]].into_dyn()
    );
}

#[test]
fn no_grad_records_no_gradient() {
    // Ops under the guard on a leaf made before it.
    let tape = Tape::<f64>::new();
    let x = tape.leaf(array![1.0, 2.0].into_dyn());
    assert!(x.requires_grad());
    let y = {
        let _guard = tape.no_grad();
        assert!(!tape.grad_enabled());
        (x * x).sum()
    };
    assert!(tape.grad_enabled());
    assert!(!y.requires_grad());
    assert_eq!(y.item(), 5.0);
    let grads = y.backward();
    assert!(grads.is_empty());
    assert!(grads.wrt(x).is_none());

    // A leaf made under the guard needs no gradient even after it is dropped; guards nest.
    let tape = Tape::<f64>::new();
    let (x, z) = {
        let _outer = tape.no_grad();
        let x = {
            let _inner = tape.no_grad();
            tape.leaf(array![1.0, 2.0].into_dyn())
        };
        assert!(!tape.grad_enabled(), "the outer guard is still alive");
        (x, tape.leaf(array![3.0, 4.0].into_dyn()))
    };
    let w = tape.leaf(array![5.0, 6.0].into_dyn());
    let grads = (x * w + z).sum().backward();
    assert!(grads.wrt(x).is_none());
    assert!(grads.wrt(z).is_none());
    assert_eq!(grads.wrt(w).unwrap(), &array![1.0, 2.0].into_dyn());
    assert_eq!(grads.len(), 1);
}

#[test]
fn a_param_used_twice_is_one_variable_with_one_summed_gradient() {
    let p = Param::new(array![1.0, 2.0, 3.0].into_dyn());
    let tape = Tape::<f64>::new();
    let w1 = tape.param(&p);
    let w2 = tape.param(&p);
    assert_eq!(w1.id(), w2.id());
    let grads = ((w1 * w2).sum() + w2.sum()).backward();
    // d/dw (w^2 + w) = 2w + 1, found both by parameter and by variable.
    assert_eq!(grads.of(&p).unwrap(), &array![3.0, 5.0, 7.0].into_dyn());
    assert_eq!(grads.wrt(w1).unwrap(), &array![3.0, 5.0, 7.0].into_dyn());
    assert_eq!(grads.len(), 1);
}

#[test]
fn frozen_params_and_buffers_get_no_gradient() {
    let mut frozen = Param::new(array![1.0, 2.0].into_dyn());
    frozen.set_trainable(false);
    let buffer = Param::buffer(array![10.0, 20.0].into_dyn());
    let trainable = Param::new(array![3.0, 4.0].into_dyn());
    let tape = Tape::<f64>::new();
    let (f, b, t) = (
        tape.param(&frozen),
        tape.param(&buffer),
        tape.param(&trainable),
    );
    assert!(!f.requires_grad() && !b.requires_grad() && t.requires_grad());
    let grads = (f * t + b * t).sum().backward();
    assert!(grads.of(&frozen).is_none());
    assert!(grads.of(&buffer).is_none());
    assert_eq!(
        grads.of(&trainable).unwrap(),
        &array![11.0, 22.0].into_dyn()
    );

    // Unfrozen, it gets one again.
    frozen.set_trainable(true);
    let tape = Tape::<f64>::new();
    let (f, t) = (tape.param(&frozen), tape.param(&trainable));
    let grads = (f * t).sum().backward();
    assert_eq!(grads.of(&frozen).unwrap(), &array![3.0, 4.0].into_dyn());
}

#[test]
fn constants_get_no_gradient() {
    let tape = Tape::<f64>::new();
    let x = tape.leaf(array![1.0, 2.0].into_dyn());
    let c = tape.constant(array![3.0, -4.0].into_dyn());
    let shared = tape.constant_shared(std::sync::Arc::new(array![0.5, 0.5].into_dyn()));
    assert!(!c.requires_grad() && !shared.requires_grad());
    let grads = (x * c * shared + c).sum().backward();
    assert!(grads.wrt(c).is_none());
    assert!(grads.wrt(shared).is_none());
    assert_eq!(grads.wrt(x).unwrap(), &array![1.5, -2.0].into_dyn());
    assert_eq!(grads.len(), 1);
}

#[test]
#[should_panic(expected = "is gone: its tape was consumed by backward()")]
fn backward_twice_panics() {
    let tape = Tape::<f64>::new();
    let x = tape.leaf(array![1.0, 2.0].into_dyn());
    let loss = (x * x).sum();
    let grads = loss.backward();
    assert_eq!(grads.len(), 1);
    loss.backward();
}

#[test]
#[should_panic(expected = "this tape was consumed by backward(); make a new Tape")]
fn recording_on_a_consumed_tape_panics() {
    let tape = Tape::<f64>::new();
    let x = tape.leaf(array![1.0, 2.0].into_dyn());
    let grads = x.sum().backward();
    assert_eq!(grads.len(), 1);
    tape.constant(array![3.0].into_dyn());
}

#[test]
#[should_panic(expected = "inputs come from different tapes")]
fn mixing_tapes_panics() {
    let (t1, t2) = (Tape::<f64>::new(), Tape::<f64>::new());
    let a = t1.leaf(array![1.0].into_dyn());
    let b = t2.leaf(array![2.0].into_dyn());
    let _ = a + b;
}

#[test]
#[should_panic(expected = "backward() needs a one-element value")]
fn backward_of_a_non_scalar_panics() {
    let tape = Tape::<f64>::new();
    let x = tape.leaf(array![1.0, 2.0].into_dyn());
    x.exp().backward();
}

#[test]
fn backward_empties_the_tape_and_hands_param_buffers_back() {
    let mut p = Param::new(Tensor::<f32>::from_elem(ndarray::IxDyn(&[64, 64]), 0.5));
    let original = p.value().as_ptr();
    for step in 0..3 {
        let tape = Tape::<f32>::new();
        let w = tape.param(&p);
        let x = tape.leaf(Tensor::from_elem(ndarray::IxDyn(&[64]), 1.0));
        let _unused = w.relu(); // recorded before the loss but off its path
        let loss = (w * x).exp().mean();
        let _after = w.tanh(); // recorded after the loss
        assert!(tape.len() >= 6);
        let grads = loss.backward();
        assert_eq!(
            tape.len(),
            0,
            "step {step}: backward left nodes on the tape"
        );
        assert!(tape.is_empty());
        let g = grads.of(&p).unwrap().clone();
        // No node still shares the buffer, so the in-place update does not copy it.
        let buffer = p.value_mut();
        assert_eq!(buffer.as_ptr(), original, "step {step}: value_mut copied");
        buffer.scaled_add(-0.1, &g);
    }

    // Control: while a tape still holds the value, value_mut must copy (else the check above
    // could not fail).
    let tape = Tape::<f32>::new();
    let _w = tape.param(&p);
    assert_ne!(p.value_mut().as_ptr(), original);
}

#[test]
fn backward_with_seed_is_the_vector_jacobian_product() {
    // y = W x with W [2, 3], x [3, 1]; for a seed u: dW = u x^T, dx = W^T u.
    let tape = Tape::<f64>::new();
    let w = tape.leaf(array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]].into_dyn());
    let x = tape.leaf(array![[1.0], [0.0], [-1.0]].into_dyn());
    let grads = w.matmul(x).backward_with(array![[1.0], [-2.0]].into_dyn());
    assert_eq!(
        grads.wrt(w).unwrap(),
        &array![[1.0, 0.0, -1.0], [-2.0, 0.0, 2.0]].into_dyn()
    );
    assert_eq!(
        grads.wrt(x).unwrap(),
        &array![[-7.0], [-8.0], [-9.0]].into_dyn()
    );

    // Elementwise: the seed scales each element's derivative, d exp = exp.
    let tape = Tape::<f64>::new();
    let v = array![0.0, 1.0, -1.0].into_dyn();
    let x = tape.leaf(v.clone());
    let seed = array![2.0, -1.0, 0.5].into_dyn();
    let grads = x.exp().backward_with(seed.clone());
    assert_eq!(grads.wrt(x).unwrap(), &(seed * v.mapv(f64::exp)));
}

#[test]
#[should_panic(expected = "seed shape differs")]
fn backward_with_a_misshapen_seed_panics() {
    let tape = Tape::<f64>::new();
    let x = tape.leaf(array![1.0, 2.0].into_dyn());
    x.exp().backward_with(array![1.0].into_dyn());
}

/// `a^2 * b` whose backward claims d/da = a b (the truth is 2 a b) when `wrong_a`, or
/// d/db = a (the truth is a^2) otherwise.
fn bad_op<'t>(a: Var<'t, f64>, b: Var<'t, f64>, wrong_a: bool) -> Var<'t, f64> {
    let (av, bv) = (a.value(), b.value());
    let y = &*av * &*av * &*bv;
    a.tape().record("bad", y, &[a, b], move |g, _| {
        let da = if wrong_a { 1.0 } else { 2.0 } * &*av * &*bv * g;
        let db = if wrong_a { &*av * &*av } else { (*av).clone() } * g;
        vec![Some(da), Some(db)]
    })
}

#[test]
fn gradcheck_fails_on_a_wrong_derivative_and_names_the_input() {
    let a = array![[0.5, -1.5], [2.0, 1.0]].into_dyn();
    let b = array![[1.5, 0.7], [-0.3, 2.0]].into_dyn();
    let inputs = [a, b];
    let opts = CheckOptions::default();

    let err = gradcheck(|v| bad_op(v[0], v[1], true), &inputs, &opts).unwrap_err();
    assert_eq!(err.mode, CheckMode::FullJacobian);
    assert_eq!(err.worst.input, 0);
    let message = err.to_string();
    assert!(message.contains("input 0"), "{message}");

    let err = gradcheck(|v| bad_op(v[0], v[1], false), &inputs, &opts).unwrap_err();
    assert_eq!(err.worst.input, 1);
    assert!(err.to_string().contains("input 1"), "{err}");

    // The right derivative passes the same check.
    let report = gradcheck(|v| v[0] * v[0] * v[1], &inputs, &opts).unwrap();
    assert!(report.worst_error_ratio < 1.0 && report.compared > 0);
}

#[test]
fn gradcheck_fails_in_projection_mode_too() {
    let a = Array2::from_shape_fn((150, 150), |(i, j)| 0.5 + ((i * 7 + j) % 13) as f64 / 13.0);
    let inputs = [a.clone().into_dyn(), a.t().to_owned().into_dyn()];
    let opts = CheckOptions::default();
    let err = gradcheck(|v| bad_op(v[0], v[1], true), &inputs, &opts).unwrap_err();
    assert_eq!(err.mode, CheckMode::Projection);
    assert!(err.to_string().contains("input 0"), "{err}");
    let report = gradcheck(|v| v[0] * v[0] * v[1], &inputs, &opts).unwrap();
    assert_eq!(report.mode, CheckMode::Projection);
}
