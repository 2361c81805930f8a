//! Structured (low-rank) STR: the group soft threshold op (`Var::group_soft_threshold`,
//! property-based gradient checks and its kink conventions), the `GroupSoftThreshold` transform,
//! the effective-rank report, and `--str-granularity rank` on a FastGRNN low-rank cell, whose
//! effective rank drops in a short run.

use crate::methods_support::*;
use ndarray::{Axis, IxDyn, Zip, array};
use proptest::prelude::*;
use sparsegrad::check::strategies::{away_from, shape, tensor};
use sparsegrad::check::{CheckOptions, gradcheck};
use sparsegrad::nn::recurrent::unroll;
use sparsegrad::nn::{FastGrnnCell, FastGrnnConfig, Linear, Module, Weight, join};
use sparsegrad::ops::sparsity::ThresholdFn;
use sparsegrad::param::Param;
use sparsegrad::rng::{derived, seeded, uniform};
use sparsegrad::sparsity::GroupSoftThreshold;
use sparsegrad::sparsity::report::{format_table, low_rank_report, sparsity_report};
use sparsegrad::tape::{Tape, Tensor, Var};
use sparsegrad::train::{StepInfo, TrainConfig};

// ---------------------------------------------------------------------------------------------
// The op

fn norms(w: &Tensor<f64>, axis: usize) -> Vec<f64> {
    w.axis_iter(Axis(axis))
        .map(|g| g.iter().map(|v| v * v).sum::<f64>().sqrt())
        .collect()
}

/// w_k relu(||w_k|| - t) / ||w_k|| for every slice k along `axis`, computed independently.
fn reference(w: &Tensor<f64>, t: f64, axis: usize) -> Tensor<f64> {
    let mut y = w.clone();
    for (mut g, n) in y.axis_iter_mut(Axis(axis)).zip(norms(w, axis)) {
        let c = if n > t { (n - t) / n } else { 0.0 };
        g.mapv_inplace(|v| v * c);
    }
    y
}

/// A weight of random shape (rank 1-3), a group axis, and s, every group norm at least 0.05
/// away from the threshold g(s) and from 0.
fn case(g: ThresholdFn, s_range: (f64, f64)) -> impl Strategy<Value = (Tensor<f64>, usize, f64)> {
    shape(3, 4)
        .prop_flat_map(move |sh| {
            let rank = sh.len();
            (tensor(sh, -1.0, 1.0), 0..rank, s_range.0..s_range.1)
        })
        .prop_map(move |(mut w, axis, s)| {
            let t = g.value(s);
            for mut group in w.axis_iter_mut(Axis(axis)) {
                let n = group.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-3);
                let target = away_from(away_from(n, &[t], 0.05), &[0.0], 0.05).abs();
                group.mapv_inplace(|v| v * target / n);
            }
            (w, axis, s)
        })
}

fn check(g: ThresholdFn, w: &Tensor<f64>, axis: usize, s: f64) {
    let inputs = [w.clone(), ndarray::arr0(s).into_dyn()];
    let tape = Tape::<f64>::new();
    let y = tape
        .leaf(w.clone())
        .group_soft_threshold(tape.leaf(inputs[1].clone()), &g, axis);
    let expected = reference(w, g.value(s), axis);
    Zip::from(&*y.value())
        .and(&expected)
        .for_each(|a, e| assert!((a - e).abs() <= 1e-12 * (1.0 + e.abs()), "{a} vs {e}"));
    let report = gradcheck(
        |v: &[Var<'_, f64>]| v[0].group_soft_threshold(v[1], &g, axis),
        &inputs,
        &CheckOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.compared > 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn grad_group_soft_threshold_sigmoid((w, axis, s) in case(ThresholdFn::Sigmoid, (-3.0, 0.5))) {
        check(ThresholdFn::Sigmoid, &w, axis, s);
    }

    #[test]
    fn grad_group_soft_threshold_exp((w, axis, s) in case(ThresholdFn::Exp, (-3.0, 0.3))) {
        check(ThresholdFn::Exp, &w, axis, s);
    }
}

/// Convention: a group whose norm is at most g(s) (equal included, and the all-zero group) is
/// zeroed and gets no gradient, to its weights or to s.
#[test]
fn group_soft_threshold_kinks_give_zero_output_and_gradient() {
    let tape = Tape::<f64>::new();
    // Rows: norm 0.5 = g(0) exactly, norm 0 and norm 1 (3-4-5 scaled): only the last survives.
    let w = tape.leaf(array![[0.3, 0.4], [0.0, 0.0], [0.6, 0.8]].into_dyn());
    let s = tape.leaf(ndarray::arr0(0.0).into_dyn());
    let y = w.group_soft_threshold(s, &ThresholdFn::Sigmoid, 0);
    assert_eq!(
        *y.value(),
        array![[0.0, 0.0], [0.0, 0.0], [0.3, 0.4]].into_dyn()
    );
    let grads = y.sum().backward();
    let dw = grads.wrt(w).unwrap();
    assert!(dw.iter().all(|v| v.is_finite()));
    assert_eq!(
        dw.index_axis(Axis(0), 0)
            .iter()
            .copied()
            .collect::<Vec<f64>>(),
        vec![0.0, 0.0]
    );
    assert_eq!(
        dw.index_axis(Axis(0), 1)
            .iter()
            .copied()
            .collect::<Vec<f64>>(),
        vec![0.0, 0.0]
    );
    // Surviving row: (1 - t/n) 1 + t (w . 1) w / n^3 with t = 0.5, n = 1, w . 1 = 1.4.
    let expect = [0.5 + 0.5 * 1.4 * 0.6, 0.5 + 0.5 * 1.4 * 0.8];
    for (a, e) in dw.index_axis(Axis(0), 2).iter().zip(expect) {
        assert!((a - e).abs() < 1e-15, "{a} vs {e}");
    }
    // ds = -g'(0) (w . 1) / n = -0.25 * 1.4, from the surviving row only.
    assert!((grads.wrt(s).unwrap()[[]] + 0.25 * 1.4).abs() < 1e-15);
}

#[test]
fn group_transform_names_threshold_and_effective() {
    let w = array![[0.3f32, 0.4], [3.0, 4.0]].into_dyn();
    let mut weight = Weight::new(w.clone());
    weight.transform = Some(Box::new(GroupSoftThreshold::<f32>::new(
        1,
        (1.0f64).ln(),
        ThresholdFn::Exp,
    )));
    let mut names = Vec::new();
    weight.visit("rnn.W2", &mut |n, p| {
        names.push((n.to_string(), p.shape().to_vec()))
    });
    assert_eq!(
        names,
        vec![
            ("rnn.W2".to_string(), vec![2, 2]),
            ("rnn.W2_threshold".to_string(), vec![])
        ]
    );
    let t = weight.transform.as_ref().unwrap();
    assert!((t.threshold().unwrap() - 1.0).abs() < 1e-6);
    // Columns (axis 1): norms sqrt(0.09 + 9) and sqrt(0.16 + 16), both above 1.
    let expected = reference(&w.mapv(f64::from), 1.0, 1);
    let eff = weight.effective();
    let tape = Tape::new();
    let applied = (*weight.on(&tape).value()).clone();
    assert_bits_equal("effective vs apply", &eff, &applied);
    for (a, e) in eff.iter().zip(expected.iter()) {
        assert!((f64::from(*a) - e).abs() < 1e-6, "{a} vs {e}");
    }
}

// ---------------------------------------------------------------------------------------------
// A tiny recurrent classifier: FastGRNN with low-rank W and U, then a linear head.

const STEPS: usize = 6;
const INPUT: usize = 4;

struct TinyRnn {
    rnn: FastGrnnCell<f32>,
    fc: Linear<f32>,
}

impl TinyRnn {
    fn new(hidden: usize, w_rank: usize, u_rank: usize) -> Self {
        let mut rng = derived(0, 1);
        let config = FastGrnnConfig::new(INPUT, hidden).low_rank(w_rank, u_rank);
        TinyRnn {
            rnn: FastGrnnCell::new(&config, &mut rng).unwrap(),
            fc: Linear::new(hidden, 2, true, &mut rng),
        }
    }
}

impl Module<f32> for TinyRnn {
    /// x: [N, STEPS * INPUT], step t is columns t*INPUT .. (t+1)*INPUT.
    fn forward<'t>(&mut self, x: Var<'t, f32>) -> Var<'t, f32> {
        let xs: Vec<_> = (0..STEPS).map(|t| x.narrow(1, t * INPUT, INPUT)).collect();
        let h = unroll(&self.rnn, &xs, None).last;
        self.fc.forward(h)
    }

    fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(&str, &'a Param<f32>)) {
        self.rnn.visit(&join(prefix, "rnn"), f);
        self.fc.visit(&join(prefix, "fc"), f);
    }

    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<f32>)) {
        self.rnn.visit_mut(&join(prefix, "rnn"), f);
        self.fc.visit_mut(&join(prefix, "fc"), f);
    }

    fn visit_weights_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Weight<f32>)) {
        self.rnn.visit_weights_mut(&join(prefix, "rnn"), f);
        self.fc.visit_weights_mut(&join(prefix, "fc"), f);
    }

    fn visit_weights<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(&str, &'a Weight<f32>)) {
        self.rnn.visit_weights(&join(prefix, "rnn"), f);
        self.fc.visit_weights(&join(prefix, "fc"), f);
    }

    fn visit_low_rank(&self, prefix: &str, f: &mut dyn FnMut(&str, &str, &str)) {
        self.rnn.visit_low_rank(&join(prefix, "rnn"), f);
    }
}

/// Sequences whose label is whether the first feature sums to more than 0 over time.
fn sequences(n: usize, batch: usize, seed: u64) -> Vec<(Tensor<f32>, Vec<usize>)> {
    let mut rng = seeded(seed);
    (0..n)
        .map(|_| {
            let x = Tensor::from_shape_simple_fn(IxDyn(&[batch, STEPS * INPUT]), || {
                uniform(&mut rng, -1.0, 1.0) as f32
            });
            let y = x
                .outer_iter()
                .map(|row| {
                    let sum: f32 = (0..STEPS).map(|t| row[t * INPUT]).sum();
                    usize::from(sum > 0.0)
                })
                .collect();
            (x, y)
        })
        .collect()
}

fn rank_config() -> TrainConfig {
    let mut config = TrainConfig {
        method: "str".parse().unwrap(),
        weight_decay: 1e-3,
        ..TrainConfig::default()
    };
    config.sparsity.methods.str.str_granularity = clap::ValueEnum::from_str("rank", false).unwrap();
    config.sparsity.methods.str.str_g = clap::ValueEnum::from_str("exp", false).unwrap();
    config.sparsity.methods.str.s_init = -3.0;
    config
}

#[test]
fn low_rank_report_counts_components_with_both_factors_alive() {
    let mut model = TinyRnn::new(8, 4, 3);
    let full = low_rank_report(&model);
    let summary: Vec<_> = full
        .iter()
        .map(|r| (r.name.as_str(), r.rank, r.effective_rank))
        .collect();
    assert_eq!(summary, vec![("rnn.W", 4, 4), ("rnn.U", 3, 3)]);
    // Zero row 1 of W1 and column 2 of W2: two components of W gone; a zero column of U2 and the
    // matching row of U1: one of U.
    model.visit_weights_mut("", &mut |name, w| {
        let v = w.raw.value_mut();
        match name {
            "rnn.W1" => v.index_axis_mut(Axis(0), 1).fill(0.0),
            "rnn.W2" => v.index_axis_mut(Axis(1), 2).fill(0.0),
            "rnn.U1" => v.index_axis_mut(Axis(0), 0).fill(0.0),
            "rnn.U2" => v.index_axis_mut(Axis(1), 0).fill(0.0),
            _ => {}
        }
    });
    let ranks: Vec<usize> = low_rank_report(&model)
        .iter()
        .map(|r| r.effective_rank)
        .collect();
    assert_eq!(ranks, vec![2, 2]);
    let table = format_table(&sparsity_report(&model));
    assert!(
        table.contains("low-rank rnn.W: effective rank 2 of 4\n"),
        "{table}"
    );
    assert!(
        table.contains("low-rank rnn.U: effective rank 2 of 3\n"),
        "{table}"
    );
}

#[test]
fn rank_granularity_needs_low_rank_factors() {
    let mut lenet = sparsegrad::models::LeNet300::<f32>::new(784, 10, &mut derived(0, 1));
    let err = rank_config()
        .build_method()
        .unwrap()
        .attach(&mut lenet)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "--str-granularity rank needs a model with low-rank factorised weights (FastGRNN with a rank), and this one has none"
    );
    let mut model = TinyRnn::new(8, 4, 3);
    rank_config()
        .build_method()
        .unwrap()
        .attach(&mut model)
        .unwrap();
    let mut axes = Vec::new();
    model.visit_weights("", &mut |name, w| {
        let axis = w
            .transform
            .as_ref()
            .and_then(|t| t.as_any().downcast_ref::<GroupSoftThreshold<f32>>())
            .map(|g| g.axis());
        axes.push((name.to_string(), axis));
    });
    let expected = [
        ("rnn.W1", Some(0)),
        ("rnn.W2", Some(1)),
        ("rnn.U1", Some(0)),
        ("rnn.U2", Some(1)),
        ("fc.weight", None),
    ];
    let expected: Vec<_> = expected.iter().map(|(n, a)| (n.to_string(), *a)).collect();
    assert_eq!(axes, expected);
}

#[test]
fn structured_str_lowers_the_effective_rank_and_bakes_exactly() {
    let mut model = TinyRnn::new(16, 8, 8);
    let config = rank_config();
    let mut method = config.build_method().unwrap();
    method.attach(&mut model).unwrap();
    // 150 steps at lr 0.5: weight decay 1e-3 on the factors and on s (g = exp, so decay pulls s
    // toward 0 and the norm threshold e^s up from e^-3 = 0.05).
    let mut opt = sgd_for(method.as_ref(), 0.5, config.weight_decay);
    let batches = sequences(150, 32, 6);
    let total = batches.len();
    let before = low_rank_report(&model);
    assert!(before.iter().all(|r| r.effective_rank == 8), "{before:?}");
    let (mut first_loss, mut last_loss) = (0.0, 0.0);
    for (i, b) in batches.iter().enumerate() {
        let info = StepInfo {
            epoch: 0,
            step: i,
            steps_per_epoch: total,
            total_steps: total,
        };
        let loss = step(&mut model, method.as_mut(), &mut opt, b, info);
        if i < 10 {
            first_loss += loss / 10.0;
        }
        if i >= total - 10 {
            last_loss += loss / 10.0;
        }
    }
    let after = low_rank_report(&model);
    let ranks: Vec<usize> = after.iter().map(|r| r.effective_rank).collect();
    assert!(
        ranks.iter().all(|&r| r < 8) && last_loss < 0.5 * first_loss,
        "ranks {ranks:?}, loss {first_loss} -> {last_loss}"
    );
    // The per-layer report shows it, and baking keeps every zero group.
    let report = sparsity_report(&model);
    assert_eq!(report.low_rank, after);
    let effective = effective_weights(&model);
    method.finish(&mut model).unwrap();
    for ((name, raw), (_, eff)) in raw_weights(&model).iter().zip(&effective) {
        assert_bits_equal(name, raw, eff);
    }
    assert_eq!(low_rank_report(&model), after);
}

#[test]
fn fastgrnn_run_reports_effective_ranks_in_the_summary() {
    let dir = temp_dir("fastgrnn-rank");
    let mut config = short(&dir.join("run"), "str", 1);
    config.model = "fastgrnn".parse().unwrap();
    config.sparsity.methods.str.str_granularity = clap::ValueEnum::from_str("rank", false).unwrap();
    config.sparsity.methods.str.str_g = clap::ValueEnum::from_str("exp", false).unwrap();
    config.sparsity.methods.str.s_init = -0.5; // e^-0.5 = 0.61, above the initial component norms (~0.5)
    let summary = finish(&config);
    let ranks: Vec<(String, usize, usize)> = summary
        .low_rank
        .iter()
        .map(|r| (r.name.clone(), r.rank, r.effective_rank))
        .collect();
    assert_eq!(ranks.len(), 2, "{ranks:?}");
    assert_eq!((ranks[0].0.as_str(), ranks[0].1), ("rnn_list.0.cell.W", 28));
    assert_eq!((ranks[1].0.as_str(), ranks[1].1), ("rnn_list.0.cell.U", 32));
    assert!(ranks.iter().all(|r| r.2 < r.1), "{ranks:?}");
    // The thresholds g(s) of the four factors are kept in the summary after baking.
    let with_threshold = summary
        .layers
        .iter()
        .filter(|l| l.threshold.is_some())
        .count();
    assert_eq!(with_threshold, 4);
}
