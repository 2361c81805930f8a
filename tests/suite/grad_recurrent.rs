//! Recurrent cells: gradient checks through time (inputs, initial state and every parameter),
//! the PyTorch / EdgeML equations against plain f64 loops, parameter names, shapes and
//! initialisation, and the weight-transform hook.

use std::cell::Cell;
use std::rc::Rc;

use ndarray::{Array2, ArrayD, IxDyn};
use proptest::prelude::*;
use sparsegrad::check::strategies::tensor;
use sparsegrad::check::{CheckOptions, gradcheck};
use sparsegrad::nn::fastgrnn::{FastGrnnWeights, Projection, ProjectionOn};
use sparsegrad::nn::gru::GruWeights;
use sparsegrad::nn::{
    FastGrnnCell, FastGrnnConfig, GruCell, Module, RecurrentCell, Weight, WeightTransform,
    named_params, split_steps, unroll, unroll_on, unroll_sequence,
};
use sparsegrad::rng::seeded;
use sparsegrad::tape::{Tape, Tensor, Var};

// ---------------------------------------------------------------- helpers

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// A deterministic, irregular fill (no two entries alike, values in (-1, 1)).
fn filled(shape: &[usize], salt: f64) -> Tensor<f64> {
    let mut k = 0.0;
    Tensor::from_shape_simple_fn(IxDyn(shape), || {
        k += 1.0;
        (k * 0.7137 + salt).sin() * 0.9
    })
}

fn as_matrix(t: &Tensor<f64>) -> Array2<f64> {
    t.clone().into_dimensionality().expect("a matrix")
}

/// Same shape and every entry within 1e-12 (results of the same math computed two ways).
fn assert_close<D: ndarray::Dimension>(
    got: &ndarray::Array<f64, D>,
    want: &ndarray::Array<f64, D>,
) {
    assert_eq!(got.shape(), want.shape());
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= 1e-12, "{g} vs {w}\ngot {got}\nwant {want}");
    }
}

fn options() -> CheckOptions {
    CheckOptions::default()
}

/// Stacked states [T, N, H] of `cell` run from leaves: v[0] = xs [T, N, I], v[1] = h0.
fn unrolled_from_leaves<'t, C: RecurrentCell<f64>>(
    cell: &C,
    weights: &C::Weights<'t>,
    v: &[Var<'t, f64>],
) -> Var<'t, f64> {
    unroll_on(cell, weights, &split_steps(v[0]), v[1]).stacked()
}

fn gru_weights_from<'t>(v: &[Var<'t, f64>], bias: bool) -> GruWeights<'t, f64> {
    GruWeights {
        weight_ih: v[0],
        weight_hh: v[1],
        bias_ih: bias.then(|| v[2]),
        bias_hh: bias.then(|| v[3]),
    }
}

/// Leaves after xs and h0 for a FastGRNN cell: W (or W1, W2), U (or U1, U2), bias_gate,
/// bias_update, zeta, nu.
fn fastgrnn_weights_from<'t>(
    v: &[Var<'t, f64>],
    w_low_rank: bool,
    u_low_rank: bool,
) -> FastGrnnWeights<'t, f64> {
    let mut i = 0;
    let mut projection = |low_rank: bool| {
        if low_rank {
            i += 2;
            ProjectionOn::LowRank {
                first: v[i - 2],
                second: v[i - 1],
            }
        } else {
            i += 1;
            ProjectionOn::Full(v[i - 1])
        }
    };
    let w = projection(w_low_rank);
    let u = projection(u_low_rank);
    FastGrnnWeights::new(w, u, v[i], v[i + 1], v[i + 2], v[i + 3])
}

/// The parameter values of a module, in visit order.
fn param_values<M: Module<f64>>(m: &M) -> Vec<Tensor<f64>> {
    named_params(m)
        .into_iter()
        .map(|(_, p)| p.value().clone())
        .collect()
}

// ---------------------------------------------------------------- gradient checks through time

/// (T, N, I, H) for short sequences and tiny cells.
fn sizes() -> impl Strategy<Value = (usize, usize, usize, usize)> {
    (1..=4usize, 1..=3usize, 1..=3usize, 1..=3usize)
}

fn tensors(shapes: Vec<Vec<usize>>, lo: f64, hi: f64) -> Vec<BoxedStrategy<Tensor<f64>>> {
    shapes
        .into_iter()
        .map(|s| tensor(s, lo, hi).boxed())
        .collect()
}

fn gru_case() -> impl Strategy<Value = (bool, Vec<Tensor<f64>>)> {
    (sizes(), any::<bool>()).prop_flat_map(|((t, n, i, h), bias)| {
        let mut shapes = vec![vec![t, n, i], vec![n, h], vec![3 * h, i], vec![3 * h, h]];
        if bias {
            shapes.extend([vec![3 * h], vec![3 * h]]);
        }
        (Just(bias), tensors(shapes, -1.5, 1.5))
    })
}

/// (W low rank, U low rank, inputs); ranks in 1..=3.
fn fastgrnn_case() -> impl Strategy<Value = (bool, bool, Vec<Tensor<f64>>)> {
    (
        sizes(),
        any::<bool>(),
        any::<bool>(),
        1..=3usize,
        1..=3usize,
    )
        .prop_flat_map(|((t, n, i, h), w_low, u_low, rw, ru)| {
            let mut shapes = vec![vec![t, n, i], vec![n, h]];
            let mut push = |low: bool, rank: usize, cols: usize| {
                if low {
                    shapes.extend([vec![rank, cols], vec![h, rank]]);
                } else {
                    shapes.push(vec![h, cols]);
                }
            };
            push(w_low, rw, i);
            push(u_low, ru, h);
            shapes.extend([vec![1, h], vec![1, h]]);
            let mut parts = tensors(shapes, -1.5, 1.5);
            // zeta and nu, raw (they enter through a sigmoid)
            parts.extend(tensors(vec![vec![1, 1], vec![1, 1]], -2.0, 2.0));
            (Just(w_low), Just(u_low), parts)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// d(all states) / d(xs, h0, weight_ih, weight_hh, bias_ih, bias_hh) through T <= 4 steps.
    #[test]
    fn gru_gradcheck_through_time((bias, inputs) in gru_case()) {
        let (i, h) = (inputs[0].shape()[2], inputs[1].shape()[1]);
        let cell = GruCell::<f64>::new(i, h, bias, &mut seeded(0));
        let report = gradcheck(
            |v| unrolled_from_leaves(&cell, &gru_weights_from(&v[2..], bias), v),
            &inputs,
            &options(),
        );
        prop_assert!(report.is_ok(), "{}", report.unwrap_err());
    }

    /// The fused gate op on its own: d h' / d(gi, gh, h), gate pre-activations in (-3, 3).
    #[test]
    fn gru_gates_gradcheck(inputs in (1usize..4, 1usize..5).prop_flat_map(|(n, h)| {
        tensors(vec![vec![n, 3 * h], vec![n, 3 * h], vec![n, h]], -3.0, 3.0)
    })) {
        let report = gradcheck(|v| v[0].gru_gates(v[1], v[2]), &inputs, &options());
        prop_assert!(report.is_ok(), "{}", report.unwrap_err());
    }

    /// Same for FastGRNN, full-rank and low-rank W and U, w.r.t. zeta and nu too.
    #[test]
    fn fastgrnn_gradcheck_through_time((w_low, u_low, inputs) in fastgrnn_case()) {
        let (i, h) = (inputs[0].shape()[2], inputs[1].shape()[1]);
        let mut config = FastGrnnConfig::new(i, h);
        config.w_rank = w_low.then(|| inputs[2].shape()[0]);
        config.u_rank = u_low.then(|| inputs[if w_low { 4 } else { 3 }].shape()[0]);
        let cell = FastGrnnCell::<f64>::new(&config, &mut seeded(0)).unwrap();
        let report = gradcheck(
            |v| unrolled_from_leaves(&cell, &fastgrnn_weights_from(&v[2..], w_low, u_low), v),
            &inputs,
            &options(),
        );
        prop_assert!(report.is_ok(), "{}", report.unwrap_err());
    }
}

/// The parameter path (`weights_on`: tape.param, Weight::on) gives the same gradients as the
/// leaf path the gradient checks use, so the checks cover what training runs.
#[test]
fn gru_parameter_gradients_equal_leaf_gradients() {
    let (t, n, i, h) = (3, 2, 3, 4);
    let cell = GruCell::<f64>::new(i, h, true, &mut seeded(7));
    let xs = filled(&[t, n, i], 0.3);
    let coeff = filled(&[t, n, h], 1.1);

    let tape = Tape::new();
    let out = unroll_sequence(&cell, tape.constant(xs.clone()), None).stacked();
    let grads = (out * tape.constant(coeff.clone())).sum().backward();
    let by_param: Vec<Tensor<f64>> = named_params(&cell)
        .iter()
        .map(|(_, p)| grads.of(p).expect("every parameter is used").clone())
        .collect();

    let tape = Tape::new();
    let leaves: Vec<_> = param_values(&cell)
        .into_iter()
        .map(|v| tape.leaf(v))
        .collect();
    let h0 = tape.constant(Tensor::zeros(IxDyn(&[n, h])));
    let out = unroll_on(
        &cell,
        &gru_weights_from(&leaves, true),
        &split_steps(tape.constant(xs)),
        h0,
    )
    .stacked();
    let grads = (out * tape.constant(coeff)).sum().backward();
    for (leaf, expected) in leaves.iter().zip(&by_param) {
        assert_eq!(grads.wrt(*leaf).unwrap(), expected);
    }
}

#[test]
fn fastgrnn_parameter_gradients_equal_leaf_gradients() {
    let (t, n, i, h) = (3, 2, 3, 4);
    for (w_rank, u_rank) in [(None, None), (Some(2), Some(3))] {
        let mut config = FastGrnnConfig::new(i, h);
        (config.w_rank, config.u_rank) = (w_rank, u_rank);
        let cell = FastGrnnCell::<f64>::new(&config, &mut seeded(7)).unwrap();
        let xs = filled(&[t, n, i], 0.3);

        let tape = Tape::new();
        let loss = unroll_sequence(&cell, tape.constant(xs.clone()), None)
            .stacked()
            .tanh()
            .sum();
        let grads = loss.backward();
        let by_param: Vec<Tensor<f64>> = named_params(&cell)
            .iter()
            .map(|(_, p)| grads.of(p).expect("every parameter is used").clone())
            .collect();

        let tape = Tape::new();
        let leaves: Vec<_> = param_values(&cell)
            .into_iter()
            .map(|v| tape.leaf(v))
            .collect();
        let weights = fastgrnn_weights_from(&leaves, w_rank.is_some(), u_rank.is_some());
        let h0 = tape.constant(Tensor::zeros(IxDyn(&[n, h])));
        let xs = split_steps(tape.constant(xs));
        let grads = unroll_on(&cell, &weights, &xs, h0)
            .stacked()
            .tanh()
            .sum()
            .backward();
        for (leaf, expected) in leaves.iter().zip(&by_param) {
            assert_eq!(grads.wrt(*leaf).unwrap(), expected);
        }
    }
}

// ---------------------------------------------------------------- the equations, by hand

/// PyTorch's GRUCell equations written out with scalar loops, over a whole sequence.
fn gru_reference(
    xs: &Tensor<f64>,
    h0: &Array2<f64>,
    w_ih: &Array2<f64>,
    w_hh: &Array2<f64>,
    b_ih: &[f64],
    b_hh: &[f64],
) -> Vec<Array2<f64>> {
    let (t_len, n, i_len) = (xs.shape()[0], xs.shape()[1], xs.shape()[2]);
    let hid = h0.ncols();
    let mut h = h0.clone();
    let mut out = Vec::new();
    for t in 0..t_len {
        let mut next = Array2::zeros((n, hid));
        for b in 0..n {
            // gate rows: r = 0..H, z = H..2H, n = 2H..3H
            let wx = |row: usize| -> f64 {
                (0..i_len)
                    .map(|k| w_ih[[row, k]] * xs[[t, b, k]])
                    .sum::<f64>()
                    + b_ih[row]
            };
            let wh = |row: usize| -> f64 {
                (0..hid).map(|k| w_hh[[row, k]] * h[[b, k]]).sum::<f64>() + b_hh[row]
            };
            for j in 0..hid {
                let r = sigmoid(wx(j) + wh(j));
                let z = sigmoid(wx(hid + j) + wh(hid + j));
                let nn = (wx(2 * hid + j) + r * wh(2 * hid + j)).tanh();
                next[[b, j]] = (1.0 - z) * nn + z * h[[b, j]];
            }
        }
        out.push(next.clone());
        h = next;
    }
    out
}

#[test]
fn gru_matches_pytorch_equations_by_hand() {
    let (t, n, i, h) = (3, 2, 3, 4);
    let mut cell = GruCell::<f64>::new(i, h, true, &mut seeded(0));
    let values = [
        filled(&[3 * h, i], 0.1),
        filled(&[3 * h, h], 0.2),
        filled(&[3 * h], 0.3),
        filled(&[3 * h], 0.4),
    ];
    let mut k = 0;
    cell.visit_mut("", &mut |_, p| {
        p.set_value(values[k].clone());
        k += 1;
    });
    let xs = filled(&[t, n, i], 0.5);
    let h0 = as_matrix(&filled(&[n, h], 0.6));

    let tape = Tape::new();
    let run = unroll_sequence(
        &cell,
        tape.constant(xs.clone()),
        Some(tape.constant(h0.clone().into_dyn())),
    );
    let expected = gru_reference(
        &xs,
        &h0,
        &as_matrix(&values[0]),
        &as_matrix(&values[1]),
        values[2].as_slice().unwrap(),
        values[3].as_slice().unwrap(),
    );
    assert_eq!(run.states.len(), t);
    for (got, want) in run.states.iter().zip(&expected) {
        let got = as_matrix(&got.value());
        assert_close(&got, want);
    }
    assert_close(&as_matrix(&run.last.value()), &expected[t - 1]);
}

#[test]
fn gru_without_bias_matches_equations_with_zero_bias() {
    let (t, n, i, h) = (2, 3, 2, 3);
    let cell = GruCell::<f64>::new(i, h, false, &mut seeded(4));
    let names: Vec<_> = named_params(&cell).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["weight_ih", "weight_hh"]);
    let xs = filled(&[t, n, i], 0.9);
    let tape = Tape::new();
    let run = unroll_sequence(&cell, tape.constant(xs.clone()), None);
    let zeros = vec![0.0; 3 * h];
    let expected = gru_reference(
        &xs,
        &Array2::zeros((n, h)),
        &as_matrix(cell.weight_ih.raw.value()),
        &as_matrix(cell.weight_hh.raw.value()),
        &zeros,
        &zeros,
    );
    for (got, want) in run.states.iter().zip(&expected) {
        assert_close(&as_matrix(&got.value()), want);
    }
}

/// EdgeML's FastGRNNCell equations with scalar loops; W = W2 W1 and U = U2 U1 when low rank.
#[test]
fn fastgrnn_matches_edgeml_equations_by_hand() {
    let (t, n, i, h) = (3, 2, 3, 4);
    for (w_rank, u_rank) in [(None, None), (Some(2), Some(1))] {
        let mut config = FastGrnnConfig::new(i, h);
        (config.w_rank, config.u_rank) = (w_rank, u_rank);
        let mut cell = FastGrnnCell::<f64>::new(&config, &mut seeded(3)).unwrap();
        // non-default zeta / nu / biases, so a swapped or missing sigmoid would show
        cell.bias_gate.set_value(filled(&[1, h], 2.0));
        cell.bias_update.set_value(filled(&[1, h], 3.0));
        cell.zeta.set_value(ArrayD::from_elem(IxDyn(&[1, 1]), 0.4));
        cell.nu.set_value(ArrayD::from_elem(IxDyn(&[1, 1]), -1.3));
        let full = |p: &Projection<f64>| -> Array2<f64> {
            match p {
                Projection::Full(w) => as_matrix(w.raw.value()),
                Projection::LowRank { first, second } => {
                    as_matrix(second.raw.value()).dot(&as_matrix(first.raw.value()))
                }
            }
        };
        let (w, u) = (full(&cell.w), full(&cell.u));
        let bg = cell.bias_gate.value().clone();
        let bu = cell.bias_update.value().clone();
        let (zeta, nu) = (sigmoid(0.4), sigmoid(-1.3));

        let xs = filled(&[t, n, i], 0.7);
        let tape = Tape::new();
        let run = unroll_sequence(&cell, tape.constant(xs.clone()), None);
        let mut hs = Array2::<f64>::zeros((n, h));
        for step in 0..t {
            let mut next = Array2::zeros((n, h));
            for b in 0..n {
                for j in 0..h {
                    let pre = (0..i).map(|k| w[[j, k]] * xs[[step, b, k]]).sum::<f64>()
                        + (0..h).map(|k| u[[j, k]] * hs[[b, k]]).sum::<f64>();
                    let z = sigmoid(pre + bg[[0, j]]);
                    let c = (pre + bu[[0, j]]).tanh();
                    next[[b, j]] = (zeta * (1.0 - z) + nu) * c + z * hs[[b, j]];
                }
            }
            assert_close(&as_matrix(&run.states[step].value()), &next);
            hs = next;
        }
    }
}

// ---------------------------------------------------------------- unrolling

#[test]
fn unroll_sequence_equals_stepping_by_hand_and_forward_is_one_step_from_zeros() {
    let (t, n, i, h) = (4, 3, 2, 5);
    let mut cell = GruCell::<f64>::new(i, h, true, &mut seeded(11));
    let xs = filled(&[t, n, i], 0.2);
    let tape = Tape::new();
    let run = unroll_sequence(&cell, tape.constant(xs.clone()), None);
    let mut hs = tape.constant(Tensor::zeros(IxDyn(&[n, h])));
    for step in 0..t {
        let x = tape.constant(xs.index_axis(ndarray::Axis(0), step).to_owned());
        if step == 0 {
            assert_eq!(*cell.forward(x).value(), *cell.step(x, hs).value());
        }
        hs = cell.step(x, hs);
        assert_eq!(*run.states[step].value(), *hs.value());
    }
    assert_eq!(run.stacked().shape(), [t, n, h]);
    assert_eq!(*run.last.value(), *hs.value());
}

#[test]
fn an_empty_sequence_returns_h0() {
    let cell = FastGrnnCell::<f64>::new(&FastGrnnConfig::new(2, 3), &mut seeded(0)).unwrap();
    let tape = Tape::new();
    let h0 = tape.constant(filled(&[4, 3], 0.0));
    let run = unroll(&cell, &[], Some(h0));
    assert!(run.states.is_empty());
    assert_eq!(run.last.id(), h0.id());
}

#[test]
#[should_panic(expected = "GruCell: expected x [N, 3] and h [N, 4]")]
fn a_wrong_input_width_names_the_cell_and_shapes() {
    let cell = GruCell::<f64>::new(3, 4, true, &mut seeded(0));
    let tape = Tape::new();
    let x = tape.constant(Tensor::zeros(IxDyn(&[2, 5])));
    let h = tape.constant(Tensor::zeros(IxDyn(&[2, 4])));
    cell.step(x, h);
}

// ---------------------------------------------------------------- names, shapes, init

fn names_and_shapes<M: Module<f64>>(m: &M, prefix: &str) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    m.visit(prefix, &mut |name, p| {
        out.push((name.to_string(), p.shape().to_vec()))
    });
    out
}

fn weight_names<M: Module<f64>>(m: &M, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    m.visit_weights(prefix, &mut |name, _| out.push(name.to_string()));
    out
}

fn owned(v: &[(&str, &[usize])]) -> Vec<(String, Vec<usize>)> {
    v.iter().map(|(n, s)| (n.to_string(), s.to_vec())).collect()
}

#[test]
fn gru_parameter_names_and_shapes_are_pytorch_grucell() {
    let (i, h) = (5, 7);
    let cell = GruCell::<f64>::new(i, h, true, &mut seeded(0));
    assert_eq!(
        names_and_shapes(&cell, "rnn"),
        owned(&[
            ("rnn.weight_ih", &[21, 5]),
            ("rnn.weight_hh", &[21, 7]),
            ("rnn.bias_ih", &[21]),
            ("rnn.bias_hh", &[21]),
        ])
    );
    assert_eq!(
        weight_names(&cell, "rnn"),
        ["rnn.weight_ih", "rnn.weight_hh"]
    );
    assert_eq!((cell.input_size(), cell.hidden_size()), (i, h));
}

#[test]
fn fastgrnn_parameter_names_and_shapes_are_edgeml() {
    let (i, h) = (5, 7);
    let full = FastGrnnCell::<f64>::new(&FastGrnnConfig::new(i, h), &mut seeded(0)).unwrap();
    assert_eq!(
        names_and_shapes(&full, ""),
        owned(&[
            ("W", &[7, 5]),
            ("U", &[7, 7]),
            ("bias_gate", &[1, 7]),
            ("bias_update", &[1, 7]),
            ("zeta", &[1, 1]),
            ("nu", &[1, 1]),
        ])
    );
    assert_eq!(weight_names(&full, ""), ["W", "U"]);

    let config = FastGrnnConfig::new(i, h).low_rank(2, 3);
    let low = FastGrnnCell::<f64>::new(&config, &mut seeded(0)).unwrap();
    assert_eq!(
        names_and_shapes(&low, "rnn.cell"),
        owned(&[
            ("rnn.cell.W1", &[2, 5]),
            ("rnn.cell.W2", &[7, 2]),
            ("rnn.cell.U1", &[3, 7]),
            ("rnn.cell.U2", &[7, 3]),
            ("rnn.cell.bias_gate", &[1, 7]),
            ("rnn.cell.bias_update", &[1, 7]),
            ("rnn.cell.zeta", &[1, 1]),
            ("rnn.cell.nu", &[1, 1]),
        ])
    );
    assert_eq!(
        weight_names(&low, "rnn.cell"),
        ["rnn.cell.W1", "rnn.cell.W2", "rnn.cell.U1", "rnn.cell.U2"]
    );
}

/// visit_weights hands out the very parameters visit names (same identity), nothing else.
#[test]
fn visit_weights_exposes_exactly_the_weight_matrices() {
    fn check<M: Module<f64>>(m: &mut M, expected: &[&str]) {
        let mut by_name = std::collections::HashMap::new();
        m.visit("", &mut |name, p| {
            by_name.insert(name.to_string(), p.id());
        });
        let mut seen = Vec::new();
        m.visit_weights("", &mut |name, w| {
            assert_eq!(by_name[name], w.raw.id(), "{name}");
            seen.push(name.to_string());
        });
        assert_eq!(seen, expected);
        let mut seen_mut = Vec::new();
        m.visit_weights_mut("", &mut |name, _| seen_mut.push(name.to_string()));
        assert_eq!(seen_mut, expected);
    }
    check(
        &mut GruCell::<f64>::new(3, 4, true, &mut seeded(0)),
        &["weight_ih", "weight_hh"],
    );
    check(
        &mut FastGrnnCell::<f64>::new(&FastGrnnConfig::new(3, 4), &mut seeded(0)).unwrap(),
        &["W", "U"],
    );
    let config = FastGrnnConfig::new(3, 4).low_rank(1, 2);
    check(
        &mut FastGrnnCell::<f64>::new(&config, &mut seeded(0)).unwrap(),
        &["W1", "W2", "U1", "U2"],
    );
}

#[test]
fn gru_init_is_uniform_within_one_over_sqrt_hidden_and_seeded() {
    let h = 16;
    let cell = GruCell::<f64>::new(8, h, true, &mut seeded(5));
    let bound = 1.0 / (h as f64).sqrt();
    for (name, p) in named_params(&cell) {
        let v = p.value();
        assert!(v.iter().all(|x| x.abs() <= bound), "{name} exceeds {bound}");
        // spread over the interval, not a constant (a U(-b, b) sample of >= 48 values)
        let (lo, hi) = v.fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        assert!(lo < -0.5 * bound && hi > 0.5 * bound, "{name}: {lo}..{hi}");
    }
    let again = GruCell::<f64>::new(8, h, true, &mut seeded(5));
    assert_eq!(param_values(&cell), param_values(&again));
    let other = GruCell::<f64>::new(8, h, true, &mut seeded(6));
    assert_ne!(param_values(&cell), param_values(&other));
}

#[test]
fn fastgrnn_init_is_edgeml_defaults() {
    let config = FastGrnnConfig::new(48, 64).low_rank(16, 32);
    let cell = FastGrnnCell::<f64>::new(&config, &mut seeded(9)).unwrap();
    assert!(cell.bias_gate.value().iter().all(|&b| b == 1.0));
    assert!(cell.bias_update.value().iter().all(|&b| b == 1.0));
    assert_eq!(cell.zeta.value()[[0, 0]], 1.0);
    assert_eq!(cell.nu.value()[[0, 0]], -4.0);
    cell.visit_weights("", &mut |name, w| {
        let v = w.raw.value();
        let n = v.len() as f64;
        let mean = v.sum() / n;
        let std = (v.mapv(|x| (x - mean).powi(2)).sum() / n).sqrt();
        // N(0, 0.1^2) with >= 768 samples: std within 8% and mean within 4 standard errors
        assert!((std - 0.1).abs() < 0.008, "{name}: std {std}");
        assert!(mean.abs() < 4.0 * 0.1 / n.sqrt(), "{name}: mean {mean}");
    });
}

#[test]
fn fastgrnn_rejects_rank_zero_and_empty_sizes() {
    let mut config = FastGrnnConfig::new(3, 4);
    config.u_rank = Some(0);
    let err = FastGrnnCell::<f64>::new(&config, &mut seeded(0))
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("rank of U must be at least 1"),
        "{err}"
    );
    let err = FastGrnnCell::<f64>::new(&FastGrnnConfig::new(0, 4), &mut seeded(0))
        .err()
        .unwrap();
    assert!(err.to_string().contains("input size (0)"), "{err}");
}

// ---------------------------------------------------------------- the reparameterisation hook

/// Effective weight = scale * raw, counting how often it is put on a tape.
struct CountingScale {
    scale: f64,
    applied: Rc<Cell<usize>>,
}

impl WeightTransform<f64> for CountingScale {
    fn name(&self) -> &'static str {
        "counting_scale"
    }
    fn apply<'t>(&self, raw: Var<'t, f64>) -> Var<'t, f64> {
        self.applied.set(self.applied.get() + 1);
        raw.mul_scalar(self.scale)
    }
    fn effective(&self, raw: &Tensor<f64>) -> Tensor<f64> {
        raw * self.scale
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

/// Attaches a scale to the weight called `target`; returns the apply counter.
fn attach<M: Module<f64>>(m: &mut M, target: &str, scale: f64) -> Rc<Cell<usize>> {
    let applied = Rc::new(Cell::new(0));
    let mut found = false;
    m.visit_weights_mut("", &mut |name, w: &mut Weight<f64>| {
        if name == target {
            w.transform = Some(Box::new(CountingScale {
                scale,
                applied: applied.clone(),
            }));
            found = true;
        }
    });
    assert!(found, "no weight named {target}");
    applied
}

/// Output and raw-parameter gradients of a 5-step sequence.
fn run_and_grads<M: Module<f64> + RecurrentCell<f64>>(
    cell: &M,
    xs: &Tensor<f64>,
) -> (Tensor<f64>, Vec<Tensor<f64>>) {
    let tape = Tape::new();
    let out = unroll_sequence(cell, tape.constant(xs.clone()), None).stacked();
    let value = (*out.value()).clone();
    let grads = out.powf(2.0).sum().backward();
    let g = named_params(cell)
        .iter()
        .map(|(_, p)| grads.of(p).unwrap().clone())
        .collect();
    (value, g)
}

/// A transform on a recurrent weight is what the cell computes with (once per sequence), and the
/// raw weight's gradient follows the chain rule through it: d/d raw = scale * d/d effective.
fn check_transform_hook<M: Module<f64> + RecurrentCell<f64>>(
    mut transformed: M,
    mut plain: M,
    target: &str,
) {
    let scale = 0.6;
    let applied = attach(&mut transformed, target, scale);
    // `plain` holds the effective weight as its raw weight.
    plain.visit_weights_mut("", &mut |name, w| {
        if name == target {
            *w.raw.value_mut() *= scale;
        }
    });
    let xs = filled(&[5, 2, transformed.input_size()], 0.8);
    let (y_t, g_t) = run_and_grads(&transformed, &xs);
    assert_eq!(
        applied.get(),
        1,
        "the transform runs once per sequence, not per step"
    );
    let (y_p, g_p) = run_and_grads(&plain, &xs);
    assert_close(&y_t, &y_p);
    let names: Vec<_> = named_params(&plain).into_iter().map(|(n, _)| n).collect();
    for ((name, gt), gp) in names.iter().zip(&g_t).zip(&g_p) {
        let expected = if name == target {
            gp * scale
        } else {
            gp.clone()
        };
        assert_close(gt, &expected);
    }
}

#[test]
fn a_transform_on_weight_hh_is_used_by_the_gru() {
    let make = || GruCell::<f64>::new(3, 4, true, &mut seeded(21));
    check_transform_hook(make(), make(), "weight_hh");
    check_transform_hook(make(), make(), "weight_ih");
}

#[test]
fn a_transform_on_a_low_rank_factor_is_used_by_fastgrnn() {
    let config = FastGrnnConfig::new(3, 4).low_rank(2, 2);
    let make = || FastGrnnCell::<f64>::new(&config, &mut seeded(22)).unwrap();
    check_transform_hook(make(), make(), "U1");
    check_transform_hook(make(), make(), "W2");
    let make_full =
        || FastGrnnCell::<f64>::new(&FastGrnnConfig::new(3, 4), &mut seeded(23)).unwrap();
    check_transform_hook(make_full(), make_full(), "U");
}

/// A GRU sequence (f32, large enough for the GEMMs to split over threads): states and every
/// gradient bit-identical on 1 and 3 threads.
#[test]
fn gru_sequence_is_bit_identical_across_thread_counts() {
    let (t, n, i, h) = (3, 64, 32, 128);
    let xs = filled(&[t, n, i], 0.3).mapv(|v| v as f32);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("thread pool");
        pool.install(|| {
            // Built inside the pool (a cell is not Sync); the same seed gives the same weights.
            let cell = GruCell::<f32>::new(i, h, true, &mut seeded(5));
            let tape = Tape::<f32>::new();
            let x = tape.leaf(xs.clone());
            let weights = cell.weights_on(&tape);
            let h0 = tape.constant(Tensor::zeros(IxDyn(&[n, h])));
            let states = unroll_on(&cell, &weights, &split_steps(x), h0).stacked();
            let bits = |t: &Tensor<f32>| t.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            let state_bits = bits(&states.value());
            let grads = (states * states).sum().backward();
            vec![
                state_bits,
                bits(grads.wrt(x).expect("dx")),
                bits(grads.wrt(weights.weight_ih).expect("dW_ih")),
                bits(grads.wrt(weights.weight_hh).expect("dW_hh")),
            ]
        })
    };
    assert_eq!(run(1), run(3));
}
