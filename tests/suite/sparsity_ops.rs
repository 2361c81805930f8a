//! Sparsity primitives (`src/ops/sparsity.rs`): property-based gradient checks (f64, random
//! shapes, values kept away from kinks), forward values against independent formulas, the
//! surrogate gradients against the derivatives of the smooth functions they stand for, and one
//! test per kink convention. The rows of `docs/gradients.md` ("Sparsity primitives") name these.

use ndarray::{ArrayD, IxDyn, Zip, array};
use proptest::prelude::*;
use sparsegrad::check::strategies::{away_from, shape, tensor};
use sparsegrad::check::{CheckOptions, gradcheck};
use sparsegrad::ops::sparsity::{
    Bandwidth, Density, DensityEstimate, HardConcrete, Surrogate, ThresholdFn,
};
use sparsegrad::rng::{seeded, uniform};
use sparsegrad::sparsity::Granularity;
use sparsegrad::tape::{Tape, Tensor, Var, broadcast_shape};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 24,
        ..ProptestConfig::default()
    }
}

/// Gradient check with the default (PyTorch) tolerances; panics with the worst element.
fn assert_grad<Func>(f: Func, inputs: &[Tensor<f64>])
where
    Func: for<'t> Fn(&[Var<'t, f64>]) -> Var<'t, f64>,
{
    let report = gradcheck(f, inputs, &CheckOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    assert!(report.compared > 0, "gradcheck compared nothing");
}

/// The forward value of `f` on leaves holding `inputs`.
fn forward<Func>(f: Func, inputs: &[Tensor<f64>]) -> Tensor<f64>
where
    Func: for<'t> Fn(&[Var<'t, f64>]) -> Var<'t, f64>,
{
    let tape = Tape::<f64>::new();
    let vars: Vec<_> = inputs.iter().map(|x| tape.leaf(x.clone())).collect();
    (*f(&vars).value()).clone()
}

fn assert_close(actual: &Tensor<f64>, expected: &Tensor<f64>, tol: f64) {
    assert_eq!(actual.shape(), expected.shape(), "shapes differ");
    Zip::from(actual).and(expected).for_each(|&a, &e| {
        assert!(
            (a - e).abs() <= tol * (1.0 + e.abs()),
            "{a} vs expected {e}\nactual {actual}\nexpected {expected}"
        )
    });
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// Central difference of a scalar function.
fn derivative(f: impl Fn(f64) -> f64, x: f64, eps: f64) -> f64 {
    (f(x + eps) - f(x - eps)) / (2.0 * eps)
}

// ---------------------------------------------------------------------------------------------
// soft_threshold

/// The three threshold functions under test; Custom is g(s) = s^2 + 0.1 (not monotone).
fn threshold_fns() -> Vec<(ThresholdFn, f64, f64)> {
    vec![
        (ThresholdFn::Sigmoid, -1.5, 1.5),
        (ThresholdFn::Exp, -1.5, 0.5),
        (ThresholdFn::custom(|s| s * s + 0.1, |s| 2.0 * s), -1.5, 1.5),
    ]
}

/// A weight of random shape with a threshold of the given granularity, every |w| at least 0.02
/// away from its threshold g(s) (the kink).
fn soft_threshold_case(
    granularity: Granularity,
    g: ThresholdFn,
    s_range: (f64, f64),
) -> impl Strategy<Value = (Tensor<f64>, Tensor<f64>)> {
    shape(4, 4)
        .prop_flat_map(move |sh| {
            let s_shape = granularity.shape(&sh);
            (tensor(sh, -2.0, 2.0), tensor(s_shape, s_range.0, s_range.1))
        })
        .prop_map(move |(w, s)| {
            let thr = s.mapv(|s| g.value(s));
            let thr = thr.broadcast(w.raw_dim()).unwrap();
            let w = Zip::from(&w)
                .and(&thr)
                .map_collect(|&w, &t| sign(w) * away_from(w.abs(), &[t], 0.02));
            (w, s)
        })
}

fn soft_threshold_reference(w: &Tensor<f64>, s: &Tensor<f64>, g: &ThresholdFn) -> Tensor<f64> {
    let thr = s.mapv(|s| g.value(s));
    Zip::from(w)
        .and(&thr.broadcast(w.raw_dim()).unwrap())
        .map_collect(|&w, &t| sign(w) * (w.abs() - t).max(0.0))
}

fn check_soft_threshold(case: usize, w: &Tensor<f64>, s: &Tensor<f64>) {
    let g = threshold_fns()[case].0.clone();
    let inputs = [w.clone(), s.clone()];
    assert_close(
        &forward(|v| v[0].soft_threshold(v[1], &g), &inputs),
        &soft_threshold_reference(w, s, &g),
        1e-12,
    );
    assert_grad(|v| v[0].soft_threshold(v[1], &g), &inputs);
}

macro_rules! soft_threshold_props {
    ($($name:ident: $gran:expr, $case:expr;)*) => {
        proptest! {
            #![proptest_config(config())]
            $(
                #[test]
                fn $name((w, s) in {
                    let (g, lo, hi) = threshold_fns()[$case].clone();
                    soft_threshold_case($gran, g, (lo, hi))
                }) {
                    check_soft_threshold($case, &w, &s);
                }
            )*
        }
    };
}

soft_threshold_props! {
    grad_soft_threshold_per_layer_sigmoid: Granularity::Layer, 0;
    grad_soft_threshold_per_channel_sigmoid: Granularity::Channel, 0;
    grad_soft_threshold_per_weight_sigmoid: Granularity::Weight, 0;
    grad_soft_threshold_per_layer_exp: Granularity::Layer, 1;
    grad_soft_threshold_per_channel_exp: Granularity::Channel, 1;
    grad_soft_threshold_per_weight_custom: Granularity::Weight, 2;
    grad_soft_threshold_per_channel_custom: Granularity::Channel, 2;
}

fn shared_first<'t>(v: &[Var<'t, f64>]) -> Var<'t, f64> {
    v[0].soft_threshold(v[2], &ThresholdFn::Sigmoid).sum()
}

fn shared_second<'t>(v: &[Var<'t, f64>]) -> Var<'t, f64> {
    v[1].soft_threshold(v[2], &ThresholdFn::Sigmoid)
        .mul_scalar(0.7)
        .sum()
}

/// Two layers' weights (v[0], v[1]) thresholded by one global s (v[2]).
fn shared_both<'t>(v: &[Var<'t, f64>]) -> Var<'t, f64> {
    shared_first(v) + shared_second(v)
}

proptest! {
    #![proptest_config(config())]

    /// One global s used by two layers: the tape sums both uses' gradients.
    #[test]
    fn grad_soft_threshold_global_shared(
        (w1, s) in soft_threshold_case(Granularity::Layer, ThresholdFn::Sigmoid, (-1.5, 1.5)),
        w2 in shape(3, 4).prop_flat_map(|sh| tensor(sh, -2.0, 2.0)),
    ) {
        let thr = sigmoid(*s.iter().next().unwrap());
        let w2 = w2.mapv(|w| sign(w) * away_from(w.abs(), &[thr], 0.02));
        let inputs = [w1.clone(), w2.clone(), s.clone()];
        assert_grad(shared_both, &inputs);
        // And the shared gradient is exactly the sum of the two single-use gradients.
        let grad_s = |f: for<'t> fn(&[Var<'t, f64>]) -> Var<'t, f64>| {
            let tape = Tape::<f64>::new();
            let vars: Vec<_> = inputs.iter().map(|x| tape.leaf(x.clone())).collect();
            let s_var = vars[2];
            f(&vars).backward().wrt(s_var).unwrap().clone()
        };
        let total = grad_s(shared_both);
        let first = grad_s(shared_first);
        let second = grad_s(shared_second);
        assert_close(&total, &(first + second), 1e-12);
    }
}

/// Convention: at |w| = g(s) the indicator 1[|w| > g(s)] is 0, so both gradients vanish there.
#[test]
fn soft_threshold_kink_gradient_is_zero() {
    let tape = Tape::<f64>::new();
    // s = 0: g(s) = sigmoid(0) = 0.5 exactly; g'(0) = 0.25.
    let w = tape.leaf(array![0.5, -0.5, 0.7, -0.9, 0.2, 0.0].into_dyn());
    let s = tape.leaf(ArrayD::zeros(IxDyn(&[])));
    let y = w.soft_threshold(s, &ThresholdFn::Sigmoid);
    assert_close(
        &y.value(),
        &array![0.0, 0.0, 0.2, -0.4, 0.0, 0.0].into_dyn(),
        1e-15,
    );
    let grads = y.sum().backward();
    assert_eq!(
        grads.wrt(w).unwrap(),
        &array![0.0, 0.0, 1.0, 1.0, 0.0, 0.0].into_dyn()
    );
    // Only 0.7 and -0.9 are alive: -0.25 * (1 + (-1)) = 0.
    assert_eq!(grads.wrt(s).unwrap()[[]], 0.0);
    let tape = Tape::<f64>::new();
    let w = tape.leaf(array![0.5, 0.7].into_dyn());
    let s = tape.leaf(ArrayD::zeros(IxDyn(&[])));
    let grads = w.soft_threshold(s, &ThresholdFn::Sigmoid).sum().backward();
    assert_eq!(grads.wrt(s).unwrap()[[]], -0.25, "only 0.7 contributes");
}

// ---------------------------------------------------------------------------------------------
// sign_mask

/// A random weight and a scalar threshold in [0.1, 1], |w| at least `margin` from each of
/// t + `offsets`.
fn sign_mask_case(offsets: Vec<f64>, margin: f64) -> impl Strategy<Value = (Tensor<f64>, f64)> {
    (
        shape(4, 4).prop_flat_map(|sh| tensor(sh, -3.0, 3.0)),
        0.1..1.0f64,
    )
        .prop_map(move |(w, t)| {
            let kinks: Vec<f64> = offsets.iter().map(|o| t + o).collect();
            (w.mapv(|w| sign(w) * away_from(w.abs(), &kinks, margin)), t)
        })
}

fn scalar(x: f64) -> Tensor<f64> {
    ArrayD::from_elem(IxDyn(&[]), x)
}

/// The analytic t-gradient of sum(c * sign_mask(w, t)).
fn sign_mask_t_gradient(w: &Tensor<f64>, t: f64, c: &Tensor<f64>, surrogate: Surrogate) -> f64 {
    let tape = Tape::<f64>::new();
    let (wv, tv) = (tape.leaf(w.clone()), tape.leaf(scalar(t)));
    let loss = (wv.sign_mask(tv, surrogate) * tape.constant(c.clone())).sum();
    loss.backward().wrt(tv).unwrap()[[]]
}

proptest! {
    #![proptest_config(config())]

    /// Forward is the exact hard mask (eq. 1 with sgn(0) = -1), and the w-gradient (t fixed) is
    /// the mask, which is the true derivative away from |w| = t.
    #[test]
    fn grad_sign_mask_weight((w, t) in sign_mask_case(vec![0.0], 0.01)) {
        let y = forward(|v| v[0].sign_mask(v[0].tape().constant(scalar(t)), Surrogate::ClippedIdentity), std::slice::from_ref(&w));
        assert_close(&y, &w.mapv(|w| if w.abs() > t { w } else { 0.0 }), 0.0);
        assert_grad(
            |v| v[0].sign_mask(v[0].tape().constant(scalar(t)), Surrogate::Sigmoid { temperature: 0.1 }),
            &[w],
        );
    }

    /// The sigmoid surrogate's t-gradient equals the derivative of the smooth function it stands
    /// for: d/dt sum_i c_i sigmoid((|w_i| - t) / T) w_i.
    #[test]
    fn sign_mask_sigmoid_surrogate_is_derivative_of_smooth_mask(
        (w, t) in sign_mask_case(vec![], 0.0),
        temperature in 0.05..2.0f64,
        seed in 0u64..1000,
    ) {
        let mut rng = seeded(seed);
        let c = w.mapv(|_| uniform(&mut rng, -1.0, 1.0));
        let smooth = |t: f64| {
            Zip::from(&w).and(&c).fold(0.0, |acc, &w, &c| acc + c * sigmoid((w.abs() - t) / temperature) * w)
        };
        let analytic = sign_mask_t_gradient(&w, t, &c, Surrogate::Sigmoid { temperature });
        let numeric = derivative(smooth, t, 1e-6);
        prop_assert!(close(analytic, numeric, 1e-6), "analytic {analytic} vs numeric {numeric}");
    }

    /// The clipped-identity surrogate's t-gradient equals the derivative of
    /// sum_i c_i (0.5 hardtanh(|w_i| - t) + 0.5) w_i, away from its kinks at |w| - t = +-1.
    #[test]
    fn sign_mask_clipped_identity_is_derivative_of_hardtanh_mask(
        (w, t) in sign_mask_case(vec![-1.0, 1.0], 0.01),
        seed in 0u64..1000,
    ) {
        let mut rng = seeded(seed);
        let c = w.mapv(|_| uniform(&mut rng, -1.0, 1.0));
        let smooth = |t: f64| {
            Zip::from(&w).and(&c).fold(0.0, |acc, &w, &c| {
                acc + c * (0.5 * (w.abs() - t).clamp(-1.0, 1.0) + 0.5) * w
            })
        };
        let analytic = sign_mask_t_gradient(&w, t, &c, Surrogate::ClippedIdentity);
        let numeric = derivative(smooth, t, 1e-6);
        prop_assert!(close(analytic, numeric, 1e-6), "analytic {analytic} vs numeric {numeric}");
    }
}

/// Convention: |w| = t is pruned (sgn(0) = -1 in eq. 1), and its w-gradient is 0.
#[test]
fn sign_mask_prunes_weights_at_the_threshold() {
    let tape = Tape::<f64>::new();
    let w = tape.leaf(array![0.25, -0.25, 0.3, -0.1].into_dyn());
    let t = tape.leaf(scalar(0.25));
    let y = w.sign_mask(t, Surrogate::ClippedIdentity);
    assert_eq!(*y.value(), array![0.0, 0.0, 0.3, 0.0].into_dyn());
    let grads = y.sum().backward();
    assert_eq!(
        grads.wrt(w).unwrap(),
        &array![0.0, 0.0, 1.0, 0.0].into_dyn()
    );
    // Clipped identity: every |x| < 1, so dL/dt = -0.5 sum w = -0.5 * 0.2.
    assert!((grads.wrt(t).unwrap()[[]] + 0.1).abs() < 1e-15);
}

// ---------------------------------------------------------------------------------------------
// sparsity_rate

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
    #![proptest_config(config())]

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

// ---------------------------------------------------------------------------------------------
// hard concrete / L0

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
    #![proptest_config(config())]

    #[test]
    fn grad_hard_concrete_sample((log_alpha, u) in hard_concrete_case()) {
        let hc = HardConcrete::default();
        let z = forward(|v| v[0].hard_concrete(&u, &hc), std::slice::from_ref(&log_alpha));
        let expected = Zip::from(&log_alpha).and(&u).map_collect(|&la, &u| hard_concrete_reference(la, u, &hc));
        assert_close(&z, &expected, 1e-12);
        assert_grad(|v| v[0].hard_concrete(&u, &hc), &[log_alpha]);
    }

    /// Test-time gate, log_alpha in [-2.2, 2.2]: sigmoid(log_alpha) 1.2 - 0.1 stays inside (0, 1).
    #[test]
    fn grad_hard_concrete_eval(log_alpha in shape(3, 4).prop_flat_map(|sh| tensor(sh, -2.2, 2.2))) {
        let hc = HardConcrete::default();
        let z = forward(|v| v[0].hard_concrete_eval(&hc), std::slice::from_ref(&log_alpha));
        assert_close(&z, &log_alpha.mapv(|a| (sigmoid(a) * 1.2 - 0.1).clamp(0.0, 1.0)), 1e-12);
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
        assert_close(&p, &expected, 1e-12);
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
