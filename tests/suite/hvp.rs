//! Hessian-vector products (`sparsegrad::hvp`): against the exact Hessian of a quadratic form,
//! against a small MLP's Hessian built column by column from central differences of a gradient
//! written by hand, linearity in v and symmetry of H; `module_hvp` on real models against central
//! differences of the `f64` tape gradient; and the errors of bad input.
//!
//! Error measure throughout: max |H v - reference| / max |reference| (relative max-norm).

use std::collections::BTreeMap;

use ndarray::{Array1, Array2, ArrayD, IxDyn};
use proptest::prelude::*;
use sparsegrad::dual::Dual64;
use sparsegrad::hvp::{ModuleHvp, hvp, load_twin, module_hvp};
use sparsegrad::models::{ModelName, ModelSpec, build, build_as};
use sparsegrad::nn::{Module, named_params};
use sparsegrad::ops::sparsity::ThresholdFn;
use sparsegrad::rng::{seeded, standard_normal, uniform};
use sparsegrad::sparsity::mask::Mask;
use sparsegrad::tape::{Tape, Tensor, Var};

use crate::common::proptest_config;

/// Relative max-norm error of `got` against `want`, over several arrays.
pub fn relative_error(got: &[Tensor<f64>], want: &[Tensor<f64>]) -> f64 {
    let diff = got
        .iter()
        .zip(want)
        .flat_map(|(g, w)| g.iter().zip(w).map(|(a, b)| (a - b).abs()))
        .fold(0.0, f64::max);
    let scale = want.iter().flatten().fold(0.0f64, |m, x| m.max(x.abs()));
    diff / scale.max(f64::MIN_POSITIVE)
}

fn normal(shape: &[usize], rng: &mut sparsegrad::rng::Rng) -> Tensor<f64> {
    ArrayD::from_shape_simple_fn(IxDyn(shape), || standard_normal(rng))
}

// ---------------------------------------------------------------- quadratic form

/// f(x1, x2) = x^T A x / 2 + b^T x with x = [x1; x2]: H = (A + A^T) / 2 exactly, across inputs.
fn quadratic_case(n1: usize, n2: usize, seed: u64) -> f64 {
    let n = n1 + n2;
    let mut rng = seeded(seed);
    let a = Array2::from_shape_simple_fn((n, n), || uniform(&mut rng, -2.0, 2.0));
    let b = Array1::from_shape_simple_fn(n, || uniform(&mut rng, -2.0, 2.0));
    let at = [normal(&[n1], &mut rng), normal(&[n2], &mut rng)];
    let v = [normal(&[n1], &mut rng), normal(&[n2], &mut rng)];
    let (ad, bd) = (
        a.mapv(Dual64::from).into_dyn(),
        b.mapv(Dual64::from).into_dyn(),
    );
    let out = hvp(
        |x| {
            let tape = x[0].tape();
            let x = Var::concat(&[x[0], x[1]], 0);
            let xa = x.reshape(&[1, n]).matmul(tape.constant(ad.clone()));
            xa.matmul(x.reshape(&[n, 1])).sum().mul_scalar(0.5)
                + (tape.constant(bd.clone()) * x).sum()
        },
        &at,
        &v,
    )
    .unwrap();
    let flat = |p: &[Tensor<f64>]| p.iter().flatten().copied().collect::<Array1<f64>>();
    let (x, vv) = (flat(&at), flat(&v));
    let sym = (&a + &a.t()) * 0.5;
    let hv = sym.dot(&vv);
    let grad = sym.dot(&x) + &b;
    let value = 0.5 * x.dot(&a.dot(&x)) + b.dot(&x);
    let split = |t: Array1<f64>| {
        vec![
            t.slice(ndarray::s![..n1]).to_owned().into_dyn(),
            t.slice(ndarray::s![n1..]).to_owned().into_dyn(),
        ]
    };
    assert!(relative_error(&out.grad, &split(grad)) < 1e-13);
    assert!((out.value - value).abs() <= 1e-12 * (1.0 + value.abs()));
    relative_error(&out.hv, &split(hv))
}

// ---------------------------------------------------------------- MLP

/// A 1-hidden-layer tanh MLP with softmax cross-entropy: parameters W1 [h, i], b1 [h], W2 [c, h],
/// b2 [c]; data X [N, i] and labels.
#[derive(Clone, Debug)]
struct Mlp {
    x: Array2<f64>,
    labels: Vec<usize>,
    dims: (usize, usize, usize),
}

impl Mlp {
    fn new(n: usize, (i, h, c): (usize, usize, usize), seed: u64) -> (Mlp, Vec<Tensor<f64>>) {
        let mut rng = seeded(seed);
        let x = Array2::from_shape_simple_fn((n, i), || standard_normal(&mut rng));
        let labels = (0..n).map(|k| (k * 7 + seed as usize) % c).collect();
        let mut p = |shape: &[usize]| {
            ArrayD::from_shape_simple_fn(IxDyn(shape), || uniform(&mut rng, -1.0, 1.0))
        };
        let params = vec![p(&[h, i]), p(&[h]), p(&[c, h]), p(&[c])];
        (
            Mlp {
                x,
                labels,
                dims: (i, h, c),
            },
            params,
        )
    }

    /// The loss on the tape (the function under test).
    fn loss<'t>(&self, p: &[Var<'t, Dual64>]) -> Var<'t, Dual64> {
        let x = p[0].tape().constant(self.x.mapv(Dual64::from).into_dyn());
        (x.matmul_nt(p[0]) + p[1])
            .tanh()
            .matmul_nt(p[2])
            .add(p[3])
            .cross_entropy(&self.labels, 0.0)
    }

    /// The gradient, by hand (no tape): the independent reference.
    fn gradient(&self, p: &[Tensor<f64>]) -> Vec<Tensor<f64>> {
        let (i, h, c) = self.dims;
        let n = self.x.nrows();
        let (w1, b1, w2, b2) = (&p[0], &p[1], &p[2], &p[3]);
        let mut g = vec![
            vec![0.0; h * i],
            vec![0.0; h],
            vec![0.0; c * h],
            vec![0.0; c],
        ];
        for r in 0..n {
            let a1: Vec<f64> = (0..h)
                .map(|j| {
                    (b1[[j]] + (0..i).map(|k| self.x[[r, k]] * w1[[j, k]]).sum::<f64>()).tanh()
                })
                .collect();
            let z2: Vec<f64> = (0..c)
                .map(|o| b2[[o]] + (0..h).map(|j| a1[j] * w2[[o, j]]).sum::<f64>())
                .collect();
            let m = z2.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let total: f64 = z2.iter().map(|z| (z - m).exp()).sum();
            // dL/dz2 = (softmax - onehot) / N
            let dz2: Vec<f64> = (0..c)
                .map(|o| {
                    ((z2[o] - m).exp() / total - if o == self.labels[r] { 1.0 } else { 0.0 })
                        / n as f64
                })
                .collect();
            for o in 0..c {
                g[3][o] += dz2[o];
                for j in 0..h {
                    g[2][o * h + j] += dz2[o] * a1[j];
                }
            }
            for j in 0..h {
                let dz1 = (0..c).map(|o| dz2[o] * w2[[o, j]]).sum::<f64>() * (1.0 - a1[j] * a1[j]);
                g[1][j] += dz1;
                for k in 0..i {
                    g[0][j * i + k] += dz1 * self.x[[r, k]];
                }
            }
        }
        g.into_iter()
            .zip(p)
            .map(|(g, p)| ArrayD::from_shape_vec(p.raw_dim(), g).unwrap())
            .collect()
    }

    /// The full Hessian, column j from central differences of the hand gradient along e_j.
    fn hessian_by_differences(&self, p: &[Tensor<f64>]) -> Vec<Vec<f64>> {
        const STEP: f64 = 1e-5;
        let flat = |ts: &[Tensor<f64>]| ts.iter().flatten().copied().collect::<Vec<f64>>();
        let len = flat(p).len();
        (0..len)
            .map(|j| {
                let moved = |h: f64| {
                    let mut q = p.to_vec();
                    let (mut k, mut at) = (0, j);
                    while at >= q[k].len() {
                        at -= q[k].len();
                        k += 1;
                    }
                    q[k].as_slice_mut().unwrap()[at] += h;
                    flat(&self.gradient(&q))
                };
                let (up, down) = (moved(STEP), moved(-STEP));
                up.iter()
                    .zip(&down)
                    .map(|(u, d)| (u - d) / (2.0 * STEP))
                    .collect()
            })
            .collect()
    }
}

/// `H e_j` for every j, from the engine, as columns.
fn hessian_by_hvp(mlp: &Mlp, p: &[Tensor<f64>]) -> Vec<Vec<f64>> {
    let len: usize = p.iter().map(|t| t.len()).sum();
    (0..len)
        .map(|j| {
            let mut e: Vec<Tensor<f64>> = p.iter().map(|t| Tensor::zeros(t.raw_dim())).collect();
            let (mut k, mut at) = (0, j);
            while at >= e[k].len() {
                at -= e[k].len();
                k += 1;
            }
            e[k].as_slice_mut().unwrap()[at] = 1.0;
            let out = hvp(|q| mlp.loss(q), p, &e).unwrap();
            out.hv.iter().flatten().copied().collect()
        })
        .collect()
}

fn mlp_hessian_error(n: usize, dims: (usize, usize, usize), seed: u64) -> f64 {
    let (mlp, p) = Mlp::new(n, dims, seed);
    let exact = hessian_by_hvp(&mlp, &p);
    let reference = mlp.hessian_by_differences(&p);
    let as_tensor = |h: Vec<Vec<f64>>| {
        vec![ArrayD::from_shape_vec(IxDyn(&[h.len(), h.len()]), h.concat()).unwrap()]
    };
    // The engine's gradient (real parts) against the hand gradient, while here.
    let out = hvp(|q| mlp.loss(q), &p, &p).unwrap();
    assert!(relative_error(&out.grad, &mlp.gradient(&p)) < 1e-13);
    relative_error(&as_tensor(exact), &as_tensor(reference))
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn hvp_of_a_quadratic_form_is_exact(n1 in 1..7usize, n2 in 1..7usize, seed: u64) {
        let err = quadratic_case(n1, n2, seed);
        prop_assert!(err < 1e-14, "relative error {err:e}");
    }

    #[test]
    fn hvp_of_an_mlp_matches_its_hessian_entry_by_entry(
        n in 1..5usize, i in 1..4usize, h in 1..5usize, c in 2..4usize, seed: u64,
    ) {
        let err = mlp_hessian_error(n, (i, h, c), seed);
        prop_assert!(err < 1e-8, "relative error {err:e}");
    }

    #[test]
    fn hvp_is_linear_in_v_and_h_is_symmetric(
        n in 1..5usize, i in 1..4usize, h in 1..5usize, c in 2..4usize, seed: u64,
        a in -2.0..2.0f64, b in -2.0..2.0f64,
    ) {
        let (mlp, p) = Mlp::new(n, (i, h, c), seed);
        let mut rng = seeded(seed ^ 1);
        let u: Vec<_> = p.iter().map(|t| normal(t.shape(), &mut rng)).collect();
        let v: Vec<_> = p.iter().map(|t| normal(t.shape(), &mut rng)).collect();
        let combined: Vec<_> = u.iter().zip(&v).map(|(u, v)| u * a + v * b).collect();
        let run = |d: &[Tensor<f64>]| hvp(|q| mlp.loss(q), &p, d).unwrap().hv;
        let (hu, hv, hc) = (run(&u), run(&v), run(&combined));
        let expected: Vec<_> = hu.iter().zip(&hv).map(|(x, y)| x * a + y * b).collect();
        prop_assert!(relative_error(&hc, &expected) < 1e-12);
        let dot = |x: &[Tensor<f64>], y: &[Tensor<f64>]| x.iter().zip(y).map(|(x, y)| (x * y).sum()).sum::<f64>();
        let (uhv, vhu) = (dot(&u, &hv), dot(&v, &hu));
        prop_assert!((uhv - vhu).abs() <= 1e-12 * (1.0 + uhv.abs()), "u^T H v {uhv} vs v^T H u {vhu}");
    }
}

// ---------------------------------------------------------------- models

/// `module_hvp` on `spec`'s model (a random direction over every trainable parameter) against
/// central differences of the `f64` tape gradient; returns the relative error.
pub fn model_error(spec: &ModelSpec, batch: usize, training: bool, seed: u64, step: f64) -> f64 {
    let model = build(spec, &mut seeded(seed)).unwrap();
    let mut twin = build_as::<Dual64>(spec, &mut seeded(seed + 1)).unwrap();
    let mut reference = build_as::<f64>(spec, &mut seeded(seed + 2)).unwrap();
    load_twin(&*model, &mut *twin).unwrap();
    load_twin(&*model, &mut *reference).unwrap();
    twin.set_training(training);
    reference.set_training(training);
    let (c, h, w) = spec.input;
    let mut rng = seeded(seed + 3);
    let images = normal(&[batch, c, h, w], &mut rng);
    let labels: Vec<usize> = (0..batch).map(|i| i % spec.classes).collect();
    let mut v = BTreeMap::new();
    for (name, p) in named_params(&*twin) {
        if p.trainable() {
            v.insert(name, normal(p.shape(), &mut rng));
        }
    }
    let dual_images = images.mapv(Dual64::from);
    let out: ModuleHvp = module_hvp(&mut *twin, &v, |m, tape| {
        m.forward(tape.constant(dual_images.clone()))
            .cross_entropy(&labels, 0.0)
    })
    .unwrap();
    let theta: BTreeMap<String, Tensor<f64>> = named_params(&*reference)
        .into_iter()
        .map(|(n, p)| (n, p.value().clone()))
        .collect();
    let mut gradient_at = |h: f64| -> Vec<Tensor<f64>> {
        reference.visit_mut("", &mut |name, p| {
            if let Some(d) = v.get(name) {
                p.set_value(&theta[name] + &(d * h));
            }
        });
        let tape = Tape::<f64>::new();
        let loss = reference
            .forward(tape.constant(images.clone()))
            .cross_entropy(&labels, 0.0);
        let grads = loss.backward();
        out.params
            .iter()
            .map(|e| {
                let mut found = None;
                reference.visit("", &mut |name, p| {
                    if name == e.name {
                        found = grads.of(p).cloned()
                    }
                });
                found.unwrap_or_else(|| Tensor::zeros(e.grad.raw_dim()))
            })
            .collect()
    };
    let (g0, up, down) = (gradient_at(0.0), gradient_at(step), gradient_at(-step));
    let grads: Vec<_> = out.params.iter().map(|e| e.grad.clone()).collect();
    assert!(
        relative_error(&grads, &g0) < 1e-12,
        "gradient differs from the f64 tape's"
    );
    let fd: Vec<_> = up
        .iter()
        .zip(&down)
        .map(|(u, d)| (u - d) / (2.0 * step))
        .collect();
    let hv: Vec<_> = out.params.iter().map(|e| e.hv.clone()).collect();
    // The twin is left without tangents.
    assert!(
        named_params(&*twin)
            .iter()
            .all(|(_, p)| p.value().iter().all(|x| x.eps == 0.0))
    );
    relative_error(&hv, &fd)
}

/// Central-difference step for the model tests: small, because a relu or max-pool whose input
/// crosses zero between the two gradients makes the difference meaningless, and ResNet-20 has
/// ~50,000 relus per batch (at 1e-6 one of them usually crosses). At 1e-8 the differences'
/// own rounding error is ~3e-9 of the result (see `hvp_accuracy_report`).
const STEP: f64 = 1e-8;

fn spec(name: ModelName, input: (usize, usize, usize), classes: usize) -> ModelSpec {
    ModelSpec {
        name,
        input,
        classes,
        width: 1.0,
    }
}

#[test]
fn module_hvp_matches_differences_of_the_gradient_on_lenet300_and_lenet5() {
    for seed in 0..2 {
        let err = model_error(
            &spec(ModelName::Lenet300, (1, 5, 5), 4),
            6,
            true,
            seed,
            STEP,
        );
        assert!(err < 1e-6, "lenet300: relative error {err:e}");
        let err = model_error(
            &spec(ModelName::Lenet5, (1, 16, 16), 3),
            3,
            true,
            seed,
            STEP,
        );
        assert!(err < 1e-6, "lenet5: relative error {err:e}");
    }
}

#[test]
fn module_hvp_differentiates_through_batch_norm_statistics_and_recurrences() {
    // ResNet-20 in training mode: the Hessian runs through the batch mean and variance.
    let err = model_error(&spec(ModelName::Resnet20, (3, 8, 8), 3), 4, true, 0, STEP);
    assert!(err < 1e-6, "resnet20 (training): relative error {err:e}");
    let err = model_error(&spec(ModelName::Resnet20, (3, 8, 8), 3), 4, false, 0, STEP);
    assert!(err < 1e-6, "resnet20 (eval): relative error {err:e}");
    let err = model_error(&spec(ModelName::Fastgrnn, (1, 4, 3), 3), 3, true, 0, STEP);
    assert!(err < 1e-6, "fastgrnn: relative error {err:e}");
}

/// The measured errors recorded in `docs/gradients.md`:
/// `cargo test --release --test suite hvp_accuracy_report -- --ignored --nocapture`.
#[test]
#[ignore = "a report, run by hand"]
fn hvp_accuracy_report() {
    let stats = |mut e: Vec<f64>| {
        e.sort_by(f64::total_cmp);
        format!(
            "median {:.1e}, worst {:.1e} over {}",
            e[e.len() / 2],
            e[e.len() - 1],
            e.len()
        )
    };
    let quadratic =
        (0..200u64).map(|s| quadratic_case(1 + s as usize % 6, 1 + s as usize / 6 % 6, s));
    println!("quadratic form: {}", stats(quadratic.collect()));
    let mlp = (0..50u64).map(|s| mlp_hessian_error(1 + s as usize % 4, (3, 4, 2), s));
    println!("3-4-2 MLP, full Hessian: {}", stats(mlp.collect()));
    for (name, input, batch, training) in [
        (ModelName::Lenet300, (1, 5, 5), 6, true),
        (ModelName::Lenet5, (1, 16, 16), 3, true),
        (ModelName::Resnet20, (3, 8, 8), 4, true),
        (ModelName::Resnet20, (3, 8, 8), 4, false),
        (ModelName::Fastgrnn, (1, 4, 3), 3, true),
    ] {
        for step in [1e-5, 1e-6, 1e-7, 1e-8, 1e-9] {
            let errors =
                (0..4).map(|s| model_error(&spec(name, input, 3), batch, training, s, step));
            println!(
                "{name:?} (training {training}), step {step:e}: {}",
                stats(errors.collect())
            );
        }
    }
}

#[test]
fn build_as_gives_the_same_initial_values_whatever_the_element_type() {
    let s = spec(ModelName::Lenet5, (1, 16, 16), 3);
    let f32_model = build(&s, &mut seeded(5)).unwrap();
    let f64_model = build_as::<f64>(&s, &mut seeded(5)).unwrap();
    let a = named_params(&*f32_model);
    let b = named_params(&*f64_model);
    assert_eq!(a.len(), b.len());
    for ((na, pa), (nb, pb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert_eq!(pa.value(), &pb.value().mapv(|x| x as f32), "{na}");
    }
}

// ---------------------------------------------------------------- errors

/// The sum of the outputs on two images of ones (any model of 4 inputs).
fn loss<'t, M: Module<Dual64> + ?Sized>(m: &mut M, tape: &'t Tape<Dual64>) -> Var<'t, Dual64> {
    let images = ArrayD::from_elem(IxDyn(&[2, 4]), Dual64::constant(1.0));
    m.forward(tape.constant(images)).sum()
}

#[test]
fn bad_directions_and_outputs_are_refused_with_a_named_reason() {
    let x = [ArrayD::zeros(IxDyn(&[3]))];
    let err = hvp(|x| x[0].sum(), &x, &[ArrayD::zeros(IxDyn(&[2]))]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "hvp: direction 0 has shape [2], input 0 has shape [3]"
    );
    let err = hvp(|x| x[0].sum(), &x, &[]).unwrap_err();
    assert_eq!(err.to_string(), "hvp: 0 directions for 1 inputs");
    let err = hvp(|x| x[0].exp(), &x, &x).unwrap_err();
    assert_eq!(
        err.to_string(),
        "hvp: the function must return one element, got shape [3]"
    );

    let s = spec(ModelName::Lenet300, (1, 2, 2), 2);
    let mut twin = build_as::<Dual64>(&s, &mut seeded(0)).unwrap();
    let mut v = BTreeMap::from([("fc9.weight".to_string(), ArrayD::zeros(IxDyn(&[1])))]);
    let err = module_hvp(&mut *twin, &v, loss).unwrap_err();
    assert_eq!(
        err.to_string(),
        "hvp: direction `fc9.weight` names no trainable parameter of the model"
    );
    v = BTreeMap::from([("fc3.bias".to_string(), ArrayD::zeros(IxDyn(&[3])))]);
    let err = module_hvp(&mut *twin, &v, loss).unwrap_err();
    assert_eq!(
        err.to_string(),
        "hvp: direction `fc3.bias` has shape [3], the parameter has shape [2]"
    );
}

#[test]
fn ops_that_drop_the_tangent_are_refused() {
    let x = [
        ArrayD::from_elem(IxDyn(&[3]), 0.5),
        ArrayD::from_elem(IxDyn(&[]), -1.0),
    ];
    let err = hvp(
        |x| x[0].soft_threshold(x[1], &ThresholdFn::Sigmoid).sum(),
        &x,
        &x,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "hvp: op `soft_threshold` computes through plain f64 and has no second derivatives here"
    );
}

#[test]
fn a_twin_must_have_the_models_parameters() {
    let mut model = build(&spec(ModelName::Lenet300, (1, 2, 2), 2), &mut seeded(0)).unwrap();
    let mut twin =
        build_as::<Dual64>(&spec(ModelName::Lenet300, (1, 2, 2), 3), &mut seeded(0)).unwrap();
    let err = load_twin(&*model, &mut *twin).unwrap_err();
    assert_eq!(
        err.to_string(),
        "hvp twin: parameter `fc3.weight` has shape [2, 100] in the model but [3, 100] in its twin"
    );
    let mut twin =
        build_as::<Dual64>(&spec(ModelName::Lenet300, (1, 2, 2), 2), &mut seeded(0)).unwrap();
    model.visit_weights_mut("", &mut |_, w| {
        w.transform = Some(Box::new(Mask::ones(w.raw.shape())))
    });
    let err = load_twin(&*model, &mut *twin).unwrap_err();
    assert_eq!(
        err.to_string(),
        "hvp twin: parameter `fc1.weight_mask` of the model is not in the twin"
    );
    // With the mask on both, the masked model's values arrive exactly.
    twin.visit_weights_mut("", &mut |_, w| {
        w.transform = Some(Box::new(Mask::ones(w.raw.shape())))
    });
    load_twin(&*model, &mut *twin).unwrap();
    let (a, b) = (named_params(&*model), named_params(&*twin));
    for ((_, pa), (_, pb)) in a.iter().zip(&b) {
        assert_eq!(pa.value().mapv(|x| x as f64), pb.value().mapv(|x| x.re));
    }
}
