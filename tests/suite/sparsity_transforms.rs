//! Weight transforms (`src/sparsity/`): naming of their parameters, `effective()` equal to the
//! taped `apply`, gradients reaching their parameters through a Linear layer (checked against
//! finite differences of the real loss), and each transform's own contract (mask hygiene under
//! SGD, a shared global STR threshold, FCPTS's exact initial sparsity, L0 gate modes).

use ndarray::{ArrayD, IxDyn, array};
use sparsegrad::nn::{Linear, Module, Weight, WeightTransform, join, named_params};
use sparsegrad::ops::sparsity::{Density, Surrogate, ThresholdFn};
use sparsegrad::optim::{Sgd, SgdConfig, step};
use sparsegrad::param::Param;
use sparsegrad::rng::{Rng, seeded, standard_normal, uniform};
use sparsegrad::sparsity::report::{LayerReport, sparsity_report};
use sparsegrad::sparsity::{
    FcptsVariant, GateAxis, Granularity, HardConcreteGate, Mask, SoftThreshold, ThresholdMask,
    count_zeros,
};
use sparsegrad::tape::{Tape, Tensor, Var};

/// A small batch: x [n, inputs] standard normal, labels uniform in 0..classes.
fn batch(n: usize, inputs: usize, classes: usize, rng: &mut Rng) -> (Tensor<f64>, Vec<usize>) {
    let x = ArrayD::from_shape_simple_fn(IxDyn(&[n, inputs]), || standard_normal(rng));
    let labels = (0..n)
        .map(|_| (uniform(rng, 0.0, classes as f64) as usize).min(classes - 1))
        .collect();
    (x, labels)
}

fn loss<'t, M: Module<f64>>(
    model: &mut M,
    tape: &'t Tape<f64>,
    x: &Tensor<f64>,
    labels: &[usize],
) -> Var<'t, f64> {
    model
        .forward(tape.constant(x.clone()))
        .cross_entropy(labels, 0.0)
}

fn loss_value<M: Module<f64>>(model: &mut M, x: &Tensor<f64>, labels: &[usize]) -> f64 {
    let tape = Tape::new();
    loss(model, &tape, x, labels).item()
}

/// The gradient of the loss with respect to the parameter called `name`.
fn gradient_of<M: Module<f64>>(
    model: &mut M,
    name: &str,
    x: &Tensor<f64>,
    labels: &[usize],
) -> Option<Tensor<f64>> {
    let tape = Tape::new();
    let grads = loss(model, &tape, x, labels).backward();
    let mut out = None;
    model.visit("", &mut |n, p| {
        if n == name {
            out = grads.of(p).cloned();
        }
    });
    out
}

/// Directional finite difference of the loss along `direction` in parameter `name`.
fn directional_difference<M: Module<f64>>(
    model: &mut M,
    name: &str,
    direction: &Tensor<f64>,
    x: &Tensor<f64>,
    labels: &[usize],
) -> f64 {
    let eps = 1e-6;
    let shift = |model: &mut M, by: f64| {
        model.visit_mut("", &mut |n, p| {
            if n == name {
                p.value_mut().scaled_add(by, direction);
            }
        });
    };
    shift(model, eps);
    let plus = loss_value(model, x, labels);
    shift(model, -2.0 * eps);
    let minus = loss_value(model, x, labels);
    shift(model, eps);
    (plus - minus) / (2.0 * eps)
}

/// Checks that the analytic gradient of `name` matches finite differences along two random
/// directions (the loss is piecewise smooth; random weights sit away from the kinks).
fn assert_gradient_reaches<M: Module<f64>>(
    model: &mut M,
    name: &str,
    x: &Tensor<f64>,
    labels: &[usize],
) {
    let grad = gradient_of(model, name, x, labels)
        .unwrap_or_else(|| panic!("no gradient reached `{name}`"));
    assert!(
        grad.iter().any(|&g| g != 0.0),
        "the gradient of `{name}` is identically zero"
    );
    let mut rng = seeded(99);
    for _ in 0..2 {
        let v = grad.mapv(|_| standard_normal(&mut rng));
        let analytic: f64 = (&grad * &v).sum();
        let numeric = directional_difference(model, name, &v, x, labels);
        assert!(
            (analytic - numeric).abs() <= 1e-6 * (1.0 + numeric.abs()),
            "`{name}`: analytic {analytic} vs numeric {numeric}"
        );
    }
}

fn layers(model: &Mlp) -> Vec<LayerReport> {
    sparsity_report(model).layers
}

fn names<M: Module<f64>>(model: &M) -> Vec<(String, Vec<usize>, bool)> {
    named_params(model)
        .into_iter()
        .map(|(n, p)| (n, p.shape().to_vec(), p.trainable()))
        .collect()
}

/// `effective()` equals the value `apply` records on a tape.
fn assert_effective_matches_apply(w: &Weight<f64>) {
    let tape = Tape::new();
    let taped = (*w.on(&tape).value()).clone();
    assert_eq!(w.effective(), taped);
}

fn linear_with(transform: impl WeightTransform<f64>, seed: u64) -> Linear<f64> {
    let mut layer = Linear::new(6, 4, true, &mut seeded(seed));
    layer.weight.transform = Some(Box::new(transform));
    layer
}

// ---------------------------------------------------------------------------------------------
// Mask

/// Required by the issue: masked weights and their momentum stay exactly zero through 100 SGD
/// steps with momentum 0.9 and weight decay 5e-4 on a real cross-entropy loss.
#[test]
fn mask_keeps_pruned_weights_and_momentum_zero_through_sgd() {
    let mut rng = seeded(1);
    let mut layer = Linear::<f32>::new(20, 5, true, &mut rng);
    let mask_values = ArrayD::from_shape_simple_fn(IxDyn(&[5, 20]), || {
        if uniform(&mut rng, 0.0, 1.0) < 0.6 {
            0.0f32
        } else {
            1.0
        }
    });
    let pruned = count_zeros(&mask_values);
    assert!(pruned > 20 && pruned < 100);
    let initial = layer.weight.raw.value().clone();
    layer.weight.transform = Some(Box::new(Mask::from_tensor(mask_values.clone()).unwrap()));
    let mut opt = Sgd::new(SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 5e-4,
        ..SgdConfig::default()
    });
    let x = ArrayD::from_shape_simple_fn(IxDyn(&[32, 20]), || standard_normal(&mut rng) as f32);
    let labels: Vec<usize> = (0..32).map(|i| (i * 7) % 5).collect();
    let mut first_loss = None;
    let mut last_loss = 0.0;
    for _ in 0..100 {
        let tape = Tape::<f32>::new();
        let l = layer
            .forward(tape.constant(x.clone()))
            .cross_entropy(&labels, 0.0);
        last_loss = l.item();
        first_loss.get_or_insert(last_loss);
        let grads = l.backward();
        step(&mut opt, &mut layer, &grads);
    }
    assert!(
        last_loss < 0.9 * first_loss.unwrap(),
        "training did not progress: loss {first_loss:?} -> {last_loss}"
    );
    let w = layer.weight.raw.value();
    let momentum = opt.momentum_buffer("weight").expect("momentum exists");
    for ((i, &m), (&w, &w0)) in mask_values.indexed_iter().zip(w.iter().zip(initial.iter())) {
        if m == 0.0 {
            assert_eq!(w, 0.0, "pruned weight {i:?} revived");
            assert_eq!(momentum[&i], 0.0, "pruned momentum {i:?} nonzero");
        } else {
            assert_ne!(w, w0, "kept weight {i:?} never trained");
        }
    }
    let report = &sparsity_report(&layer).layers[0];
    assert_eq!(report.params - report.nonzero, pruned, "effective sparsity");
}

#[test]
fn mask_names_gradient_and_effective() {
    let w = Linear::<f64>::new(6, 4, true, &mut seeded(2))
        .weight
        .raw
        .value()
        .clone();
    let mut layer = linear_with(Mask::top_k_magnitude(&w, 10), 2);
    assert_eq!(
        names(&layer),
        vec![
            ("weight".into(), vec![4, 6], true),
            ("weight_mask".into(), vec![4, 6], false),
            ("bias".into(), vec![4], true),
        ]
    );
    assert_effective_matches_apply(&layer.weight);
    assert_eq!(count_zeros(&layer.weight.effective()), 14);
    // dL/dW = dL/dW_eff * mask: pruned entries get exactly zero, kept ones match finite differences.
    let (x, labels) = batch(8, 6, 4, &mut seeded(3));
    let grad = gradient_of(&mut layer, "weight", &x, &labels).unwrap();
    let mask = layer
        .weight
        .transform
        .as_ref()
        .unwrap()
        .mask()
        .unwrap()
        .clone();
    for (g, m) in grad.iter().zip(mask.iter()) {
        assert!(*m == 1.0 || *g == 0.0);
    }
    assert_gradient_reaches(&mut layer, "weight", &x, &labels);
}

#[test]
fn mask_top_k_breaks_ties_by_index() {
    let w = array![[1.0, -1.0], [1.0, 0.5]].into_dyn();
    let m = Mask::<f64>::top_k_magnitude(&w, 2);
    assert_eq!(m.values(), &array![[1.0, 1.0], [0.0, 0.0]].into_dyn());
    let m = Mask::<f64>::for_sparsity(&w, 0.25).unwrap();
    assert_eq!(m.values(), &array![[1.0, 1.0], [1.0, 0.0]].into_dyn());
    assert_eq!(Mask::<f64>::top_k_magnitude(&w, 9).kept(), 4);
    assert_eq!(Mask::<f64>::top_k_magnitude(&w, 0).kept(), 0);
}

#[test]
fn mask_rejects_bad_input() {
    let err = Mask::<f64>::from_tensor(array![1.0, 0.5].into_dyn())
        .err()
        .unwrap();
    assert!(err.to_string().contains("0.5"), "{err}");
    assert!(Mask::<f64>::for_sparsity(&array![1.0].into_dyn(), 1.5).is_err());
    let mut m = Mask::<f64>::ones(&[2]);
    assert!(m.set(array![1.0, 0.0, 1.0].into_dyn()).is_err());
    m.set(array![1.0, 0.0].into_dyn()).unwrap();
    assert_eq!(m.kept(), 1);
}

// ---------------------------------------------------------------------------------------------
// SoftThreshold (STR)

/// s = -2: g(s) = sigmoid(-2) ~ 0.12, inside the range of a 6-input Linear's weights
/// (U(-0.41, 0.41)), so some weights are pruned and some are not.
const S_INIT: f64 = -2.0;

#[test]
fn soft_threshold_per_granularity_names_gradients_effective() {
    let (x, labels) = batch(8, 6, 4, &mut seeded(5));
    for (granularity, shape) in [
        (Granularity::Layer, vec![]),
        (Granularity::Channel, vec![4, 1]),
        (Granularity::Weight, vec![4, 6]),
    ] {
        let st = SoftThreshold::new(&[4, 6], granularity, S_INIT, ThresholdFn::Sigmoid);
        let mut layer = linear_with(st, 4);
        assert_eq!(
            names(&layer),
            vec![
                ("weight".into(), vec![4, 6], true),
                ("weight_threshold".into(), shape.clone(), true),
                ("bias".into(), vec![4], true),
            ]
        );
        assert_effective_matches_apply(&layer.weight);
        let zeros = count_zeros(&layer.weight.effective());
        assert!(zeros > 0 && zeros < 24, "{granularity:?}: {zeros} zeros");
        assert_gradient_reaches(&mut layer, "weight_threshold", &x, &labels);
        assert_gradient_reaches(&mut layer, "weight", &x, &labels);
    }
}

#[test]
fn threshold_values_and_report_hook() {
    let st = SoftThreshold::<f64>::new(&[3, 2], Granularity::Channel, 0.5, ThresholdFn::Exp);
    assert_eq!(
        st.threshold_value(),
        ArrayD::from_elem(IxDyn(&[3, 1]), 0.5f64.exp())
    );
    assert_eq!(st.s(), ArrayD::from_elem(IxDyn(&[3, 1]), 0.5));
    // The report hook: one value per layer only.
    assert_eq!(WeightTransform::threshold(&st), None);
    let st = SoftThreshold::<f64>::new(&[3, 2], Granularity::Layer, 0.5, ThresholdFn::Exp);
    assert_eq!(WeightTransform::threshold(&st), Some(0.5f64.exp()));
    let tm = ThresholdMask::<f32>::new(-1.0, FcptsVariant::Code);
    assert_eq!(WeightTransform::threshold(&tm), Some(tm.threshold() as f64));
    assert!((tm.threshold() as f64 - 1.0 / (1.0 + 1f64.exp())).abs() < 1e-7);
}

/// Three layers, the first owning a global threshold the other two share.
struct Mlp {
    fc1: Linear<f64>,
    fc2: Linear<f64>,
    fc3: Linear<f64>,
}

impl Mlp {
    fn new(seed: u64) -> Self {
        let mut rng = seeded(seed);
        Mlp {
            fc1: Linear::new(6, 8, true, &mut rng),
            fc2: Linear::new(8, 8, true, &mut rng),
            fc3: Linear::new(8, 3, true, &mut rng),
        }
    }

    fn layers_mut(&mut self) -> [(&'static str, &mut Linear<f64>); 3] {
        [
            ("fc1", &mut self.fc1),
            ("fc2", &mut self.fc2),
            ("fc3", &mut self.fc3),
        ]
    }
}

impl Module<f64> for Mlp {
    fn forward<'t>(&mut self, x: Var<'t, f64>) -> Var<'t, f64> {
        let x = self.fc1.forward(x).relu();
        let x = self.fc2.forward(x).relu();
        self.fc3.forward(x)
    }

    fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(&str, &'a Param<f64>)) {
        self.fc1.visit(&join(prefix, "fc1"), f);
        self.fc2.visit(&join(prefix, "fc2"), f);
        self.fc3.visit(&join(prefix, "fc3"), f);
    }

    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<f64>)) {
        for (name, layer) in self.layers_mut() {
            layer.visit_mut(&join(prefix, name), f);
        }
    }

    fn visit_weights_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Weight<f64>)) {
        for (name, layer) in self.layers_mut() {
            layer.visit_weights_mut(&join(prefix, name), f);
        }
    }

    fn visit_weights<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(&str, &'a Weight<f64>)) {
        self.fc1.visit_weights(&join(prefix, "fc1"), f);
        self.fc2.visit_weights(&join(prefix, "fc2"), f);
        self.fc3.visit_weights(&join(prefix, "fc3"), f);
    }
}

/// fc1 owns one global threshold; fc2 and fc3 share it.
fn mlp_with_global_threshold(seed: u64) -> Mlp {
    let mut mlp = Mlp::new(seed);
    let mut owner = SoftThreshold::new(&[8, 6], Granularity::Layer, S_INIT, ThresholdFn::Sigmoid);
    let handle = owner.share();
    mlp.fc1.weight.transform = Some(Box::new(owner));
    for layer in [&mut mlp.fc2, &mut mlp.fc3] {
        layer.weight.transform = Some(Box::new(SoftThreshold::sharing(
            &handle,
            ThresholdFn::Sigmoid,
        )));
    }
    mlp
}

/// The same network with three independent per-layer thresholds of the same value.
fn mlp_with_layer_thresholds(seed: u64) -> Mlp {
    let mut mlp = Mlp::new(seed);
    for (_, layer) in mlp.layers_mut() {
        let shape = layer.weight.raw.shape().to_vec();
        layer.weight.transform = Some(Box::new(SoftThreshold::new(
            &shape,
            Granularity::Layer,
            S_INIT,
            ThresholdFn::Sigmoid,
        )));
    }
    mlp
}

#[test]
fn global_threshold_is_visited_once_and_its_gradient_sums_over_layers() {
    let (x, labels) = batch(16, 6, 3, &mut seeded(6));
    let mut global = mlp_with_global_threshold(7);
    let thresholds: Vec<String> = names(&global)
        .into_iter()
        .map(|(n, _, _)| n)
        .filter(|n| n.ends_with("_threshold"))
        .collect();
    assert_eq!(thresholds, vec!["fc1.weight_threshold".to_string()]);
    // Each layer is really thresholded (the sharing layers prune too).
    for layer in layers(&global) {
        assert!(
            layer.nonzero < layer.params,
            "{} prunes nothing",
            layer.name
        );
    }
    let shared = gradient_of(&mut global, "fc1.weight_threshold", &x, &labels).unwrap();
    let mut separate = mlp_with_layer_thresholds(7);
    let total: f64 = ["fc1", "fc2", "fc3"]
        .iter()
        .map(|l| {
            gradient_of(&mut separate, &format!("{l}.weight_threshold"), &x, &labels).unwrap()[[]]
        })
        .sum();
    assert!((shared[[]] - total).abs() < 1e-12 * (1.0 + total.abs()));
    // And it is the derivative of the loss with respect to the one global s.
    assert_gradient_reaches(&mut global, "fc1.weight_threshold", &x, &labels);
}

#[test]
fn global_threshold_is_updated_once_and_seen_by_every_layer() {
    let (x, labels) = batch(16, 6, 3, &mut seeded(6));
    let mut mlp = mlp_with_global_threshold(7);
    let tape = Tape::new();
    let grads = loss(&mut mlp, &tape, &x, &labels).backward();
    let mut g = None;
    mlp.visit("", &mut |name, p| {
        if name == "fc1.weight_threshold" {
            g = grads.of(p).map(|g| g[[]]);
        }
    });
    let g = g.unwrap();
    let lr = 0.5;
    let mut opt = Sgd::new(SgdConfig {
        lr,
        ..SgdConfig::default()
    });
    step(&mut opt, &mut mlp, &grads);
    let expected = S_INIT - lr * g;
    let mut seen = Vec::new();
    mlp.visit_weights("", &mut |_, w| {
        let st = w.transform.as_ref().unwrap().as_any();
        let st = st.downcast_ref::<SoftThreshold<f64>>().unwrap();
        seen.push((st.owns_threshold(), st.s()[[]]));
    });
    assert_eq!(
        seen,
        vec![(true, expected), (false, expected), (false, expected)]
    );
    // A direct set on the owner reaches the sharing layers as well.
    mlp.visit_weights_mut("", &mut |name, w| {
        if name == "fc1.weight" {
            let st = w.transform.as_mut().unwrap().as_any_mut();
            let st = st.downcast_mut::<SoftThreshold<f64>>().unwrap();
            st.set_s(ArrayD::from_elem(IxDyn(&[]), 5.0));
        }
    });
    // g(5) = 0.993 exceeds every |w|: all three layers are now fully pruned.
    for layer in layers(&mlp) {
        assert_eq!(layer.nonzero, 0, "{}", layer.name);
    }
}

// ---------------------------------------------------------------------------------------------
// ThresholdMask (FCPTS)

const SIGMOID_SURROGATE: FcptsVariant =
    FcptsVariant::Paper(Surrogate::Sigmoid { temperature: 0.05 });

#[test]
fn threshold_mask_names_gradients_effective() {
    let (x, labels) = batch(8, 6, 4, &mut seeded(8));
    let w = Linear::<f64>::new(6, 4, true, &mut seeded(9))
        .weight
        .raw
        .value()
        .clone();
    for variant in [
        SIGMOID_SURROGATE,
        FcptsVariant::Paper(Surrogate::ClippedIdentity),
        FcptsVariant::Code,
    ] {
        let tm = ThresholdMask::for_sparsity(&w, 0.5, variant).unwrap();
        let mut layer = linear_with(tm, 9);
        assert_eq!(
            names(&layer),
            vec![
                ("weight".into(), vec![4, 6], true),
                ("weight_score".into(), vec![], true),
                ("bias".into(), vec![4], true),
            ]
        );
        assert_effective_matches_apply(&layer.weight);
        assert_eq!(count_zeros(&layer.weight.effective()), 12);
        // The weight's gradient is the masked one: it matches finite differences.
        assert_gradient_reaches(&mut layer, "weight", &x, &labels);
        let score_grad = gradient_of(&mut layer, "weight_score", &x, &labels);
        match variant {
            FcptsVariant::Code => assert!(
                score_grad.is_none(),
                "code variant: mask has no gradient to t"
            ),
            FcptsVariant::Paper(_) => assert!(score_grad.unwrap()[[]] != 0.0),
        }
    }
}

/// The paper variant's score gradient is the chain rule through t = sigmoid(score) of the
/// sign_mask op's t-gradient; adding the control loss's bridge adds its gradient; the code
/// variant receives only the bridge's.
#[test]
fn threshold_mask_score_gradient_chains_through_sigmoid() {
    let (x, labels) = batch(8, 6, 4, &mut seeded(10));
    let w = Linear::<f64>::new(6, 4, true, &mut seeded(11))
        .weight
        .raw
        .value()
        .clone();
    let density = Density::paper();
    let score_gradient = |variant: FcptsVariant, with_bridge: bool| -> f64 {
        let tm = ThresholdMask::for_sparsity(&w, 0.4, variant).unwrap();
        let mut layer = linear_with(tm, 11);
        let tape = Tape::new();
        let mut total = loss(&mut layer, &tape, &x, &labels);
        if with_bridge {
            let tm = layer.weight.transform.as_ref().unwrap().as_any();
            let tm = tm.downcast_ref::<ThresholdMask<f64>>().unwrap();
            total = total + tm.sparsity_rate(tape.param(&layer.weight.raw), &density);
        }
        let grads = total.backward();
        let tm = layer.weight.transform.as_ref().unwrap().as_any();
        let tm = tm.downcast_ref::<ThresholdMask<f64>>().unwrap();
        grads.of(tm.score()).map_or(0.0, |g| g[[]])
    };
    // Reference: the same loss with t a leaf, then d t / d score = t (1 - t).
    let tm = ThresholdMask::<f64>::for_sparsity(&w, 0.4, SIGMOID_SURROGATE).unwrap();
    let t = tm.threshold();
    let (dl_dt, dr_dt) = {
        let layer = Linear::<f64>::new(6, 4, true, &mut seeded(11));
        let tape = Tape::new();
        let t_leaf = tape.leaf(ArrayD::from_elem(IxDyn(&[]), t));
        let raw = tape.constant(w.clone());
        let w_eff = raw.sign_mask(t_leaf, Surrogate::Sigmoid { temperature: 0.05 });
        let logits =
            tape.constant(x.clone()).matmul_nt(w_eff) + tape.param(layer.bias.as_ref().unwrap());
        let dl_dt = logits
            .cross_entropy(&labels, 0.0)
            .backward()
            .wrt(t_leaf)
            .unwrap()[[]];
        let tape = Tape::new();
        let t_leaf = tape.leaf(ArrayD::from_elem(IxDyn(&[]), t));
        let dr_dt = tape
            .constant(w.clone())
            .sparsity_rate(t_leaf, &density)
            .backward()
            .wrt(t_leaf)
            .unwrap()[[]];
        (dl_dt, dr_dt)
    };
    let dt_dscore = t * (1.0 - t);
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * (1.0 + b.abs());
    assert!(close(
        score_gradient(SIGMOID_SURROGATE, false),
        dl_dt * dt_dscore
    ));
    assert!(close(
        score_gradient(SIGMOID_SURROGATE, true),
        (dl_dt + dr_dt) * dt_dscore
    ));
    assert!(dr_dt > 0.0);
    assert!(close(
        score_gradient(FcptsVariant::Code, true),
        dr_dt * dt_dscore
    ));
    assert_eq!(score_gradient(FcptsVariant::Code, false), 0.0);
}

/// Initialisation from a target sparsity prunes exactly round(sparsity * n) weights, in f32 and
/// f64, from 0 to 1, and the bridge's forward agrees.
#[test]
fn threshold_mask_init_hits_target_sparsity_exactly() {
    fn check<F: sparsegrad::float::Float>(seed: u64) {
        let mut rng = seeded(seed);
        let n = 1000;
        let w: Tensor<F> =
            ArrayD::from_shape_simple_fn(IxDyn(&[n]), || F::c(0.05 * standard_normal(&mut rng)));
        for sparsity in [0.0, 0.001, 0.1, 0.37, 0.5, 0.9, 0.999, 1.0] {
            let tm = ThresholdMask::for_sparsity(&w, sparsity, FcptsVariant::Code).unwrap();
            let expected = (sparsity * n as f64).round() as usize;
            assert_eq!(
                count_zeros(&tm.effective(&w)),
                expected,
                "{} sparsity {sparsity}",
                F::DTYPE
            );
            let tape = Tape::new();
            let rate = tm
                .sparsity_rate(tape.constant(w.clone()), &Density::paper())
                .item();
            assert_eq!(rate, F::c(expected as f64 / n as f64));
        }
    }
    for seed in 0..5 {
        check::<f32>(seed);
        check::<f64>(seed);
    }
}

/// Ties straddling the target rank cannot be split by a threshold: the nearest achievable count
/// is used, pruning more when two are equally near.
#[test]
fn threshold_mask_init_with_tied_magnitudes_uses_nearest_count() {
    let w = array![0.1, -0.2, 0.2, 0.2, 0.5].into_dyn();
    // Achievable counts are 0, 1, 4, 5: k = 2 -> 1 (nearest), k = 3 -> 4.
    let pruned = |k| {
        count_zeros(&ThresholdMask::<f64>::for_prune_count(&w, k, FcptsVariant::Code).effective(&w))
    };
    assert_eq!(pruned(2), 1);
    assert_eq!(pruned(3), 4);
    assert_eq!(pruned(1), 1);
    let w = array![0.1, -0.2, 0.2, 0.5].into_dyn();
    // Achievable 0, 1, 3, 4: k = 2 is equally near 1 and 3 -> 3.
    assert_eq!(
        count_zeros(
            &ThresholdMask::<f64>::for_prune_count(&w, 2, FcptsVariant::Code).effective(&w)
        ),
        3
    );
    assert!(ThresholdMask::<f64>::for_sparsity(&w, -0.1, FcptsVariant::Code).is_err());
}

// ---------------------------------------------------------------------------------------------
// HardConcreteGate (L0)

#[test]
fn hard_concrete_gate_names_shapes_and_init() {
    for (axis, shape, group) in [
        (GateAxis::Input, vec![1, 6], 4),
        (GateAxis::Output, vec![4, 1], 6),
    ] {
        let gate = HardConcreteGate::<f64>::new(&[4, 6], axis, 0.5, seeded(1));
        assert_eq!(gate.group_size(), group);
        let layer = linear_with(gate, 12);
        assert_eq!(
            names(&layer),
            vec![
                ("weight".into(), vec![4, 6], true),
                ("weight_log_alpha".into(), shape.clone(), true),
                ("bias".into(), vec![4], true),
            ]
        );
    }
    // p = 0.2: test-time gate 0.86, P(z != 0) = 0.9519 per gate.
    let gate = HardConcreteGate::<f64>::new(&[4, 6], GateAxis::Input, 0.2, seeded(1));
    for &z in gate.eval_gate().iter() {
        assert!((z - 0.86).abs() < 1e-12);
    }
    let tape = Tape::new();
    assert!((gate.expected_open_gates(&tape).item() - 6.0 * 0.9519).abs() < 6.0 * 5e-5);
    assert!((gate.expected_l0(&tape).item() - 24.0 * 0.9519).abs() < 24.0 * 5e-5);
}

fn gate_of(layer: &mut Linear<f64>) -> &mut HardConcreteGate<f64> {
    let t = layer.weight.transform.as_mut().unwrap();
    t.as_any_mut().downcast_mut().unwrap()
}

#[test]
fn hard_concrete_gate_modes_effective_and_gradients() {
    let (x, labels) = batch(8, 6, 4, &mut seeded(13));
    let gate = HardConcreteGate::<f64>::new(&[4, 6], GateAxis::Input, 0.5, seeded(14));
    let mut layer = linear_with(gate, 15);
    // Training mode: every forward draws a fresh sample.
    let tape = Tape::new();
    let a = (*layer.weight.on(&tape).value()).clone();
    let b = (*layer.weight.on(&tape).value()).clone();
    assert_ne!(a, b);
    // Evaluation mode: deterministic, and effective() is exactly the taped value.
    gate_of(&mut layer).set_training(false);
    assert_effective_matches_apply(&layer.weight);
    assert_gradient_reaches(&mut layer, "weight_log_alpha", &x, &labels);
    assert_gradient_reaches(&mut layer, "weight", &x, &labels);
}

/// In training mode the gradient to log_alpha is that of the sampled gate: a fresh gate with the
/// same seed draws the same noise, so finite differences see the same sample.
#[test]
fn hard_concrete_gate_training_gradient_matches_finite_differences() {
    let (x, labels) = batch(8, 6, 4, &mut seeded(16));
    let make = |log_alpha: &Tensor<f64>| {
        let mut gate = HardConcreteGate::<f64>::new(&[4, 6], GateAxis::Output, 0.5, seeded(17));
        gate.visit_mut("weight", &mut |_, p| p.set_value(log_alpha.clone()));
        linear_with(gate, 18)
    };
    let log_alpha = array![[0.3], [-0.5], [1.0], [0.0]].into_dyn();
    let mut layer = make(&log_alpha);
    let grad = gradient_of(&mut layer, "weight_log_alpha", &x, &labels).unwrap();
    for j in 0..4 {
        let mut e = Tensor::<f64>::zeros(IxDyn(&[4, 1]));
        e[[j, 0]] = 1e-6;
        let plus = loss_value(&mut make(&(&log_alpha + &e)), &x, &labels);
        let minus = loss_value(&mut make(&(&log_alpha - &e)), &x, &labels);
        let numeric = (plus - minus) / 2e-6;
        let analytic = grad[[j, 0]];
        assert!(
            (analytic - numeric).abs() <= 1e-6 * (1.0 + numeric.abs()),
            "gate {j}: analytic {analytic} vs numeric {numeric}"
        );
    }
}

#[test]
fn hard_concrete_gate_clamps_log_alpha() {
    let mut gate = HardConcreteGate::<f32>::new(&[2, 3], GateAxis::Input, 0.5, seeded(1));
    gate.visit_mut("w", &mut |_, p| {
        p.set_value(array![[-9.0f32, 0.25, 9.0]].into_dyn())
    });
    gate.clamp_log_alpha();
    let (lo, hi) = (1e-2f64.ln() as f32, 1e2f64.ln() as f32);
    assert_eq!(gate.log_alpha().value(), &array![[lo, 0.25, hi]].into_dyn());
}

#[test]
fn hard_concrete_gate_noise_is_seeded() {
    let sample = |seed| {
        let gate = HardConcreteGate::<f32>::new(&[3, 5], GateAxis::Input, 0.5, seeded(seed));
        let tape = Tape::new();
        (*gate.gate_on(&tape).value()).clone()
    };
    assert_eq!(sample(4), sample(4));
    assert_ne!(sample(4), sample(5));
}
