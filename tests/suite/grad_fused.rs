//! The fused ops that end ResNet's and MobileNet's layers (`batch_norm_train_relu`, `add_relu`):
//! gradient checks (f64 central differences, property-based, away from the relu's kink), the
//! same values and gradients bit for bit as the compositions they replace (f32 and f64, random
//! shapes, broadcasting, negative upstream gradients), and relu'(0) = 0 at the kink itself.

use ndarray::{IxDyn, array};
use proptest::prelude::*;
use sparsegrad::check::strategies::broadcast_pair;
use sparsegrad::float::Float;
use sparsegrad::tape::{Tape, Tensor, Var};

use crate::common::{assert_grad, broadcast_tensors, proptest_config};
use crate::grad_elementwise::grid_tensor;
use crate::grad_norm::{norm_inputs, reference_train};

const EPS: f64 = 1e-5;

/// The value of `f(inputs)` and the gradient of `sum(f(inputs) * ramp)` with respect to every
/// input, the ramp giving each output element its own upstream gradient (negative ones too).
fn value_and_grads<F: Float>(
    inputs: &[Tensor<f64>],
    f: impl for<'t> Fn(&[Var<'t, F>]) -> Var<'t, F>,
) -> Vec<Tensor<F>> {
    let tape = Tape::<F>::new();
    let vars: Vec<Var<'_, F>> = inputs.iter().map(|x| tape.leaf(x.mapv(F::c))).collect();
    let y = f(&vars);
    let value = (*y.value()).clone();
    let ramp = Tensor::from_shape_vec(
        value.raw_dim(),
        (0..value.len())
            .map(|i| F::c(0.37 * i as f64 - 1.3))
            .collect(),
    )
    .expect("one weight per element");
    let grads = (y * tape.constant(ramp)).sum().backward();
    let mut out = vec![value];
    out.extend(
        vars.iter()
            .map(|&v| grads.wrt(v).expect("every input is used").clone()),
    );
    out
}

/// Bit patterns, so that `-0.0` and `0.0` differ and NaNs compare.
fn bits<F: Float>(tensors: &[Tensor<F>]) -> Vec<Vec<u64>> {
    tensors
        .iter()
        .map(|t| t.iter().map(|v| v.f64().to_bits()).collect())
        .collect()
}

/// The fused op against the composition, in f32 and f64: the same bits.
fn assert_same_bits(
    inputs: &[Tensor<f64>],
    fused: impl for<'t> Fn(&[Var<'t, f64>]) -> Var<'t, f64>,
    fused32: impl for<'t> Fn(&[Var<'t, f32>]) -> Var<'t, f32>,
    composed: impl for<'t> Fn(&[Var<'t, f64>]) -> Var<'t, f64>,
    composed32: impl for<'t> Fn(&[Var<'t, f32>]) -> Var<'t, f32>,
) {
    assert_eq!(
        bits(&value_and_grads(inputs, fused)),
        bits(&value_and_grads(inputs, composed)),
        "f64"
    );
    assert_eq!(
        bits(&value_and_grads(inputs, fused32)),
        bits(&value_and_grads(inputs, composed32)),
        "f32"
    );
}

/// `relu(batch_norm_train(x))` with or without affine parameters (the last two inputs).
fn bn_relu<'t, F: Float>(v: &[Var<'t, F>], fused: bool) -> Var<'t, F> {
    let (gamma, beta) = (v.get(1).copied(), v.get(2).copied());
    if fused {
        v[0].batch_norm_train_relu(gamma, beta, EPS).0
    } else {
        v[0].batch_norm_train(gamma, beta, EPS).0.relu()
    }
}

proptest! {
    #![proptest_config(proptest_config())]

    /// Central differences through the batch statistics, where no normalised value is within
    /// 1e-3 of the kink (there the difference quotient straddles it).
    #[test]
    fn grad_batch_norm_train_relu((x, gamma, beta) in norm_inputs(), affine in any::<bool>()) {
        let pre = reference_train(&x, &gamma, &beta, affine);
        prop_assume!(pre.iter().all(|p| p.abs() > 1e-3));
        let inputs = if affine { vec![x, gamma, beta] } else { vec![x] };
        let tape = Tape::<f64>::new();
        let leaves: Vec<_> = inputs.iter().map(|t| tape.leaf(t.clone())).collect();
        let y = bn_relu(&leaves, true);
        for (&yi, &p) in y.value().iter().zip(&pre) {
            prop_assert!((yi - p.max(0.0)).abs() <= 1e-10 * (1.0 + p.abs()), "{yi} against relu({p})");
        }
        assert_grad(|v| bn_relu(v, true), &inputs);
    }

    #[test]
    fn batch_norm_train_relu_is_the_composition_bit_for_bit(
        (x, gamma, beta) in norm_inputs(),
        affine in any::<bool>(),
    ) {
        let inputs = if affine { vec![x, gamma, beta] } else { vec![x] };
        assert_same_bits(
            &inputs,
            |v| bn_relu(v, true),
            |v| bn_relu(v, true),
            |v| bn_relu(v, false),
            |v| bn_relu(v, false),
        );
    }

    /// Grids offset by 0 and 0.05 (see `grid_tensor`): the sum is at least 0.03 from the kink.
    #[test]
    fn grad_add_relu(
        (a, b) in broadcast_pair(4, 4).prop_flat_map(|(sa, sb)| (grid_tensor(sa, 0.0), grid_tensor(sb, 0.05)))
    ) {
        let expected = crate::common::broadcast_map(&a, &b, |a, b| (a + b).max(0.0));
        crate::common::assert_close(&crate::common::forward(|v| v[0].add_relu(v[1]), &[a.clone(), b.clone()]), &expected);
        assert_grad(|v| v[0].add_relu(v[1]), &[a, b]);
    }

    #[test]
    fn add_relu_is_the_composition_bit_for_bit((a, b) in broadcast_tensors((-2.0, 2.0), (-2.0, 2.0))) {
        assert_same_bits(
            &[a, b],
            |v| v[0].add_relu(v[1]),
            |v| v[0].add_relu(v[1]),
            |v| (v[0] + v[1]).relu(),
            |v| (v[0] + v[1]).relu(),
        );
    }
}

/// relu'(0) = 0: where `a + b` is exactly 0 (either sign of zero), neither input gets gradient.
#[test]
fn add_relu_gradient_at_zero_is_zero() {
    let (a, b) = (array![1.5, -0.0, 2.0, -1.0], array![-1.5, 0.0, -1.0, 0.5]);
    let out = value_and_grads::<f64>(&[a.into_dyn(), b.into_dyn()], |v| v[0].add_relu(v[1]));
    let ramp = array![-1.3, -0.93, -0.56, -0.19];
    let expected_grad = array![0.0, 0.0, ramp[2], 0.0].into_dyn();
    assert_eq!(out[0], array![0.0, 0.0, 1.0, 0.0].into_dyn());
    assert_eq!(out[1], expected_grad);
    assert_eq!(out[2], expected_grad);
}

/// relu'(0) = 0: a channel `[-1, 0, 1]` normalises its middle value to exactly 0, which then
/// passes no gradient: the fused op's dx is the normalisation's dx for the upstream gradient
/// `ramp * [0, 0, 1]`, not `ramp * [0, 1, 1]` (what relu'(0) = 1 would give).
#[test]
fn batch_norm_train_relu_gradient_at_zero_is_zero() {
    let inputs = [array![[-1.0], [0.0], [1.0]].into_dyn()];
    let fused = value_and_grads::<f64>(&inputs, |v| bn_relu(v, true));
    assert_eq!(
        fused[0],
        array![[0.0], [0.0], [1.0 / (1.0f64 * 2.0 / 3.0 + EPS).sqrt()]].into_dyn()
    );
    let normalised_times = |keep: [f64; 3]| {
        let keep = Tensor::from_shape_vec(IxDyn(&[3, 1]), keep.to_vec()).expect("3 x 1");
        value_and_grads::<f64>(&inputs, move |v| {
            v[0].batch_norm_train(None, None, EPS).0 * v[0].tape().constant(keep.clone())
        })
    };
    assert_eq!(
        bits(&fused[1..]),
        bits(&normalised_times([0.0, 0.0, 1.0])[1..])
    );
    assert_ne!(
        bits(&fused[1..]),
        bits(&normalised_times([0.0, 1.0, 1.0])[1..])
    );
    assert_eq!(
        bits(&fused),
        bits(&value_and_grads::<f64>(&inputs, |v| bn_relu(v, false)))
    );
}
