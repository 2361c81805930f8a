//! Unit tests of the order statistics and density estimates behind the sparsity bridge.

use super::*;

#[test]
fn order_statistics_equal_those_of_a_full_sort() {
    // Large enough for the parallel path; signed values, zeros of both signs, repeats.
    let mut rng = crate::rng::seeded(3);
    let mut values: Vec<f64> = (0..50_000)
        .map(|i| match i % 7 {
            0 => 0.0,
            1 => -0.0,
            2 => (i % 13) as f64 - 6.0,
            _ => crate::rng::standard_normal(&mut rng),
        })
        .collect();
    let picked = order_statistics(values.clone(), 100);
    values.sort_unstable_by(f64::total_cmp);
    let expected: Vec<f64> = (0..100)
        .map(|i| values[((2 * i + 1) * values.len()) / 200])
        .collect();
    assert_eq!(picked.len(), 100);
    for (p, e) in picked.iter().zip(&expected) {
        assert_eq!(p.to_bits(), e.to_bits());
    }
}

#[test]
fn total_order_keys_sort_like_total_cmp_and_invert() {
    let values = [
        f64::NEG_INFINITY,
        -2.5,
        -1e-300,
        -0.0,
        0.0,
        1e-300,
        3.0,
        f64::INFINITY,
    ];
    for pair in values.windows(2) {
        assert!(
            total_order_key(pair[0]) < total_order_key(pair[1]),
            "{pair:?}"
        );
    }
    for v in values {
        assert_eq!(
            from_total_order_key(total_order_key(v)).to_bits(),
            v.to_bits()
        );
    }
}

#[test]
fn order_statistics_pick_evenly_spaced_ranks() {
    // 0..1000 shuffled deterministically: rank r holds value r.
    let values: Vec<f64> = (0..1000).map(|i| ((i * 7919) % 1000) as f64).collect();
    let s = order_statistics(values, 4);
    assert_eq!(s, vec![125.0, 375.0, 625.0, 875.0]);
    assert_eq!(
        order_statistics(vec![3.0, 1.0, 2.0], 5),
        vec![1.0, 2.0, 3.0]
    );
}

#[test]
fn silverman_matches_hand_computation() {
    // sample 1..=5: sd = sqrt(2.5), quartiles 2 and 4, IQR/1.34 = 1.4925..; min is sd = 1.5811..
    let sorted = [1.0, 2.0, 3.0, 4.0, 5.0];
    let expected = 0.9 * (2.0f64 / 1.34) * 5f64.powf(-0.2);
    assert!((silverman(&sorted) - expected).abs() < 1e-15);
}

#[test]
fn histogram_density_integrates_to_one_and_follows_searchsorted() {
    let values: Vec<f64> = (0..100).map(|i| i as f64 / 99.0).collect();
    let DensityEstimate::Histogram { density, min, max } = histogram(&values, 10) else {
        panic!("not degenerate")
    };
    let width = (max - min) / 10.0;
    let total: f64 = density.iter().map(|d| d * width).sum();
    assert!((total - 1.0).abs() < 1e-12);
    let est = histogram(&values, 10);
    assert_eq!(est.pdf(1.0), 0.0, "x == max is outside searchsorted's bins");
    assert_eq!(est.pdf(-0.1), 0.0);
    assert_eq!(est.pdf(0.0), density[0]);
}

#[test]
fn equal_weights_give_a_degenerate_estimate() {
    let w = Tensor::<f64>::from_elem(ndarray::IxDyn(&[10]), 0.3);
    assert_eq!(Density::paper().estimate(&w), DensityEstimate::Degenerate);
    assert_eq!(
        Density::authors_code().estimate(&w),
        DensityEstimate::Degenerate
    );
    let silverman = Density::Kde {
        bandwidth: Bandwidth::Silverman,
        samples: 100,
    };
    assert_eq!(silverman.estimate(&w), DensityEstimate::Degenerate);
}
