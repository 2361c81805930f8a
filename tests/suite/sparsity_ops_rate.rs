//! `sparsity_rate` (`src/ops/sparsity.rs`, densities in `src/ops/density.rs`; FCPTS's bridge
//! from a threshold to a sparsity): the forward as an exact count, the backward against the
//! derivative of the smoothed CDF it stands for (KDE with a fixed or Silverman bandwidth) or the
//! authors' histogram density, and its conventions at the threshold and for degenerate weights.
//! Rows of `docs/gradients.md` ("Sparsity primitives").

use ndarray::{ArrayD, IxDyn, array};
use proptest::prelude::*;
use sparsegrad::check::strategies::{away_from, shape, tensor};
use sparsegrad::ops::sparsity::{Bandwidth, Density, DensityEstimate, Surrogate};
use sparsegrad::tape::{Tape, Tensor};

use crate::common::{close, derivative, proptest_config, scalar};

/// Weights of random shape (up to 4 x 4 x 4 x 4 = 256 entries, so both N < 100 and N > 100 occur)
/// and a threshold in [0, 1.5].
fn rate_case() -> impl Strategy<Value = (Tensor<f64>, f64)> {
    (
        shape(4, 4).prop_flat_map(|sh| tensor(sh, -2.0, 2.0)),
        0.0..1.5f64,
    )
}

fn rate_and_gradient(w: &Tensor<f64>, t: f64, density: &Density) -> (f64, f64) {
    let tape = Tape::<f64>::new();
    let (wv, tv) = (tape.leaf(w.clone()), tape.leaf(scalar(t)));
    let r = wv.sparsity_rate(tv, density);
    let value = r.item();
    let grads = r.backward();
    assert!(
        grads.wrt(wv).is_none(),
        "sparsity_rate must not send a gradient to w"
    );
    (value, grads.wrt(tv).unwrap()[[]])
}

/// The standard normal CDF by composite Simpson integration of the density (independent of the
/// code under test; error far below the finite-difference step's).
fn normal_cdf(z: f64) -> f64 {
    if z.abs() > 12.0 {
        return if z > 0.0 { 1.0 } else { 0.0 };
    }
    let n = 2000;
    let h = z / n as f64;
    let phi = |x: f64| (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
    let mut sum = phi(0.0) + phi(z);
    for i in 1..n {
        sum += if i % 2 == 1 { 4.0 } else { 2.0 } * phi(i as f64 * h);
    }
    0.5 + sum * h / 3.0
}

/// r_smooth(t) = (1/n) sum_i [Phi((t - w_i)/h) - Phi((-t - w_i)/h)]: the KDE-smoothed fraction
/// of weights in [-t, t], whose derivative is what the bridge's backward approximates.
fn r_smooth(sample: &[f64], h: f64, t: f64) -> f64 {
    sample
        .iter()
        .map(|&wi| normal_cdf((t - wi) / h) - normal_cdf((-t - wi) / h))
        .sum::<f64>()
        / sample.len() as f64
}

fn population_std(w: &Tensor<f64>) -> f64 {
    let n = w.len() as f64;
    let mean = w.sum() / n;
    (w.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt()
}

proptest! {
    #![proptest_config(proptest_config())]

    /// Forward: the exact fraction of |w| <= t, including weights exactly at t.
    #[test]
    fn sparsity_rate_forward_is_exact_count((w, t) in rate_case(), at_t in 0usize..3) {
        let mut w = w;
        for (i, x) in w.iter_mut().take(at_t).enumerate() {
            *x = if i % 2 == 0 { t } else { -t };
        }
        let (r, _) = rate_and_gradient(&w, t, &Density::paper());
        let count = w.iter().filter(|x| x.abs() <= t).count();
        prop_assert_eq!(r, count as f64 / w.len() as f64);
    }

    /// Backward (KDE, fixed bandwidth h = 0.5 in units of the weights' std): dr/dt equals the
    /// numerical derivative of r_smooth on the same sample with h_raw = 0.5 sigma.
    #[test]
    fn sparsity_rate_kde_backward_is_derivative_of_smoothed_cdf((w, t) in rate_case()) {
        let density = Density::paper();
        let DensityEstimate::Kde { sample, bandwidth } = density.estimate(&w) else {
            return Ok(()); // all weights equal: degenerate, covered by its own test
        };
        prop_assert!(close(bandwidth, 0.5 * population_std(&w), 1e-12));
        prop_assert_eq!(sample.len(), w.len().min(100));
        let (_, analytic) = rate_and_gradient(&w, t, &density);
        let numeric = derivative(|t| r_smooth(&sample, bandwidth, t), t, 1e-5 * bandwidth);
        prop_assert!(close(analytic, numeric, 1e-6), "analytic {analytic} vs numeric {numeric}");
    }

    /// Backward (KDE, Silverman's bandwidth on the sample): the same property.
    #[test]
    fn sparsity_rate_silverman_backward_is_derivative_of_smoothed_cdf((w, t) in rate_case()) {
        let density = Density::Kde { bandwidth: Bandwidth::Silverman, samples: 100 };
        let DensityEstimate::Kde { sample, bandwidth } = density.estimate(&w) else {
            return Ok(());
        };
        let (_, analytic) = rate_and_gradient(&w, t, &density);
        let numeric = derivative(|t| r_smooth(&sample, bandwidth, t), t, 1e-5 * bandwidth);
        prop_assert!(close(analytic, numeric, 1e-6), "analytic {analytic} vs numeric {numeric}");
    }

    /// Backward (the authors' 100-bin histogram): dr/dt = hist(t) + hist(-t), with the histogram
    /// recomputed here bin by bin (t kept off bin edges).
    #[test]
    fn sparsity_rate_histogram_backward_is_histogram_density((w, t) in rate_case(), bins in 1usize..120) {
        let values: Vec<f64> = w.iter().copied().collect();
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        prop_assume!(max > min);
        let width = (max - min) / bins as f64;
        let edge = |b: usize| min + b as f64 * width;
        let t = away_from(t, &(0..=bins).flat_map(|b| [edge(b), -edge(b)]).collect::<Vec<_>>(), 1e-9);
        let hist = |x: f64| -> f64 {
            (0..bins)
                .find(|&b| x > edge(b) && x < edge(b + 1))
                .map(|b| {
                    let last = b + 1 == bins;
                    let count = values
                        .iter()
                        .filter(|&&v| v >= edge(b) && (v < edge(b + 1) || (last && v <= max)))
                        .count();
                    count as f64 / (values.len() as f64 * width)
                })
                .unwrap_or(0.0)
        };
        let (_, analytic) = rate_and_gradient(&w, t, &Density::Histogram { bins });
        let expected = hist(t) + hist(-t);
        prop_assert!(close(analytic, expected, 1e-9), "analytic {analytic} vs histogram {expected}");
    }
}

/// Convention: the rate counts |w| = t as pruned, so it always equals the sparsity of
/// sign_mask(w, t) (t >= 0), also when weights sit exactly on the threshold or are exactly 0.
#[test]
fn sparsity_rate_equals_sign_mask_sparsity_at_the_threshold() {
    let w = array![0.25, -0.25, 0.0, 0.3, -0.1, 0.5, 0.25, -0.7].into_dyn();
    for t in [0.0, 0.1, 0.25, 0.3, 0.7, 1.0] {
        let tape = Tape::<f64>::new();
        let (wv, tv) = (tape.leaf(w.clone()), tape.leaf(scalar(t)));
        let r = wv.sparsity_rate(tv, &Density::paper()).item();
        let masked = wv.sign_mask(tv, Surrogate::ClippedIdentity).value();
        assert_eq!(r, sparsegrad::sparsity::sparsity(&masked), "t = {t}");
    }
}

/// Equal weights have no spread: the density is degenerate and t gets a zero gradient.
#[test]
fn sparsity_rate_degenerate_weights_give_zero_gradient() {
    let w = ArrayD::from_elem(IxDyn(&[3, 4]), 0.2);
    for density in [Density::paper(), Density::authors_code()] {
        let (r, dt) = rate_and_gradient(&w, 0.3, &density);
        assert_eq!((r, dt), (1.0, 0.0));
    }
}
