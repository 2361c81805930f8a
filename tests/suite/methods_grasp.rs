//! GraSP (`--method grasp`, `src/methods/grasp.rs`): scores −θ ⊙ (H g) against values computed by
//! hand on a one-layer network (the softmax cross-entropy Hessian written out, temperature and
//! the authors' two halves included), removal of the highest scores globally, masks exact
//! through training, command-line errors.

use crate::cli_support::assert_refused;
use crate::methods_support::*;
use crate::survey_support::*;
use sparsegrad::data::Batch;
use sparsegrad::dual::Dual64;
use sparsegrad::methods::grasp::{Grasp, GraspOptions, grasp_scores, halves, mask_like};
use sparsegrad::methods::prune::masked_out;
use sparsegrad::methods::{Method, Plugin, SharedOptions, StepInfo, TrainContext};
use sparsegrad::models::build_as;
use sparsegrad::nn::{Linear, Module};
use sparsegrad::rng::seeded;
use sparsegrad::sparsity::budget::Distribution;
use sparsegrad::tape::Tensor;

/// Softmax probabilities of z = (W x_s + b) / T.
fn probs(w: &Tensor<f32>, b: &Tensor<f32>, x: &Tensor<f32>, s: usize, t: f64) -> Vec<f64> {
    let (outs, ins) = (w.shape()[0], w.shape()[1]);
    let z: Vec<f64> = (0..outs)
        .map(|i| {
            let mut v = b[[i]] as f64;
            for j in 0..ins {
                v += w[[i, j]] as f64 * x[[s, j]] as f64;
            }
            v / t
        })
        .collect();
    let m = z.iter().cloned().fold(f64::MIN, f64::max);
    let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|v| v / sum).collect()
}

/// GraSP's score on a linear layer, by hand: per part P of m samples,
/// g_P[i][j] = (1/m) Σ_s (p_si - y_si) x_sj / T and
/// H_P[(i,j),(k,l)] = (1/m) Σ_s (δ_ik p_si - p_si p_sk) x_sj x_sl / T²;
/// g = Σ_P g_P, Hg = Σ_P H_P g, score = -w ⊙ Hg.
fn hand_scores(w: &Tensor<f32>, b: &Tensor<f32>, parts: &[Batch<f32>], t: f64) -> Vec<f64> {
    let (outs, ins) = (w.shape()[0], w.shape()[1]);
    let mut g = vec![0.0; outs * ins];
    for part in parts {
        let m = part.labels.len() as f64;
        for s in 0..part.labels.len() {
            let p = probs(w, b, &part.images, s, t);
            for i in 0..outs {
                let d = p[i] - if part.labels[s] == i { 1.0 } else { 0.0 };
                for j in 0..ins {
                    g[i * ins + j] += d * part.images[[s, j]] as f64 / (m * t);
                }
            }
        }
    }
    let mut hg = vec![0.0; outs * ins];
    for part in parts {
        let m = part.labels.len() as f64;
        for s in 0..part.labels.len() {
            let p = probs(w, b, &part.images, s, t);
            let x = |j: usize| part.images[[s, j]] as f64;
            for i in 0..outs {
                for j in 0..ins {
                    let mut sum = 0.0;
                    for k in 0..outs {
                        let a = if i == k { p[i] } else { 0.0 } - p[i] * p[k];
                        for l in 0..ins {
                            sum += a * x(j) * x(l) * g[k * ins + l];
                        }
                    }
                    hg[i * ins + j] += sum / (m * t * t);
                }
            }
        }
    }
    (0..outs * ins)
        .map(|q| -(w.as_slice().unwrap()[q] as f64) * hg[q])
        .collect()
}

#[test]
fn scores_match_the_hand_computed_hessian_product() {
    let layer = Linear::<f32>::new(4, 3, true, &mut seeded(5));
    let mut twin = Linear::<Dual64>::new(4, 3, true, &mut seeded(0));
    let (x, labels) = random_batches(1, 6, 4, 3, 8).remove(0);
    let batch = Batch { images: x, labels };
    let parts = halves(&batch);
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].labels, batch.labels[..3]);
    let w = layer.weight.raw.value().clone();
    let b = layer.bias.as_ref().unwrap().value().clone();
    for t in [1.0, 200.0] {
        let expected = hand_scores(&w, &b, &parts, t);
        let got = grasp_scores(&layer, &mut twin, &parts, t).unwrap();
        let scale = expected.iter().map(|v| v.abs()).fold(0.0, f64::max);
        assert!(scale > 0.0);
        for (q, (a, e)) in got[0].iter().zip(&expected).enumerate() {
            assert!((a - e).abs() <= 1e-9 * scale, "T {t} entry {q}: {a} vs {e}");
        }
    }
}

fn grasp(target: f64, distribution: Distribution) -> Grasp {
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
    Grasp::build(&GraspOptions::default(), &context).unwrap()
}

#[test]
fn removes_the_highest_scores_globally_and_masks_stay_exact() {
    let spec = spec("lenet300");
    let data = synthetic(200, 10, 4);
    let mut method = grasp(0.9, Distribution::Global);
    let mut model = model(&spec, 1);
    method.attach(model.as_mut()).unwrap();
    with_init_data(&data, &spec, 32, 0, |d| method.init(model.as_mut(), d)).unwrap();
    // The scores on an identical network and the same images.
    let reference = model_with_masks(&spec);
    let scores = with_init_data(&data, &spec, 32, 0, |d| {
        let batch = d.per_class(10).unwrap();
        let mut twin = build_as::<Dual64>(&spec, &mut seeded(0)).unwrap();
        mask_like(reference.as_ref(), twin.as_mut());
        grasp_scores(reference.as_ref(), twin.as_mut(), &halves(&batch), 200.0).unwrap()
    });
    let pruned = masked_out(model.as_ref());
    let total: usize = pruned.iter().map(Vec::len).sum();
    let count: usize = pruned.iter().flatten().filter(|p| **p).count();
    assert_eq!(count, (0.9 * total as f64).round() as usize);
    let (mut min_pruned, mut max_kept) = (f64::MAX, f64::MIN);
    for (s, p) in scores.iter().flatten().zip(pruned.iter().flatten()) {
        if *p {
            min_pruned = min_pruned.min(*s);
        } else {
            max_kept = max_kept.max(*s);
        }
    }
    assert!(
        max_kept <= min_pruned,
        "kept {max_kept} > removed {min_pruned}"
    );
    // Training keeps the mask and the pruned weights at exactly zero.
    let mut opt = sgd_for(&method, 0.05, 5e-4);
    for (i, batch) in random_batches(3, 16, 784, 10, 9).iter().enumerate() {
        let info = StepInfo {
            epoch: 0,
            step: i,
            steps_per_epoch: 3,
            total_steps: 3,
        };
        step(model.as_mut(), &mut method, &mut opt, batch, info);
        assert_eq!(masked_out(model.as_ref()), pruned);
        for ((name, w), p) in raw_weights(model.as_ref()).iter().zip(&pruned) {
            for (v, p) in w.iter().zip(p) {
                assert!(!*p || v.to_bits() == 0, "{name} revived");
            }
        }
    }
}

/// A LeNet-300 of seed 1 with all-ones masks (what GraSP scores at init).
fn model_with_masks(spec: &sparsegrad::models::ModelSpec) -> Box<dyn Module<f32>> {
    let mut m = model(spec, 1);
    sparsegrad::methods::prune::attach_masks(m.as_mut(), false, false, None).unwrap();
    m
}

#[test]
fn whole_run_reaches_the_exact_target() {
    let dir = temp_dir("grasp-run");
    let mut config = short(&dir, "grasp", 1);
    config.sparsity.shared.target_sparsity = Some(0.95);
    config.sparsity.shared.distribution = Distribution::Global;
    let summary = finish(&config);
    assert_eq!(
        summary.params_nonzero,
        266200 - (0.95f64 * 266200.0).round() as usize
    );
    assert!(summary.test_accuracy > 0.5, "{}", summary.test_accuracy);
}

#[test]
fn grasp_settings() {
    assert_refused(
        "train --method grasp",
        "--method grasp needs --target-sparsity",
    );
    assert_refused(
        "train --method grasp --target-sparsity 0.9 --score-samples-per-class 0",
        "--score-samples-per-class must be at least 1",
    );
    assert_refused(
        "train --method grasp --target-sparsity 0.9 --grasp-temperature 0",
        "--grasp-temperature must be positive, got 0",
    );
    assert_refused(
        "train --method grasp --target-sparsity 0.9 --distribution lamp",
        "--method grasp cannot use --distribution lamp (LAMP assumes magnitude scores; GraSP's have both signs)",
    );
    assert_refused(
        "train --method snip --target-sparsity 0.9 --grasp-temperature 100",
        "--grasp-temperature is not used by --method snip",
    );
}
