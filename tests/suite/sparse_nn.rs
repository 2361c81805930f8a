//! Masked models on the sparse kernels (`nn::sparse`): the same loss and gradients as the dense
//! masked path, pruned weights stay exactly zero under SGD, the pattern is rebuilt only when the
//! mask changes, and the selection rule's documented decisions.

use ndarray::IxDyn;
use sparsegrad::kernels::sparse_conv::SparseConvShape;
use sparsegrad::kernels::sparse_select::{SparseLayer, prefer_sparse};
use sparsegrad::models::lenet5::{LeNet5, LeNet5Options};
use sparsegrad::models::lenet300::LeNet300;
use sparsegrad::nn::{Module, SparseKernels, set_sparse_kernels, sparse_layers};
use sparsegrad::optim::{self, Sgd, SgdConfig};
use sparsegrad::prelude::*;
use sparsegrad::rng::{Rng, seeded, uniform};
use sparsegrad::sparsity::mask::Mask;

/// Puts a random mask keeping about `density` of each weight on every weight of `model`.
fn mask_randomly<F: Float>(model: &mut dyn Module<F>, density: f64, rng: &mut Rng) {
    model.visit_weights_mut("", &mut |_, w| {
        let shape = w.raw.shape().to_vec();
        let mask = Tensor::from_shape_simple_fn(IxDyn(&shape), || {
            if uniform(rng, 0.0, 1.0) < density {
                F::one()
            } else {
                F::zero()
            }
        });
        w.transform = Some(Box::new(Mask::from_tensor(mask).unwrap()));
        w.reapply_mask();
    });
}

fn batch<F: Float>(shape: &[usize], seed: u64) -> (Tensor<F>, Vec<usize>) {
    let mut rng = seeded(seed);
    let x = Tensor::from_shape_simple_fn(IxDyn(shape), || F::c(uniform(&mut rng, -1.0, 1.0)));
    let labels = (0..shape[0]).map(|i| (i * 7) % 10).collect();
    (x, labels)
}

/// Loss and every parameter gradient (by name) of one step.
fn loss_and_grads<F: Float>(
    model: &mut dyn Module<F>,
    x: &Tensor<F>,
    labels: &[usize],
) -> (F, Vec<(String, Tensor<F>)>) {
    let tape = Tape::<F>::new();
    let loss = model
        .forward(tape.constant(x.clone()))
        .cross_entropy(labels, 0.0);
    let value = loss.item();
    let grads = loss.backward();
    let mut out = Vec::new();
    model.visit("", &mut |name, p| {
        if let Some(g) = grads.of(p) {
            out.push((name.to_string(), g.clone()));
        }
    });
    (value, out)
}

fn assert_same_step<F: Float>(
    sparse: (F, Vec<(String, Tensor<F>)>),
    dense: (F, Vec<(String, Tensor<F>)>),
    tol: f64,
) {
    assert!(
        (sparse.0.f64() - dense.0.f64()).abs() <= tol * (1.0 + dense.0.f64().abs()),
        "loss: sparse {} vs dense {}",
        sparse.0,
        dense.0
    );
    assert_eq!(
        sparse.1.len(),
        dense.1.len(),
        "same parameters get gradients"
    );
    for ((name, s), (dname, d)) in sparse.1.iter().zip(&dense.1) {
        assert_eq!(name, dname);
        let scale = 1.0 + d.iter().fold(0.0f64, |m, v| m.max(v.f64().abs()));
        for (a, b) in s.iter().zip(d) {
            assert!(
                (a.f64() - b.f64()).abs() <= tol * scale,
                "{name}: sparse {a} vs dense {b}"
            );
        }
    }
}

/// Runs the same step sparse and dense on one masked model.
fn check_model<F: Float>(model: &mut dyn Module<F>, x_shape: &[usize], tol: f64) {
    let (x, labels) = batch::<F>(x_shape, 3);
    set_sparse_kernels(model, SparseKernels::Off);
    let dense = loss_and_grads(model, &x, &labels);
    assert!(sparse_layers(model).is_empty());
    set_sparse_kernels(model, SparseKernels::On);
    let sparse = loss_and_grads(model, &x, &labels);
    let mut all = Vec::new();
    model.visit_weights("", &mut |name, _| all.push(name.to_string()));
    assert_eq!(sparse_layers(model), all, "every masked layer ran sparse");
    assert_same_step(sparse, dense, tol);
}

#[test]
fn sparse_lenet300_matches_dense_masked() {
    let mut rng = seeded(1);
    let mut model = LeNet300::<f64>::new(784, 10, &mut rng);
    mask_randomly(&mut model, 0.1, &mut rng);
    check_model(&mut model, &[20, 784], 1e-12);
}

#[test]
fn sparse_lenet5_matches_dense_masked() {
    let mut rng = seeded(2);
    let mut model =
        LeNet5::<f64>::new((1, 28, 28), 10, LeNet5Options::default(), &mut rng).unwrap();
    mask_randomly(&mut model, 0.1, &mut rng);
    check_model(&mut model, &[6, 1, 28, 28], 1e-12);
}

#[test]
fn sparse_lenet5_f32_matches_dense_masked() {
    let mut rng = seeded(3);
    let mut model =
        LeNet5::<f32>::new((1, 28, 28), 10, LeNet5Options::default(), &mut rng).unwrap();
    mask_randomly(&mut model, 0.1, &mut rng);
    check_model(&mut model, &[6, 1, 28, 28], 1e-5);
}

/// SGD with momentum and weight decay on the sparse path: pruned weights stay exactly +0.0, and
/// the trajectory follows the dense masked one to rounding.
#[test]
fn sparse_training_keeps_pruned_weights_zero_and_follows_dense() {
    let run = |mode: SparseKernels| {
        let mut rng = seeded(4);
        let mut model = LeNet300::<f64>::new(64, 10, &mut rng);
        mask_randomly(&mut model, 0.1, &mut rng);
        set_sparse_kernels(&mut model, mode);
        let mut opt = Sgd::new(SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 5e-4,
            ..SgdConfig::default()
        });
        for step in 0..5 {
            let (x, labels) = batch::<f64>(&[16, 64], 10 + step);
            let tape = Tape::<f64>::new();
            let loss = model.forward(tape.constant(x)).cross_entropy(&labels, 0.0);
            let grads = loss.backward();
            optim::step(&mut opt, &mut model, &grads);
        }
        model.visit_weights("", &mut |name, w| {
            let mask = w.transform.as_ref().unwrap().mask().unwrap();
            for (v, m) in w.raw.value().iter().zip(mask) {
                if *m == 0.0 {
                    assert!(v.to_bits() == 0, "{name}: pruned entry is {v}");
                }
            }
        });
        model.fc1.weight.raw.value().clone()
    };
    let (sparse, dense) = (run(SparseKernels::On), run(SparseKernels::Off));
    for (a, b) in sparse.iter().zip(&dense) {
        assert!((a - b).abs() <= 1e-10, "sparse {a} vs dense {b}");
    }
}

#[test]
fn sparse_pattern_is_rebuilt_only_when_the_mask_changes() {
    let mut rng = seeded(5);
    let mut model = LeNet300::<f32>::new(64, 10, &mut rng);
    mask_randomly(&mut model, 0.2, &mut rng);
    set_sparse_kernels(&mut model, SparseKernels::On);
    let (x, _) = batch::<f32>(&[4, 64], 6);
    for _ in 0..3 {
        let tape = Tape::<f32>::new();
        model.forward(tape.constant(x.clone()));
    }
    assert_eq!(model.fc1.weight.sparse_pattern_builds(), 1);
    let new_mask = Tensor::from_elem(IxDyn(&[300, 64]), 1.0f32);
    let transform = model.fc1.weight.transform.as_mut().unwrap();
    let mask = transform.as_any_mut().downcast_mut::<Mask<f32>>().unwrap();
    mask.set(new_mask).unwrap();
    let tape = Tape::<f32>::new();
    model.forward(tape.constant(x.clone()));
    assert_eq!(model.fc1.weight.sparse_pattern_builds(), 2);
    // A layer without a mask never runs sparse, whatever the mode.
    model.fc2.weight.transform = None;
    let tape = Tape::<f32>::new();
    model.forward(tape.constant(x));
    assert_eq!(sparse_layers(&model), ["fc1.weight", "fc3.weight"]);
}

/// The documented decisions of the calibrated rule.
#[test]
fn sparse_selection_rule_decisions() {
    let fc1 = SparseLayer::Linear {
        batch: 128,
        inputs: 784,
        outputs: 300,
    };
    assert!(prefer_sparse(&fc1, 0.05) && prefer_sparse(&fc1, 0.1));
    assert!(!prefer_sparse(&fc1, 0.2) && !prefer_sparse(&fc1, 1.0));
    let fc2 = SparseLayer::Linear {
        batch: 128,
        inputs: 300,
        outputs: 100,
    };
    // fc2 (3.8 M MACs) measured faster sparse from 90%; fc3 (0.13 M) is below the size floor.
    assert!(prefer_sparse(&fc2, 0.05) && prefer_sparse(&fc2, 0.1) && !prefer_sparse(&fc2, 0.2));
    let fc3 = SparseLayer::Linear {
        batch: 128,
        inputs: 100,
        outputs: 10,
    };
    assert!(!prefer_sparse(&fc3, 0.02), "too small to win");
    let conv = |c: usize, hw: usize, k: usize, pad: usize| {
        SparseLayer::Conv2d(SparseConvShape {
            batch: 128,
            in_channels: c,
            out_channels: c,
            groups: 1,
            in_hw: [hw, hw],
            kernel: [k, k],
            stride: [1, 1],
            padding: [pad, pad],
            dilation: [1, 1],
        })
    };
    for layer in [conv(16, 32, 3, 1), conv(32, 16, 3, 1), conv(64, 8, 3, 1)] {
        assert!(prefer_sparse(&layer, 0.05) && prefer_sparse(&layer, 0.1));
        assert!(!prefer_sparse(&layer, 0.5));
    }
    assert!(prefer_sparse(&conv(20, 12, 5, 0), 0.1));
}

/// `auto` on a 95%-sparse LeNet-300 at batch 128 runs fc1 and fc2 sparse and fc3 (below the size
/// floor) dense, with and without gradient, and gives the dense path's outputs to rounding.
#[test]
fn auto_runs_fc1_and_fc2_sparse_at_95_percent() {
    let mut rng = seeded(8);
    let mut model = LeNet300::<f32>::new(784, 10, &mut rng);
    mask_randomly(&mut model, 0.05, &mut rng);
    let (x, _) = batch::<f32>(&[128, 784], 9);
    let forward = |model: &mut LeNet300<f32>, mode, grad: bool| {
        set_sparse_kernels(model, mode);
        let tape = Tape::<f32>::new();
        let _guard = (!grad).then(|| tape.no_grad());
        let y = model.forward(tape.constant(x.clone())).value();
        (y, sparse_layers(model))
    };
    let (dense, none) = forward(&mut model, SparseKernels::Off, false);
    assert!(none.is_empty());
    for grad in [true, false] {
        let (y, layers) = forward(&mut model, SparseKernels::Auto, grad);
        assert_eq!(layers, ["fc1.weight", "fc2.weight"]);
        for (a, b) in y.iter().zip(dense.iter()) {
            assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs dense {b}");
        }
    }
}
