//! SNIP (`--method snip`, `src/methods/snip.rs`): connection sensitivities against values
//! computed by hand on a one-layer network, the global top-k through `--distribution global`
//! (other distributions work too), scoring on another initialisation, masks exact through
//! training, command-line errors.

use crate::cli_support::assert_refused;
use crate::methods_support::*;
use crate::survey_support::*;
use sparsegrad::data::Batch;
use sparsegrad::methods::prune::masked_out;
use sparsegrad::methods::snip::{Snip, SnipOptions, snip_scores};
use sparsegrad::methods::{Method, Plugin, SharedOptions, StepInfo, TrainContext};
use sparsegrad::nn::{Linear, Module};
use sparsegrad::rng::seeded;
use sparsegrad::sparsity::budget::Distribution;
use sparsegrad::tape::Tensor;

/// Batch of `n` inputs of 3 features with labels in 0..2.
fn tiny_batch(n: usize, seed: u64) -> Batch<f32> {
    let (x, labels) = random_batches(1, n, 3, 2, seed).remove(0);
    Batch { images: x, labels }
}

/// Softmax cross-entropy gradient of a linear layer z = W x + b, averaged over the batch,
/// written out entry by entry (index loops on purpose: the formula's indices).
#[allow(clippy::needless_range_loop)]
fn hand_grad(w: &Tensor<f32>, b: &Tensor<f32>, batch: &Batch<f32>) -> Vec<Vec<f64>> {
    let (outs, ins) = (w.shape()[0], w.shape()[1]);
    let n = batch.labels.len();
    let mut g = vec![vec![0.0; ins]; outs];
    for s in 0..n {
        let z: Vec<f64> = (0..outs)
            .map(|i| {
                b[[i]] as f64
                    + (0..ins)
                        .map(|j| w[[i, j]] as f64 * batch.images[[s, j]] as f64)
                        .sum::<f64>()
            })
            .collect();
        let m = z.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
        let sum: f64 = e.iter().sum();
        for i in 0..outs {
            let d = e[i] / sum - if batch.labels[s] == i { 1.0 } else { 0.0 };
            for j in 0..ins {
                g[i][j] += d * batch.images[[s, j]] as f64 / n as f64;
            }
        }
    }
    g
}

#[test]
fn scores_match_hand_computed_connection_sensitivities() {
    let mut layer = Linear::<f32>::new(3, 2, true, &mut seeded(4));
    let batches = [tiny_batch(5, 1), tiny_batch(4, 2)];
    let w = layer.weight.raw.value().clone();
    let b = layer.bias.as_ref().unwrap().value().clone();
    let g1 = hand_grad(&w, &b, &batches[0]);
    let g2 = hand_grad(&w, &b, &batches[1]);
    let mut s = vec![0.0; 6];
    for i in 0..2 {
        for j in 0..3 {
            s[3 * i + j] = ((g1[i][j] + g2[i][j]) * w[[i, j]] as f64).abs();
        }
    }
    let total: f64 = s.iter().sum();
    let got = snip_scores(&mut layer, &batches);
    assert_eq!(got.len(), 1);
    for (k, (a, e)) in got[0].iter().zip(&s).enumerate() {
        assert!(
            (a - e / total).abs() <= 1e-5,
            "entry {k}: {a} vs {}",
            e / total
        );
    }
    assert!((got[0].iter().sum::<f64>() - 1.0).abs() < 1e-12);
}

fn snip(target: f64, distribution: Distribution, options: SnipOptions) -> Snip {
    let context = TrainContext {
        shared: SharedOptions {
            target_sparsity: Some(target),
            distribution,
            ..SharedOptions::default()
        },
        epochs: 1,
        lr: 0.05,
        weight_decay: 5e-4,
        seed: 0,
    };
    Snip::build(&options, &context).unwrap()
}

/// Prunes a LeNet-300 of seed 1 with `method` on a synthetic set; returns the model.
fn pruned(method: &mut Snip) -> Box<dyn Module<f32>> {
    let spec = spec("lenet300");
    let mut model = model(&spec, 1);
    method.attach(model.as_mut()).unwrap();
    let data = synthetic(64, 10, 3);
    with_init_data(&data, &spec, 32, 0, |d| method.init(model.as_mut(), d)).unwrap();
    model
}

/// The scores SNIP sees for a LeNet-300 of seed `seed` on the same data.
fn reference_scores(seed: u64, batches: usize) -> Vec<Vec<f64>> {
    let spec = spec("lenet300");
    let data = synthetic(64, 10, 3);
    let mut m = model(&spec, seed);
    with_init_data(&data, &spec, 32, 0, |d| {
        snip_scores(m.as_mut(), &d.batches(batches))
    })
}

#[test]
fn global_distribution_keeps_the_top_scores_over_all_layers() {
    let mut method = snip(
        0.9,
        Distribution::Global,
        SnipOptions {
            score_batches: 2,
            ..SnipOptions::default()
        },
    );
    let model = pruned(&mut method);
    let scores = reference_scores(1, 2);
    let pruned = masked_out(model.as_ref());
    let total: usize = pruned.iter().map(Vec::len).sum();
    let count: usize = pruned.iter().flatten().filter(|p| **p).count();
    assert_eq!(count, (0.9 * total as f64).round() as usize);
    let (mut max_pruned, mut min_kept) = (f64::MIN, f64::MAX);
    for (s, p) in scores.iter().flatten().zip(pruned.iter().flatten()) {
        if *p {
            max_pruned = max_pruned.max(*s);
        } else {
            min_kept = min_kept.min(*s);
        }
    }
    assert!(max_pruned <= min_kept, "{max_pruned} > {min_kept}");
    // Not uniform: the layers end at different sparsities.
    let rates: Vec<f64> = pruned
        .iter()
        .map(|p| p.iter().filter(|x| **x).count() as f64 / p.len() as f64)
        .collect();
    assert!((rates[0] - rates[2]).abs() > 0.01, "{rates:?}");
}

#[test]
fn uniform_distribution_prunes_every_layer_alike() {
    let mut method = snip(0.8, Distribution::Uniform, SnipOptions::default());
    let model = pruned(&mut method);
    for p in masked_out(model.as_ref()) {
        let rate = p.iter().filter(|x| **x).count() as f64 / p.len() as f64;
        assert!((rate - 0.8).abs() < 1e-3, "{rate}");
    }
}

#[test]
fn other_init_scores_another_network_and_trains_its_own() {
    let mut own = snip(0.9, Distribution::Global, SnipOptions::default());
    let mut other = snip(
        0.9,
        Distribution::Global,
        SnipOptions {
            snip_other_init: true,
            ..SnipOptions::default()
        },
    );
    let a = pruned(&mut own);
    let b = pruned(&mut other);
    assert_ne!(masked_out(a.as_ref()), masked_out(b.as_ref()));
    // The trained weights are the run's own initialisation, pruned.
    let init = raw_weights(model(&spec("lenet300"), 1).as_ref());
    for ((name, w), (_, w0)) in raw_weights(b.as_ref()).iter().zip(&init) {
        for (x, y) in w.iter().zip(w0.iter()) {
            assert!(*x == 0.0 || x.to_bits() == y.to_bits(), "{name}");
        }
    }
}

#[test]
fn masks_stay_exact_through_training() {
    let mut method = snip(0.95, Distribution::Global, SnipOptions::default());
    let mut model = pruned(&mut method);
    let before = masked_out(model.as_ref());
    let mut opt = sgd_for(&method, 0.05, 5e-4);
    for (i, batch) in random_batches(5, 16, 784, 10, 9).iter().enumerate() {
        let info = StepInfo {
            epoch: 0,
            step: i,
            steps_per_epoch: 5,
            total_steps: 5,
        };
        step(model.as_mut(), &mut method, &mut opt, batch, info);
        assert_eq!(masked_out(model.as_ref()), before);
        for ((name, w), p) in raw_weights(model.as_ref()).iter().zip(&before) {
            for (v, p) in w.iter().zip(p) {
                assert!(!*p || v.to_bits() == 0, "{name} revived");
            }
        }
    }
}

#[test]
fn whole_run_reaches_the_exact_target() {
    let dir = temp_dir("snip-run");
    let mut config = short(&dir, "snip", 1);
    config.sparsity.shared.target_sparsity = Some(0.9);
    config.sparsity.shared.distribution = Distribution::Global;
    let summary = finish(&config);
    assert_eq!(
        summary.params_nonzero,
        266200 - (0.9f64 * 266200.0).round() as usize
    );
    assert!(summary.test_accuracy > 0.5, "{}", summary.test_accuracy);
}

#[test]
fn snip_settings() {
    assert_refused(
        "train --method snip",
        "--method snip needs --target-sparsity",
    );
    assert_refused(
        "train --method snip --target-sparsity 0.9 --score-batches 0",
        "--score-batches must be at least 1",
    );
    assert_refused(
        "train --method grasp --target-sparsity 0.9 --snip-other-init",
        "--snip-other-init is not used by --method grasp",
    );
}
