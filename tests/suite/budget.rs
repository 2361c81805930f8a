//! Sparsity budgets: golden values from the method notes, and exactness of every allocation.

use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;
use sparsegrad::sparsity::budget::{Budget, allocate, erdos_renyi_densities, lamp_scores};

fn zeros(shape: &[usize]) -> ArrayD<f64> {
    ArrayD::zeros(IxDyn(shape))
}

const LENET300: [&[usize]; 3] = [&[300, 784], &[100, 300], &[10, 100]];
const LENET5: [&[usize]; 4] = [&[20, 1, 5, 5], &[50, 20, 5, 5], &[500, 800], &[10, 500]];

#[test]
fn erk_lenet300_at_90_percent_matches_golden() {
    let d = erdos_renyi_densities(&LENET300, 0.9, 1.0, true);
    let s: Vec<f64> = d.iter().map(|d| 1.0 - d).collect();
    assert_eq!(s.len(), 3, "one sparsity per layer: {s:?}");
    for (got, want) in s.iter().zip([0.9204, 0.7698, 0.0]) {
        assert!((got - want).abs() < 5e-5, "ERK sparsities {s:?}");
    }
}

#[test]
fn erk_lenet5_at_90_percent_matches_golden() {
    let d = erdos_renyi_densities(&LENET5, 0.9, 1.0, true);
    let s: Vec<f64> = d.iter().map(|d| 1.0 - d).collect();
    assert_eq!(s.len(), 4, "one sparsity per layer: {s:?}");
    for (got, want) in s.iter().zip([0.0, 0.9129, 0.9116, 0.0]) {
        assert!((got - want).abs() < 5e-5, "ERK sparsities {s:?}");
    }
}

#[test]
fn er_ignores_kernel_dims() {
    // ER on conv2 [50, 20, 5, 5] uses (50 + 20) / (50 * 20); ERK uses (50+20+5+5) / 25000.
    let er = erdos_renyi_densities(&LENET5, 0.9, 1.0, false);
    let erk = erdos_renyi_densities(&LENET5, 0.9, 1.0, true);
    assert_ne!(er, erk);
    let raw_ratio = er[1] / er[2];
    assert!(
        (raw_ratio - (70.0 / 1000.0) / (1300.0 / 400000.0)).abs() < 1e-9,
        "{raw_ratio}"
    );
}

#[test]
fn lamp_scores_match_golden() {
    let s = lamp_scores(&[1.0, 2.0, 3.0, 4.0]);
    let want = [1.0 / 30.0, 4.0 / 29.0, 9.0 / 25.0, 1.0];
    for (a, b) in s.iter().zip(want) {
        assert!((a - b).abs() < 1e-12, "{s:?}");
    }
    // Scores follow |w|, not the layer order.
    let s = lamp_scores(&[-4.0, 1.0, 3.0, -2.0]);
    assert_eq!(s, vec![1.0, 1.0 / 30.0, 9.0 / 25.0, 4.0 / 29.0]);
}

#[test]
fn uniform_first_layer_dense_compensates() {
    let layers: Vec<ArrayD<f64>> = LENET300.iter().map(|s| zeros(s)).collect();
    let named: Vec<(&str, &ArrayD<f64>)> = ["fc1", "fc2", "fc3"]
        .into_iter()
        .zip(layers.iter())
        .collect();
    let a = allocate(
        &Budget::Uniform {
            first_layer_dense: true,
        },
        &named,
        0.05,
    )
    .unwrap();
    assert_eq!(a.layers[0].prune, 0);
    assert_eq!(a.total_pruned(), (0.05f64 * 266200.0).round() as usize);
    let err = allocate(
        &Budget::Uniform {
            first_layer_dense: true,
        },
        &named,
        0.5,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "--target-sparsity 0.5 cannot be met with the dense layers kept dense (the other layers hold 11.6% of the weights)"
    );
}

#[test]
fn bad_targets_are_errors() {
    let w = zeros(&[2, 2]);
    let err = allocate(&Budget::Lamp, &[("fc", &w)], 1.5).unwrap_err();
    assert_eq!(
        err.to_string(),
        "--target-sparsity must be in [0, 1], got 1.5"
    );
}

fn budgets() -> impl Strategy<Value = Budget> {
    prop_oneof![
        any::<bool>().prop_map(|first_layer_dense| Budget::Uniform { first_layer_dense }),
        (0.5f64..1.5).prop_map(|power_scale| Budget::Erk { power_scale }),
        Just(Budget::Er),
        any::<bool>().prop_map(|normalised| Budget::GlobalMagnitude { normalised }),
        Just(Budget::Lamp),
    ]
}

fn layer_set() -> impl Strategy<Value = Vec<ArrayD<f64>>> {
    proptest::collection::vec(
        proptest::collection::vec(1usize..6, 2..=4).prop_flat_map(|shape| {
            let n: usize = shape.iter().product();
            proptest::collection::vec(-1.0f64..1.0, n)
                .prop_map(move |v| ArrayD::from_shape_vec(IxDyn(&shape), v).unwrap())
        }),
        1..5,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Every budget meets the global target to the weight, and never prunes more than a layer has.
    #[test]
    fn every_allocation_meets_the_target_exactly(budget in budgets(), layers in layer_set(), target in 0.0f64..=1.0) {
        let named: Vec<(&str, &ArrayD<f64>)> = layers.iter().map(|w| ("layer", w)).collect();
        match allocate(&budget, &named, target) {
            Ok(a) => {
                let total: usize = layers.iter().map(|w| w.len()).sum();
                prop_assert_eq!(a.total_pruned(), (target * total as f64).round() as usize);
                for l in &a.layers {
                    prop_assert!(l.prune <= l.params);
                }
                // Shape-based budgets: each layer within one weight of its real-valued allocation.
                let shapes: Vec<&[usize]> = layers.iter().map(|w| w.shape()).collect();
                let densities = match budget {
                    Budget::Erk { power_scale } => Some(erdos_renyi_densities(&shapes, target, power_scale, true)),
                    Budget::Er => Some(erdos_renyi_densities(&shapes, target, 1.0, false)),
                    Budget::Uniform { first_layer_dense: false } => Some(vec![1.0 - target; layers.len()]),
                    _ => None,
                };
                for (l, d) in a.layers.iter().zip(densities.into_iter().flatten()) {
                    let ideal = l.params as f64 * (1.0 - d);
                    prop_assert!((l.prune as f64 - ideal).abs() < 1.0 + 1e-9, "{} vs {}", l.prune, ideal);
                }
            }
            // Only a dense first layer can make a target unreachable.
            Err(e) => prop_assert!(matches!(budget, Budget::Uniform { first_layer_dense: true }), "{}", e),
        }
    }
}
