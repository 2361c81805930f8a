//! Losses (`src/ops/loss.rs`): gradient properties on random batches, and values against numbers
//! worked out by hand.

use crate::common::{assert_grad, forward};
use ndarray::array;
use proptest::collection::vec;
use proptest::prelude::*;
use sparsegrad::check::strategies::tensor;
use sparsegrad::tape::{Tape, Tensor};

/// Logits `[N, C]` (N in 1..=4, C in 2..=5, values in [-4, 4)) with N labels in 0..C.
fn logits_labels() -> impl Strategy<Value = (Tensor<f64>, Vec<usize>)> {
    (1..=4usize, 2..=5usize).prop_flat_map(|(n, c)| (tensor(vec![n, c], -4.0, 4.0), vec(0..c, n)))
}

/// PyTorch's label-smoothed cross-entropy, row by row: mean over rows of
/// (1 - eps) (-log p[label]) + (eps / C) sum_c (-log p[c]).
fn cross_entropy_ref(logits: &Tensor<f64>, labels: &[usize], eps: f64) -> f64 {
    let (n, c) = (logits.shape()[0], logits.shape()[1]);
    let mut total = 0.0;
    for (i, &label) in labels.iter().enumerate() {
        let row: Vec<f64> = (0..c).map(|j| logits[[i, j]]).collect();
        let lse = row.iter().map(|v| v.exp()).sum::<f64>().ln();
        let nll = lse - row[label];
        let uniform: f64 = row.iter().map(|v| lse - v).sum::<f64>() / c as f64;
        total += (1.0 - eps) * nll + eps * uniform;
    }
    total / n as f64
}

/// T^2 / N sum_i KL(softmax(teacher_i / T) || softmax(student_i / T)), written out.
fn kl_ref(student: &Tensor<f64>, teacher: &Tensor<f64>, t: f64) -> f64 {
    let (n, c) = (student.shape()[0], student.shape()[1]);
    let log_softmax = |row: Vec<f64>| {
        let lse = row.iter().map(|v| v.exp()).sum::<f64>().ln();
        row.iter().map(|v| v - lse).collect::<Vec<f64>>()
    };
    let mut total = 0.0;
    for i in 0..n {
        let log_q = log_softmax((0..c).map(|j| student[[i, j]] / t).collect());
        let log_p = log_softmax((0..c).map(|j| teacher[[i, j]] / t).collect());
        total += (0..c)
            .map(|j| log_p[j].exp() * (log_p[j] - log_q[j]))
            .sum::<f64>();
    }
    total * t * t / n as f64
}

fn assert_near(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() <= 1e-12 * (1.0 + expected.abs()),
        "{actual} != {expected}"
    );
}

proptest! {
    #![proptest_config(crate::common::proptest_config())]

    #[test]
    fn grad_cross_entropy(
        (logits, labels) in logits_labels(),
        smoothing in prop_oneof![Just(0.0), 0.05..0.95f64],
    ) {
        let loss = forward(|v| v[0].cross_entropy(&labels, smoothing), std::slice::from_ref(&logits));
        assert_near(loss[[]], cross_entropy_ref(&logits, &labels, smoothing));
        assert_grad(|v| v[0].cross_entropy(&labels, smoothing), &[logits]);
    }

    #[test]
    fn grad_kl_div_logits(
        (student, teacher) in (1..=4usize, 2..=5usize).prop_flat_map(|(n, c)| {
            (tensor(vec![n, c], -4.0, 4.0), tensor(vec![n, c], -4.0, 4.0))
        }),
        temperature in 0.5..8.0f64,
    ) {
        let inputs = [student, teacher];
        let loss = forward(|v| v[0].kl_div_logits(v[1], temperature), &inputs);
        assert_near(loss[[]], kl_ref(&inputs[0], &inputs[1], temperature));
        // Both inputs are leaves: the check covers the student's and the teacher's gradient.
        assert_grad(|v| v[0].kl_div_logits(v[1], temperature), &inputs);
    }

    #[test]
    fn grad_mse((a, b) in crate::common::broadcast_tensors((-3.0, 3.0), (-3.0, 3.0))) {
        let inputs = [a, b];
        let loss = forward(|v| v[0].mse(v[1]), &inputs);
        let d = crate::common::broadcast_map(&inputs[0], &inputs[1], |x, y| (x - y) * (x - y));
        assert_near(loss[[]], d.sum() / d.len() as f64);
        assert_grad(|v| v[0].mse(v[1]), &inputs);
    }
}

#[test]
fn cross_entropy_of_uniform_logits_is_ln_c() {
    for smoothing in [0.0, 0.3] {
        let tape = Tape::<f64>::new();
        let logits = tape.leaf(Tensor::from_elem(ndarray::IxDyn(&[3, 5]), 0.7));
        let loss = logits.cross_entropy(&[0, 4, 2], smoothing);
        assert_near(loss.item(), 5f64.ln());
        // d loss / d logits = ((1 - eps) (p - onehot) + eps (p - 1/C)) / N, with p = 1/5.
        let grads = loss.backward();
        let g = grads.wrt(logits).unwrap();
        assert_near(g[[1, 4]], (1.0 - smoothing) * (0.2 - 1.0) / 3.0);
        assert_near(g[[1, 0]], (1.0 - smoothing) * 0.2 / 3.0);
    }
}

#[test]
fn cross_entropy_with_label_smoothing_matches_pytorch_formula() {
    // 2 x 3 logits, labels [2, 0], eps = 0.1. By PyTorch's definition, per row,
    // loss_i = (1 - eps) (-log p_i[y_i]) + (eps / C) sum_c (-log p_i[c]), then the mean over rows.
    let logits = array![[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]];
    let (eps, c) = (0.1, 3.0);
    let lse0 = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
    let lse1 = (0.5f64.exp() + (-1f64).exp() + 2f64.exp()).ln();
    let row0 = (1.0 - eps) * (lse0 - 3.0) + eps / c * (3.0 * lse0 - (1.0 + 2.0 + 3.0));
    let row1 = (1.0 - eps) * (lse1 - 0.5) + eps / c * (3.0 * lse1 - (0.5 - 1.0 + 2.0));
    let by_hand = (row0 + row1) / 2.0;
    // The same number, from an independent evaluation of the formula in Python.
    assert_near(by_hand, 1.1244586305507687);

    let tape = Tape::<f64>::new();
    let loss = tape.leaf(logits.into_dyn()).cross_entropy(&[2, 0], eps);
    assert_near(loss.item(), by_hand);
}

#[test]
fn kl_of_identical_logits_is_zero() {
    let tape = Tape::<f64>::new();
    let logits = array![[0.3, -1.2, 2.0], [4.0, 0.0, -4.0]].into_dyn();
    let student = tape.leaf(logits.clone());
    let teacher = tape.leaf(logits);
    let loss = student.kl_div_logits(teacher, 3.0);
    assert!(loss.item().abs() < 1e-12, "KL(p || p) = {}", loss.item());
    // At the minimum the student's gradient vanishes too.
    let grads = loss.backward();
    let g = grads.wrt(student).unwrap();
    assert!(g.iter().all(|v| v.abs() < 1e-12), "gradient {g}");
}

#[test]
fn kl_value_on_a_hand_worked_example() {
    // Row 0 at T = 1: p = softmax([ln 3, 0]) = [3/4, 1/4], q = softmax([0, 0]) = [1/2, 1/2], so
    // KL = 3/4 ln(3/2) + 1/4 ln(1/2). Row 1 has equal logits (KL 0): the batch mean halves it.
    let kl0 = 0.75 * 1.5f64.ln() + 0.25 * 0.5f64.ln();
    let tape = Tape::<f64>::new();
    let student = tape.leaf(array![[0.0, 0.0], [1.0, 1.0]].into_dyn());
    let teacher = tape.leaf(array![[3f64.ln(), 0.0], [5.0, 5.0]].into_dyn());
    assert_near(student.kl_div_logits(teacher, 1.0).item(), kl0 / 2.0);

    // At T = 2 with teacher logits doubled, the softened distributions are the same, and the
    // T^2 factor scales the value by 4; d/d student = T (q - p) / N = 2 [-1/4, 1/4].
    let tape = Tape::<f64>::new();
    let student = tape.leaf(array![[0.0, 0.0]].into_dyn());
    let teacher = tape.leaf(array![[2.0 * 3f64.ln(), 0.0]].into_dyn());
    let loss = student.kl_div_logits(teacher, 2.0);
    assert_near(loss.item(), 4.0 * kl0);
    let grads = loss.backward();
    let g = grads.wrt(student).unwrap();
    assert_near(g[[0, 0]], -0.5);
    assert_near(g[[0, 1]], 0.5);
    assert!(grads.wrt(teacher).is_some());
}
