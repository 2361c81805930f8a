//! Sparsity primitives (`src/ops/sparsity.rs`), the thresholds: `soft_threshold` (STR) and
//! `sign_mask` (FCPTS): property-based gradient checks (f64, random shapes, values kept away from
//! kinks), forward values against independent formulas, the surrogate gradients against the
//! derivatives of the smooth functions they stand for, and one test per kink convention. The
//! rows of `docs/gradients.md` ("Sparsity primitives") name these; `sparsity_rate` is tested in
//! `sparsity_ops_rate.rs` and the hard concrete (L0) ops in `sparsity_ops_l0.rs`.

use std::sync::Arc;

use ndarray::{ArrayD, IxDyn, Zip, array};
use proptest::prelude::*;
use sparsegrad::check::strategies::{away_from, shape, tensor};
use sparsegrad::ops::sparsity::{Surrogate, ThresholdFn};
use sparsegrad::rng::{seeded, uniform};
use sparsegrad::sparsity::Granularity;
use sparsegrad::tape::{Tape, Tensor, Var};

use crate::common::{
    assert_close_tol, assert_grad, close, derivative, forward, proptest_config, scalar, sigmoid,
};

fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

// ---------------------------------------------------------------------------------------------
// soft_threshold

/// The three threshold functions under test; Custom is g(s) = s^2 + 0.1 (not monotone).
fn threshold_fns() -> Vec<(ThresholdFn, f64, f64)> {
    vec![
        (ThresholdFn::Sigmoid, -1.5, 1.5),
        (ThresholdFn::Exp, -1.5, 0.5),
        (ThresholdFn::custom(|s| s * s + 0.1, |s| 2.0 * s), -1.5, 1.5),
    ]
}

/// A weight of random shape with a threshold of the given granularity, every |w| at least 0.02
/// away from its threshold g(s) (the kink).
fn soft_threshold_case(
    granularity: Granularity,
    g: ThresholdFn,
    s_range: (f64, f64),
) -> impl Strategy<Value = (Tensor<f64>, Tensor<f64>)> {
    shape(4, 4)
        .prop_flat_map(move |sh| {
            let s_shape = granularity.shape(&sh);
            (tensor(sh, -2.0, 2.0), tensor(s_shape, s_range.0, s_range.1))
        })
        .prop_map(move |(w, s)| {
            let thr = s.mapv(|s| g.value(s));
            let thr = thr.broadcast(w.raw_dim()).unwrap();
            let w = Zip::from(&w)
                .and(&thr)
                .map_collect(|&w, &t| sign(w) * away_from(w.abs(), &[t], 0.02));
            (w, s)
        })
}

fn soft_threshold_reference(w: &Tensor<f64>, s: &Tensor<f64>, g: &ThresholdFn) -> Tensor<f64> {
    let thr = s.mapv(|s| g.value(s));
    Zip::from(w)
        .and(&thr.broadcast(w.raw_dim()).unwrap())
        .map_collect(|&w, &t| sign(w) * (w.abs() - t).max(0.0))
}

fn check_soft_threshold(case: usize, w: &Tensor<f64>, s: &Tensor<f64>) {
    let g = threshold_fns()[case].0.clone();
    let inputs = [w.clone(), s.clone()];
    assert_close_tol(
        &forward(|v| v[0].soft_threshold(v[1], &g), &inputs),
        &soft_threshold_reference(w, s, &g),
        1e-12,
    );
    assert_grad(|v| v[0].soft_threshold(v[1], &g), &inputs);
}

macro_rules! soft_threshold_props {
    ($($name:ident: $gran:expr, $case:expr;)*) => {
        proptest! {
            #![proptest_config(proptest_config())]
            $(
                #[test]
                fn $name((w, s) in {
                    let (g, lo, hi) = threshold_fns()[$case].clone();
                    soft_threshold_case($gran, g, (lo, hi))
                }) {
                    check_soft_threshold($case, &w, &s);
                }
            )*
        }
    };
}

soft_threshold_props! {
    grad_soft_threshold_per_layer_sigmoid: Granularity::Layer, 0;
    grad_soft_threshold_per_channel_sigmoid: Granularity::Channel, 0;
    grad_soft_threshold_per_weight_sigmoid: Granularity::Weight, 0;
    grad_soft_threshold_per_layer_exp: Granularity::Layer, 1;
    grad_soft_threshold_per_channel_exp: Granularity::Channel, 1;
    grad_soft_threshold_per_weight_custom: Granularity::Weight, 2;
    grad_soft_threshold_per_channel_custom: Granularity::Channel, 2;
}

fn shared_first<'t>(v: &[Var<'t, f64>]) -> Var<'t, f64> {
    v[0].soft_threshold(v[2], &ThresholdFn::Sigmoid).sum()
}

fn shared_second<'t>(v: &[Var<'t, f64>]) -> Var<'t, f64> {
    v[1].soft_threshold(v[2], &ThresholdFn::Sigmoid)
        .mul_scalar(0.7)
        .sum()
}

/// Two layers' weights (v[0], v[1]) thresholded by one global s (v[2]).
fn shared_both<'t>(v: &[Var<'t, f64>]) -> Var<'t, f64> {
    shared_first(v) + shared_second(v)
}

proptest! {
    #![proptest_config(proptest_config())]

    /// One global s used by two layers: the tape sums both uses' gradients.
    #[test]
    fn grad_soft_threshold_global_shared(
        (w1, s) in soft_threshold_case(Granularity::Layer, ThresholdFn::Sigmoid, (-1.5, 1.5)),
        w2 in shape(3, 4).prop_flat_map(|sh| tensor(sh, -2.0, 2.0)),
    ) {
        let thr = sigmoid(*s.iter().next().unwrap());
        let w2 = w2.mapv(|w| sign(w) * away_from(w.abs(), &[thr], 0.02));
        let inputs = [w1.clone(), w2.clone(), s.clone()];
        assert_grad(shared_both, &inputs);
        // And the shared gradient is exactly the sum of the two single-use gradients.
        let grad_s = |f: for<'t> fn(&[Var<'t, f64>]) -> Var<'t, f64>| {
            let tape = Tape::<f64>::new();
            let vars: Vec<_> = inputs.iter().map(|x| tape.leaf(x.clone())).collect();
            let s_var = vars[2];
            f(&vars).backward().wrt(s_var).unwrap().clone()
        };
        let total = grad_s(shared_both);
        let first = grad_s(shared_first);
        let second = grad_s(shared_second);
        assert_close_tol(&total, &(first + second), 1e-12);
    }
}

/// Convention: at |w| = g(s) the indicator 1[|w| > g(s)] is 0, so both gradients vanish there.
#[test]
fn soft_threshold_kink_gradient_is_zero() {
    let tape = Tape::<f64>::new();
    // s = 0: g(s) = sigmoid(0) = 0.5 exactly; g'(0) = 0.25.
    let w = tape.leaf(array![0.5, -0.5, 0.7, -0.9, 0.2, 0.0].into_dyn());
    let s = tape.leaf(ArrayD::zeros(IxDyn(&[])));
    let y = w.soft_threshold(s, &ThresholdFn::Sigmoid);
    assert_close_tol(
        &y.value(),
        &array![0.0, 0.0, 0.2, -0.4, 0.0, 0.0].into_dyn(),
        1e-15,
    );
    let grads = y.sum().backward();
    assert_eq!(
        grads.wrt(w).unwrap(),
        &array![0.0, 0.0, 1.0, 1.0, 0.0, 0.0].into_dyn()
    );
    // Only 0.7 and -0.9 are alive: -0.25 * (1 + (-1)) = 0.
    assert_eq!(grads.wrt(s).unwrap()[[]], 0.0);
    let tape = Tape::<f64>::new();
    let w = tape.leaf(array![0.5, 0.7].into_dyn());
    let s = tape.leaf(ArrayD::zeros(IxDyn(&[])));
    let grads = w.soft_threshold(s, &ThresholdFn::Sigmoid).sum().backward();
    assert_eq!(grads.wrt(s).unwrap()[[]], -0.25, "only 0.7 contributes");
}

// ---------------------------------------------------------------------------------------------
// sign_mask

/// A random weight and a scalar threshold in [0.1, 1], |w| at least `margin` from each of
/// t + `offsets`.
fn sign_mask_case(offsets: Vec<f64>, margin: f64) -> impl Strategy<Value = (Tensor<f64>, f64)> {
    (
        shape(4, 4).prop_flat_map(|sh| tensor(sh, -3.0, 3.0)),
        0.1..1.0f64,
    )
        .prop_map(move |(w, t)| {
            let kinks: Vec<f64> = offsets.iter().map(|o| t + o).collect();
            (w.mapv(|w| sign(w) * away_from(w.abs(), &kinks, margin)), t)
        })
}

fn sign_mask_t_gradient(w: &Tensor<f64>, t: f64, c: &Tensor<f64>, surrogate: Surrogate) -> f64 {
    let tape = Tape::<f64>::new();
    let (wv, tv) = (tape.leaf(w.clone()), tape.leaf(scalar(t)));
    let loss = (wv.sign_mask(tv, surrogate) * tape.constant(c.clone())).sum();
    loss.backward().wrt(tv).unwrap()[[]]
}

proptest! {
    #![proptest_config(proptest_config())]

    /// Forward is the exact hard mask (eq. 1 with sgn(0) = -1), and the w-gradient (t fixed) is
    /// the mask, which is the true derivative away from |w| = t.
    #[test]
    fn grad_sign_mask_weight((w, t) in sign_mask_case(vec![0.0], 0.01)) {
        let y = forward(|v| v[0].sign_mask(v[0].tape().constant(scalar(t)), Surrogate::ClippedIdentity), std::slice::from_ref(&w));
        assert_close_tol(&y, &w.mapv(|w| if w.abs() > t { w } else { 0.0 }), 0.0);
        assert_grad(
            |v| v[0].sign_mask(v[0].tape().constant(scalar(t)), Surrogate::Sigmoid { temperature: 0.1 }),
            &[w],
        );
    }

    /// The sigmoid surrogate's t-gradient equals the derivative of the smooth function it stands
    /// for: d/dt sum_i c_i sigmoid((|w_i| - t) / T) w_i.
    #[test]
    fn sign_mask_sigmoid_surrogate_is_derivative_of_smooth_mask(
        (w, t) in sign_mask_case(vec![], 0.0),
        temperature in 0.05..2.0f64,
        seed in 0u64..1000,
    ) {
        let mut rng = seeded(seed);
        let c = w.mapv(|_| uniform(&mut rng, -1.0, 1.0));
        let smooth = |t: f64| {
            Zip::from(&w).and(&c).fold(0.0, |acc, &w, &c| acc + c * sigmoid((w.abs() - t) / temperature) * w)
        };
        let analytic = sign_mask_t_gradient(&w, t, &c, Surrogate::Sigmoid { temperature });
        let numeric = derivative(smooth, t, 1e-6);
        prop_assert!(close(analytic, numeric, 1e-6), "analytic {analytic} vs numeric {numeric}");
    }

    /// The clipped-identity surrogate's t-gradient equals the derivative of
    /// sum_i c_i (0.5 hardtanh(|w_i| - t) + 0.5) w_i, away from its kinks at |w| - t = +-1.
    #[test]
    fn sign_mask_clipped_identity_is_derivative_of_hardtanh_mask(
        (w, t) in sign_mask_case(vec![-1.0, 1.0], 0.01),
        seed in 0u64..1000,
    ) {
        let mut rng = seeded(seed);
        let c = w.mapv(|_| uniform(&mut rng, -1.0, 1.0));
        let smooth = |t: f64| {
            Zip::from(&w).and(&c).fold(0.0, |acc, &w, &c| {
                acc + c * (0.5 * (w.abs() - t).clamp(-1.0, 1.0) + 0.5) * w
            })
        };
        let analytic = sign_mask_t_gradient(&w, t, &c, Surrogate::ClippedIdentity);
        let numeric = derivative(smooth, t, 1e-6);
        prop_assert!(close(analytic, numeric, 1e-6), "analytic {analytic} vs numeric {numeric}");
    }
}

/// Convention: |w| = t is pruned (sgn(0) = -1 in eq. 1), and its w-gradient is 0.
#[test]
fn sign_mask_prunes_weights_at_the_threshold() {
    let tape = Tape::<f64>::new();
    let w = tape.leaf(array![0.25, -0.25, 0.3, -0.1].into_dyn());
    let t = tape.leaf(scalar(0.25));
    let y = w.sign_mask(t, Surrogate::ClippedIdentity);
    assert_eq!(*y.value(), array![0.0, 0.0, 0.3, 0.0].into_dyn());
    let grads = y.sum().backward();
    assert_eq!(
        grads.wrt(w).unwrap(),
        &array![0.0, 0.0, 1.0, 0.0].into_dyn()
    );
    // Clipped identity: every |x| < 1, so dL/dt = -0.5 sum w = -0.5 * 0.2.
    assert!((grads.wrt(t).unwrap()[[]] + 0.1).abs() < 1e-15);
}

// ---------------------------------------------------------------------------------------------
// mask_prezeroed

/// A tensor and a 0/1 mask of its shape (zeros +0.0, as `Mask` stores them).
fn weight_and_mask() -> impl Strategy<Value = (Tensor<f64>, Tensor<f64>)> {
    (shape(4, 5), any::<u64>()).prop_flat_map(|(dims, seed)| {
        tensor(dims.clone(), -2.0, 2.0).prop_map(move |w| {
            let mut rng = seeded(seed);
            let mask = w.mapv(|_| f64::from(uniform(&mut rng, 0.0, 1.0) < 0.6));
            (w, mask)
        })
    })
}

/// `w` with the entries `mask` prunes set to +0.0: the state the optimiser keeps a masked raw
/// weight in, and the only input `mask_prezeroed` is defined for.
fn zeroed(w: &Tensor<f64>, mask: &Tensor<f64>) -> Tensor<f64> {
    Zip::from(w)
        .and(mask)
        .map_collect(|&w, &m| if m == 0.0 { 0.0 } else { w })
}

proptest! {
    #![proptest_config(proptest_config())]

    /// Checked through `W -> (W * m).mask_prezeroed(m)`, so every perturbed input of the op is
    /// still zero where m is 0 (its domain); the composition's derivative is m ⊙ m ⊙ g = m ⊙ g.
    /// The forward on a zeroed weight is that weight exactly.
    #[test]
    fn grad_mask_prezeroed((w, mask) in weight_and_mask()) {
        let m = Arc::new(mask.clone());
        let y = forward(|v| v[0].mask_prezeroed(m.clone()), &[zeroed(&w, &mask)]);
        prop_assert_eq!(&y, &zeroed(&w, &mask));
        assert_grad(
            |v| (v[0] * v[0].tape().constant(mask.clone())).mask_prezeroed(m.clone()),
            &[w],
        );
    }

    /// On a zeroed weight, value and gradient have the bits of `w * m` (f32, as trained).
    #[test]
    fn mask_prezeroed_has_the_bits_of_mul((w, mask) in weight_and_mask(), seed in any::<u64>()) {
        let (w, mask) = (zeroed(&w, &mask).mapv(|v| v as f32), mask.mapv(|v| v as f32));
        let mut rng = seeded(seed);
        let upstream = w.mapv(|_| uniform(&mut rng, -1.0, 1.0) as f32);
        let run = |prezeroed: bool| {
            let tape = Tape::<f32>::new();
            let leaf = tape.leaf(w.clone());
            let y = if prezeroed {
                leaf.mask_prezeroed(Arc::new(mask.clone()))
            } else {
                leaf * tape.constant(mask.clone())
            };
            let value = (*y.value()).clone();
            let grads = (y * tape.constant(upstream.clone())).sum().backward();
            let bits = |t: &Tensor<f32>| t.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            (bits(&value), bits(grads.wrt(leaf).expect("gradient")))
        };
        prop_assert_eq!(run(true), run(false));
    }
}
