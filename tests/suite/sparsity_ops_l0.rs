//! The hard concrete (L0) ops (`src/ops/hard_concrete.rs`): `hard_concrete`, `hard_concrete_eval`,
//! `l0_penalty` and `open_probability`, gradient-checked (f64, pre-clamp values kept away from
//! the clamp's kinks) with forward values against the formulas; golden values from the method
//! notes, the penalty against a sampled open fraction, saturated gates and broadcast noise. Rows
//! of `docs/gradients.md` ("Sparsity primitives").

use ndarray::{ArrayD, IxDyn, Zip, array};
use proptest::prelude::*;
use sparsegrad::check::strategies::{away_from, shape, tensor};
use sparsegrad::ops::sparsity::HardConcrete;
use sparsegrad::rng::{seeded, uniform};
use sparsegrad::tape::{Tape, Tensor, broadcast_shape};

use crate::common::{
    assert_close_tol, assert_grad, close, forward, proptest_config, scalar, sigmoid,
};

/// log_alpha in [-3, 3] and noise u chosen so that every pre-clamp value lies in
/// [-0.08, 1.08] at least 0.02 away from the clamp's kinks at 0 and 1.
fn hard_concrete_case() -> impl Strategy<Value = (Tensor<f64>, Tensor<f64>)> {
    shape(3, 4)
        .prop_flat_map(|sh| (tensor(sh.clone(), -3.0, 3.0), tensor(sh, -0.08, 1.08)))
        .prop_map(|(log_alpha, pre)| {
            let hc = HardConcrete::default();
            let u = Zip::from(&log_alpha).and(&pre).map_collect(|&la, &p| {
                let p = away_from(p, &[0.0, 1.0], 0.02);
                let s = (p - hc.gamma) / (hc.zeta - hc.gamma);
                sigmoid(hc.beta * (s / (1.0 - s)).ln() - la)
            });
            (log_alpha, u)
        })
}

fn hard_concrete_reference(log_alpha: f64, u: f64, hc: &HardConcrete) -> f64 {
    let s = sigmoid(((u / (1.0 - u)).ln() + log_alpha) / hc.beta);
    (s * (hc.zeta - hc.gamma) + hc.gamma).clamp(0.0, 1.0)
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn grad_hard_concrete_sample((log_alpha, u) in hard_concrete_case()) {
        let hc = HardConcrete::default();
        let z = forward(|v| v[0].hard_concrete(&u, &hc), std::slice::from_ref(&log_alpha));
        let expected = Zip::from(&log_alpha).and(&u).map_collect(|&la, &u| hard_concrete_reference(la, u, &hc));
        assert_close_tol(&z, &expected, 1e-12);
        assert_grad(|v| v[0].hard_concrete(&u, &hc), &[log_alpha]);
    }

    /// Test-time gate, log_alpha in [-2.2, 2.2]: sigmoid(log_alpha) 1.2 - 0.1 stays inside (0, 1).
    #[test]
    fn grad_hard_concrete_eval(log_alpha in shape(3, 4).prop_flat_map(|sh| tensor(sh, -2.2, 2.2))) {
        let hc = HardConcrete::default();
        let z = forward(|v| v[0].hard_concrete_eval(&hc), std::slice::from_ref(&log_alpha));
        assert_close_tol(&z, &log_alpha.mapv(|a| (sigmoid(a) * 1.2 - 0.1).clamp(0.0, 1.0)), 1e-12);
        assert_grad(|v| v[0].hard_concrete_eval(&hc), &[log_alpha]);
    }

    #[test]
    fn grad_l0_penalty(log_alpha in shape(3, 4).prop_flat_map(|sh| tensor(sh, -6.0, 6.0))) {
        let hc = HardConcrete::default();
        let p = forward(|v| v[0].l0_penalty(&hc), std::slice::from_ref(&log_alpha));
        let expected: f64 = log_alpha.iter().map(|&a| sigmoid(a - (2.0 / 3.0) * (0.1f64 / 1.1).ln())).sum();
        prop_assert!(close(p[[]], expected, 1e-12));
        assert_grad(|v| v[0].l0_penalty(&hc), &[log_alpha]);
    }

    /// Per-gate open probabilities (the weights of the L0 method's L2 prior term).
    #[test]
    fn grad_open_probability(log_alpha in shape(3, 4).prop_flat_map(|sh| tensor(sh, -6.0, 6.0))) {
        let hc = HardConcrete::default();
        let p = forward(|v| v[0].open_probability(&hc), std::slice::from_ref(&log_alpha));
        let expected = log_alpha.mapv(|a| sigmoid(a - (2.0 / 3.0) * (0.1f64 / 1.1).ln()));
        assert_close_tol(&p, &expected, 1e-12);
        assert_grad(|v| v[0].open_probability(&hc), &[log_alpha]);
    }
}

/// Golden values from the method notes: p = 0.5 -> P(z != 0) = 0.8318, test gate 0.5;
/// p = 0.2 -> 0.9519 and 0.86 (log_alpha = ln(1 - p) - ln p).
#[test]
fn hard_concrete_golden_values() {
    let hc = HardConcrete::default();
    for (p, open, gate) in [(0.5, 0.8318, 0.5), (0.2, 0.9519, 0.86)] {
        let tape = Tape::<f64>::new();
        let la = tape.leaf(scalar(HardConcrete::log_alpha_for_drop_rate(p)));
        assert!((la.l0_penalty(&hc).item() - open).abs() < 5e-5, "p = {p}");
        assert!(
            (la.hard_concrete_eval(&hc).item() - gate).abs() < 1e-12,
            "p = {p}"
        );
    }
}

/// The penalty is the probability the sampled gate is nonzero: check it by sampling.
#[test]
fn l0_penalty_matches_sampled_open_fraction() {
    let hc = HardConcrete::default();
    let mut rng = seeded(11);
    for log_alpha in [-1.0, 0.0, 1.5] {
        let n = 20_000;
        let u = ArrayD::from_shape_simple_fn(IxDyn(&[n]), || uniform(&mut rng, 1e-6, 1.0 - 1e-6));
        let tape = Tape::<f64>::new();
        let la = tape.leaf(ArrayD::from_elem(IxDyn(&[n]), log_alpha));
        let open = la
            .hard_concrete(&u, &hc)
            .value()
            .iter()
            .filter(|&&z| z > 0.0)
            .count() as f64
            / n as f64;
        let expected = la.l0_penalty(&hc).item() / n as f64;
        // Binomial standard error at n = 20000 is below 0.0035; allow 4 of them.
        assert!(
            (open - expected).abs() < 0.014,
            "log_alpha {log_alpha}: sampled {open} vs {expected}"
        );
    }
}

/// Saturated gates (pre-clamp value outside [0, 1]) get exactly zero gradient; at exactly 0 or 1
/// the clamp op's convention (gradient passes on the closed interval) applies.
#[test]
fn hard_concrete_saturated_gates_get_no_gradient() {
    let hc = HardConcrete::default();
    let tape = Tape::<f64>::new();
    let la = tape.leaf(array![-4.0, 4.0, 0.0].into_dyn());
    let z = la.hard_concrete_eval(&hc);
    assert_eq!(z.value()[0], 0.0);
    assert_eq!(z.value()[1], 1.0);
    let grads = z.sum().backward();
    let g = grads.wrt(la).unwrap();
    assert_eq!((g[0], g[1]), (0.0, 0.0));
    assert!((g[2] - 0.25 * 1.2).abs() < 1e-15);
}

/// Broadcasting: one log_alpha per input column, a noise sample per (row, column) — the shape a
/// per-example gate sample (the authors' local_rep) needs.
#[test]
fn hard_concrete_broadcasts_noise_over_gates() {
    let hc = HardConcrete::default();
    let log_alpha = array![[0.3, -0.4, 1.0]].into_dyn();
    let mut rng = seeded(3);
    let u = ArrayD::from_shape_simple_fn(IxDyn(&[5, 3]), || uniform(&mut rng, 0.05, 0.95));
    let z = forward(
        |v| v[0].hard_concrete(&u, &hc),
        std::slice::from_ref(&log_alpha),
    );
    assert_eq!(
        z.shape(),
        broadcast_shape("test", log_alpha.shape(), u.shape())
    );
    assert_grad(|v| v[0].hard_concrete(&u, &hc).sum(), &[log_alpha]);
}
