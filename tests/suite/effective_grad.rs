//! The one engine change the method plugins need: a method can ask the tape to keep the gradient
//! of an intermediate value, the *effective* weight of a layer (`Weight::retain_effective_grad`),
//! which for a masked weight is the dense gradient dL/d(W * m) that RigL grows by. Also: weight
//! transforms follow the model's train/eval mode, and `optim::step` projects their parameters.

use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;
use sparsegrad::check::{CheckOptions, gradcheck};
use sparsegrad::nn::{Linear, Module};
use sparsegrad::optim::{Sgd, SgdConfig, step};
use sparsegrad::rng::seeded;
use sparsegrad::sparsity::{GateAxis, HardConcreteGate, Mask};
use sparsegrad::tape::{Tape, Tensor, Var};

/// The loss of the tests: sum(tanh(x W_eff^T)).
fn loss_of<'t>(x: Var<'t, f64>, w_eff: Var<'t, f64>) -> Var<'t, f64> {
    x.matmul_nt(w_eff).tanh().sum()
}

/// A 0/1 mask with roughly `keep` of the entries kept, from uniform draws.
fn mask_from(draws: &Tensor<f64>, keep: f64) -> Tensor<f64> {
    draws.mapv(|u| if u < keep { 1.0 } else { 0.0 })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The kept gradient of the effective weight W * m equals the gradient of the same loss with
    /// respect to a free leaf V at V = W * m (checked against central differences by
    /// `gradcheck`), nonzero at pruned entries; the raw weight's gradient is its masked copy.
    #[test]
    fn effective_weight_gradient_is_the_dense_gradient_of_the_masked_product(
        (out, inp, n) in (1usize..5, 1usize..6, 1usize..4),
        seed in 0u64..1000,
        keep in 0.0f64..1.0,
    ) {
        let mut rng = seeded(seed);
        let mut layer = Linear::<f64>::new(inp, out, false, &mut rng);
        let draws = ArrayD::from_shape_simple_fn(IxDyn(&[out, inp]), || {
            sparsegrad::rng::uniform(&mut rng, 0.0, 1.0)
        });
        let mask = mask_from(&draws, keep);
        layer.weight.transform = Some(Box::new(Mask::from_tensor(mask.clone()).unwrap()));
        layer.weight.retain_effective_grad = true;
        let x = ArrayD::from_shape_simple_fn(IxDyn(&[n, inp]), || {
            sparsegrad::rng::uniform(&mut rng, -1.0, 1.0)
        });

        let tape = Tape::new();
        let w_eff = layer.weight.on(&tape);
        let grads = loss_of(tape.constant(x.clone()), w_eff).backward();
        let kept = layer.weight.effective_grad(&grads).expect("kept").clone();
        let raw = grads.of(&layer.weight.raw).expect("raw gradient").clone();

        let masked_value = layer.weight.effective();
        let report = gradcheck(
            |v| loss_of(v[0].tape().constant(x.clone()), v[0]),
            std::slice::from_ref(&masked_value),
            &CheckOptions::default(),
        )
        .unwrap();
        prop_assert!(report.compared > 0);
        let tape = Tape::new();
        let v = tape.leaf(masked_value);
        let dense = loss_of(tape.constant(x.clone()), v).backward().wrt(v).unwrap().clone();
        prop_assert_eq!(&kept, &dense);
        prop_assert_eq!(&raw, &(&dense * &mask));
    }
}

#[test]
fn nothing_is_kept_unless_asked() {
    let mut layer = Linear::<f64>::new(3, 2, false, &mut seeded(1));
    layer.weight.transform = Some(Box::new(Mask::<f64>::ones(&[2, 3])));
    let tape = Tape::new();
    let x = tape.constant(ArrayD::ones(IxDyn(&[1, 3])));
    let grads = loss_of(x, layer.weight.on(&tape)).backward();
    assert!(layer.weight.effective_grad(&grads).is_none());
}

#[test]
fn retained_values_keep_their_gradient_and_others_do_not() {
    let tape = Tape::<f64>::new();
    let a = tape.leaf(tensor_of(&[1.0, 2.0]));
    let b = a.mul_scalar(3.0);
    let c = b.tanh();
    tape.retain_grad(b);
    let grads = c.sum().backward();
    let db = grads.wrt(b).expect("retained");
    let expected: Vec<f64> = [3.0f64, 6.0]
        .iter()
        .map(|v| 1.0 - v.tanh().powi(2))
        .collect();
    assert_eq!(db.iter().copied().collect::<Vec<_>>(), expected);
    assert!(grads.wrt(c).is_none());
}

fn tensor_of(v: &[f64]) -> Tensor<f64> {
    ArrayD::from_shape_vec(IxDyn(&[v.len()]), v.to_vec()).unwrap()
}

/// `Module::set_training` reaches the L0 gates through their weight: sampled in training mode,
/// deterministic in evaluation mode; `is_training` reports the mode.
#[test]
fn weight_transforms_follow_the_model_mode() {
    let mut model = sparsegrad::models::LeNet300::<f64>::new(6, 3, &mut seeded(2));
    let mut i = 0;
    model.visit_weights_mut("", &mut |_, w| {
        let shape = w.raw.shape().to_vec();
        w.transform = Some(Box::new(HardConcreteGate::<f64>::new(
            &shape,
            GateAxis::Input,
            0.5,
            seeded(10 + i),
        )));
        i += 1;
    });
    let forward = |m: &mut sparsegrad::models::LeNet300<f64>| {
        let tape = Tape::new();
        (*m.forward(tape.constant(ArrayD::ones(IxDyn(&[1, 6]))))
            .value())
        .clone()
    };
    assert!(model.is_training());
    assert_ne!(
        forward(&mut model),
        forward(&mut model),
        "training gates are sampled"
    );
    model.set_training(false);
    assert!(!model.is_training());
    assert_eq!(
        forward(&mut model),
        forward(&mut model),
        "evaluation gates are fixed"
    );
    model.visit_weights("", &mut |_, w| {
        let gate = w.transform.as_ref().unwrap().as_any();
        assert!(
            !gate
                .downcast_ref::<HardConcreteGate<f64>>()
                .unwrap()
                .training()
        );
    });
}

/// `optim::step` clamps log_alpha into [ln 1e-2, ln 1e2] after the update (the authors'
/// `constrain_parameters`), through `WeightTransform::project`.
#[test]
fn an_optimiser_step_clamps_the_gate_parameters() {
    let mut layer = Linear::<f64>::new(4, 2, false, &mut seeded(3));
    layer.weight.transform = Some(Box::new(HardConcreteGate::<f64>::new(
        &[2, 4],
        GateAxis::Input,
        0.5,
        seeded(4),
    )));
    let mut opt = Sgd::new(SgdConfig {
        lr: 1e4,
        momentum: 0.0,
        weight_decay: 0.0,
        ..SgdConfig::default()
    });
    for _ in 0..3 {
        let tape = Tape::new();
        let x = tape.constant(ArrayD::from_elem(IxDyn(&[3, 4]), 1.0));
        let grads = layer.forward(x).sum().backward();
        step(&mut opt, &mut layer, &grads);
    }
    let (lo, hi) = sparsegrad::sparsity::hard_concrete_gate::log_alpha_range();
    let mut seen = 0;
    layer.visit("", &mut |name, p| {
        if name.ends_with("_log_alpha") {
            for &a in p.value() {
                assert!(a >= lo - 1e-12 && a <= hi + 1e-12, "{name}: {a}");
                seen += 1;
            }
        }
    });
    assert_eq!(seen, 4);
}
