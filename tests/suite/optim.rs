//! Optimisers against hand-computed values: every expectation is either a literal derived by hand
//! (derivation in the comment) or recomputed here with plain f64 scalar arithmetic from the
//! textbook form of the update, written independently of the library's loop.

use std::any::Any;

use ndarray::{ArrayD, Dimension, IxDyn, array};
use sparsegrad::nn::{Linear, Module, WeightTransform};
use sparsegrad::optim::{
    self, Adam, AdamConfig, Hyper, Optimizer, ParamGroup, ParamMatch, Sgd, SgdConfig,
};
use sparsegrad::param::Param;
use sparsegrad::rng::{derived, standard_normal};
use sparsegrad::tape::{Tape, Tensor, Var};

const W0: [f64; 2] = [1.0, -2.0];
/// Gradients of the three steps, one row per step (independent of w, so the updates can be checked
/// without a model).
const GRADS: [[f64; 2]; 3] = [[1.0, -0.5], [2.0, 0.25], [3.0, 4.0]];

fn t(v: &[f64]) -> Tensor<f64> {
    ArrayD::from_shape_vec(IxDyn(&[v.len()]), v.to_vec()).unwrap()
}

fn assert_close(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-12 * w.abs().max(1.0),
            "{what}[{i}]: got {g:.17}, want {w:.17}"
        );
    }
}

/// Runs three `update` calls with [`GRADS`] and returns the weights after each.
fn run3<O: Optimizer<f64>>(opt: &mut O, hyper: Hyper) -> Vec<Vec<f64>> {
    let mut w = t(&W0);
    GRADS
        .iter()
        .map(|g| {
            opt.update("w", &mut w, &t(g), hyper);
            w.iter().copied().collect()
        })
        .collect()
}

/// torch.optim.SGD, one element, written as in the PyTorch docs' pseudo-code.
fn sgd_reference(c: &SgdConfig, w0: f64, grads: &[f64]) -> Vec<f64> {
    let (mut w, mut b) = (w0, 0.0);
    let mut out = Vec::new();
    for (step, &g) in grads.iter().enumerate() {
        if c.decoupled {
            w *= 1.0 - c.lr * c.weight_decay;
        }
        let mut d = if c.decoupled {
            g
        } else {
            g + c.weight_decay * w
        };
        if c.momentum != 0.0 {
            b = if step == 0 {
                d
            } else {
                c.momentum * b + (1.0 - c.dampening) * d
            };
            d = if c.nesterov { d + c.momentum * b } else { b };
        }
        w -= c.lr * d;
        out.push(w);
    }
    out
}

/// Checks three SGD steps: element 0 against the hand-derived `first` values, both elements
/// against [`sgd_reference`].
fn check_sgd(config: SgdConfig, first: [f64; 3]) {
    let mut opt = Sgd::<f64>::new(config.clone());
    let hyper = Hyper {
        lr: config.lr,
        weight_decay: config.weight_decay,
    };
    let got = run3(&mut opt, hyper);
    let elem0: Vec<f64> = got.iter().map(|w| w[0]).collect();
    assert_close(&elem0, &first, &format!("{config:?} hand values"));
    for e in 0..2 {
        let want = sgd_reference(&config, W0[e], &GRADS.map(|g| g[e]));
        let got_e: Vec<f64> = got.iter().map(|w| w[e]).collect();
        assert_close(&got_e, &want, &format!("{config:?} element {e}"));
    }
}

#[test]
fn sgd_classic_momentum_three_steps() {
    // lr 0.1, mu 0.9, w0 1, g 1,2,3: b = 1 -> w 0.9; b = 0.9 + 2 = 2.9 -> w 0.61;
    // b = 2.61 + 3 = 5.61 -> w 0.049.
    check_sgd(
        SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            ..Default::default()
        },
        [0.9, 0.61, 0.049],
    );
}

#[test]
fn sgd_plain_three_steps() {
    // No momentum: w 1 - 0.1 = 0.9, 0.9 - 0.2 = 0.7, 0.7 - 0.3 = 0.4.
    check_sgd(
        SgdConfig {
            lr: 0.1,
            ..Default::default()
        },
        [0.9, 0.7, 0.4],
    );
}

#[test]
fn sgd_nesterov_three_steps() {
    // b = 1, d = 1 + 0.9 = 1.9 -> w 0.81; b = 2.9, d = 2 + 2.61 = 4.61 -> w 0.349;
    // b = 5.61, d = 3 + 5.049 = 8.049 -> w -0.4559.
    check_sgd(
        SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            nesterov: true,
            ..Default::default()
        },
        [0.81, 0.349, -0.4559],
    );
}

#[test]
fn sgd_dampening_three_steps() {
    // dampening 0.5 (not applied on the first step, as PyTorch): b = 1 -> w 0.9;
    // b = 0.9 + 0.5 * 2 = 1.9 -> w 0.71; b = 1.71 + 1.5 = 3.21 -> w 0.389.
    check_sgd(
        SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            dampening: 0.5,
            ..Default::default()
        },
        [0.9, 0.71, 0.389],
    );
}

#[test]
fn sgd_l2_weight_decay_three_steps() {
    // wd 0.1: d = 1 + 0.1 = 1.1 = b -> w 0.89; d = 2 + 0.089 = 2.089, b = 0.99 + 2.089 = 3.079
    // -> w 0.5821; d = 3 + 0.05821 = 3.05821, b = 2.7711 + 3.05821 = 5.82931 -> w -0.000831.
    check_sgd(
        SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.1,
            ..Default::default()
        },
        [0.89, 0.5821, -0.000831],
    );
}

#[test]
fn sgd_decoupled_weight_decay_three_steps() {
    // w *= 1 - 0.01 first: 0.99 - 0.1 = 0.89; 0.8811 - 0.29 = 0.5911; 0.585189 - 0.561 = 0.024189.
    check_sgd(
        SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.1,
            decoupled: true,
            ..Default::default()
        },
        [0.89, 0.5911, 0.024189],
    );
}

#[test]
fn sgd_rejects_bad_configs() {
    let err = Sgd::<f64>::try_new(SgdConfig {
        nesterov: true,
        ..Default::default()
    })
    .err()
    .unwrap();
    assert_eq!(
        err.to_string(),
        "SGD: Nesterov momentum requires momentum > 0 and zero dampening (got momentum 0, dampening 0)"
    );
    let err = Sgd::<f64>::try_new(SgdConfig {
        lr: -1.0,
        ..Default::default()
    })
    .err()
    .unwrap();
    assert_eq!(err.to_string(), "SGD: lr must be finite and >= 0, got -1");
}

/// Adam in the textbook form of Kingma & Ba (m_hat, v_hat), one element; `decoupled` is AdamW.
fn adam_reference(c: &AdamConfig, w0: f64, grads: &[f64]) -> Vec<f64> {
    let (mut w, mut m, mut v, mut v_max) = (w0, 0.0, 0.0, 0.0_f64);
    let mut out = Vec::new();
    for (i, &g) in grads.iter().enumerate() {
        let step = (i + 1) as i32;
        if c.decoupled {
            w *= 1.0 - c.lr * c.weight_decay;
        }
        let g = if c.decoupled {
            g
        } else {
            g + c.weight_decay * w
        };
        m = c.beta1 * m + (1.0 - c.beta1) * g;
        v = c.beta2 * v + (1.0 - c.beta2) * g * g;
        v_max = v_max.max(v);
        let m_hat = m / (1.0 - c.beta1.powi(step));
        let v_hat = if c.amsgrad { v_max } else { v } / (1.0 - c.beta2.powi(step));
        w -= c.lr * m_hat / (v_hat.sqrt() + c.eps);
        out.push(w);
    }
    out
}

fn check_adam(config: AdamConfig) -> Vec<Vec<f64>> {
    let mut opt = Adam::<f64>::new(config.clone());
    let hyper = Hyper {
        lr: config.lr,
        weight_decay: config.weight_decay,
    };
    let got = run3(&mut opt, hyper);
    assert_eq!(opt.step_count("w"), 3);
    for e in 0..2 {
        let want = adam_reference(&config, W0[e], &GRADS.map(|g| g[e]));
        let got_e: Vec<f64> = got.iter().map(|w| w[e]).collect();
        assert_close(&got_e, &want, &format!("{config:?} element {e}"));
    }
    got
}

#[test]
fn adam_three_steps_with_bias_correction() {
    let config = AdamConfig {
        lr: 0.01,
        ..AdamConfig::adam()
    };
    let got = check_adam(config);
    // Step 1 by hand: m = 0.1 g, v = 0.001 g^2, so m_hat = g and v_hat = g^2 exactly: the first
    // step is -lr * g / (|g| + eps) = -0.01 / (1 + 1e-8) for element 0. Without bias correction
    // it would be -0.01 * 0.1 / (sqrt(0.001) + 1e-8), about -0.0316.
    assert_close(
        &[got[0][0]],
        &[1.0 - 0.01 / (1.0 + 1e-8)],
        "first Adam step",
    );
    // Element 1 (g = -0.5): moves by +0.01 * 0.5 / (0.5 + 1e-8).
    assert_close(
        &[got[0][1]],
        &[-2.0 + 0.01 * 0.5 / (0.5 + 1e-8)],
        "first Adam step",
    );
}

#[test]
fn adam_l2_weight_decay_three_steps() {
    check_adam(AdamConfig {
        lr: 0.01,
        weight_decay: 0.1,
        ..AdamConfig::adam()
    });
}

#[test]
fn adamw_three_steps() {
    let config = AdamConfig {
        lr: 0.01,
        weight_decay: 0.1,
        ..AdamConfig::adamw()
    };
    let got = check_adam(config);
    // Step 1 by hand: w = 1 * (1 - 0.01 * 0.1) = 0.999, then -0.01 / (1 + 1e-8).
    assert_close(
        &[got[0][0]],
        &[0.999 - 0.01 / (1.0 + 1e-8)],
        "first AdamW step",
    );
}

#[test]
fn adam_with_betas_and_eps() {
    check_adam(AdamConfig {
        lr: 0.05,
        beta1: 0.5,
        beta2: 0.9,
        eps: 1e-3,
        ..AdamConfig::adam()
    });
}

#[test]
fn amsgrad_uses_running_max_of_second_moment() {
    // Shrinking gradients make v fall, so v_max != v from step 2 on.
    let config = AdamConfig {
        lr: 0.01,
        beta2: 0.5,
        amsgrad: true,
        ..AdamConfig::adam()
    };
    let grads = [[3.0, 1.0], [1.0, 0.5], [0.1, 0.1]];
    let mut opt = Adam::<f64>::new(config.clone());
    let plain_config = AdamConfig {
        amsgrad: false,
        ..config.clone()
    };
    let mut plain = Adam::<f64>::new(plain_config.clone());
    let hyper = Hyper {
        lr: 0.01,
        weight_decay: 0.0,
    };
    let (mut w, mut w_plain) = (t(&W0), t(&W0));
    for g in &grads {
        opt.update("w", &mut w, &t(g), hyper);
        plain.update("w", &mut w_plain, &t(g), hyper);
    }
    for e in 0..2 {
        let want = adam_reference(&config, W0[e], &grads.map(|g| g[e]));
        assert_close(&[w[e]], &[want[2]], "amsgrad");
        let want_plain = adam_reference(&plain_config, W0[e], &grads.map(|g| g[e]));
        assert_close(&[w_plain[e]], &[want_plain[2]], "adam");
        assert!(
            (w[e] - w_plain[e]).abs() > 1e-4,
            "amsgrad made no difference"
        );
    }
    let state = opt.state();
    let names: Vec<&str> = state.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["w.exp_avg", "w.exp_avg_sq", "w.max_exp_avg_sq", "w.step"]
    );
    // v_max after step 1: 0.5 * 9 = 4.5 for element 0; v falls below it afterwards.
    assert_eq!(state[2].1[[0]], 4.5);
    assert!(state[1].1[[0]] < 4.5);
}

#[test]
fn adam_rejects_bad_betas() {
    let err = Adam::<f64>::try_new(AdamConfig {
        beta2: 1.0,
        ..AdamConfig::adamw()
    })
    .err()
    .unwrap();
    assert_eq!(err.to_string(), "AdamW: beta2 must be in [0, 1), got 1");
}

// ---------------------------------------------------------------------------------------------
// Parameter groups, through the `step` driver.

/// A module that is just named parameters (the forward pass is not used).
struct Named(Vec<(String, Param<f64>)>);

impl Module<f64> for Named {
    fn forward<'t>(&mut self, x: Var<'t, f64>) -> Var<'t, f64> {
        x
    }
    fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(&str, &'a Param<f64>)) {
        for (n, p) in &self.0 {
            f(&sparsegrad::nn::join(prefix, n), p);
        }
    }
    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<f64>)) {
        for (n, p) in &mut self.0 {
            f(&sparsegrad::nn::join(prefix, n), p);
        }
    }
}

/// conv-like weight, its bias, an STR threshold scalar, and a second layer to freeze.
fn named_model() -> Named {
    let p = |v: Tensor<f64>| Param::new(v);
    Named(vec![
        (
            "a.weight".into(),
            p(array![[1.0, -2.0], [0.5, 3.0]].into_dyn()),
        ),
        ("a.bias".into(), p(array![0.5, -0.5].into_dyn())),
        (
            "a.weight_threshold".into(),
            p(ArrayD::from_elem(IxDyn(&[]), 2.0)),
        ),
        ("b.weight".into(), p(array![[4.0, -1.0]].into_dyn())),
    ])
}

/// The gradient `unit_grads` gives a parameter: 1 + (sum of the entry's indices).
fn unit_grad(shape: &[usize]) -> Tensor<f64> {
    ArrayD::from_shape_fn(shape, |i| 1.0 + i.as_array_view().sum() as f64)
}

/// Gradients where d loss / d p = unit_grad(shape of p), via loss = sum(p * unit_grad).
fn unit_grads(model: &Named) -> sparsegrad::grads::Grads<f64> {
    let tape = Tape::new();
    let mut loss: Option<Var<'_, f64>> = None;
    for (_, p) in &model.0 {
        let term = (tape.param(p) * tape.constant(unit_grad(p.shape()))).sum();
        loss = Some(match loss {
            None => term,
            Some(l) => l + term,
        });
    }
    loss.unwrap().backward()
}

fn values(model: &Named) -> Vec<(String, Vec<f64>, Vec<f64>)> {
    model
        .0
        .iter()
        .map(|(n, p)| {
            let g = unit_grad(p.shape()).iter().copied().collect();
            (n.clone(), p.value().iter().copied().collect(), g)
        })
        .collect()
}

#[test]
fn groups_set_lr_and_weight_decay_per_parameter_and_freeze() {
    let mut model = named_model();
    let before = values(&model);
    let mut opt = Sgd::<f64>::new(SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 0.01,
        ..Default::default()
    });
    opt.set_groups(vec![
        ParamGroup::new(ParamMatch::Suffix("_threshold".into()))
            .with_weight_decay(0.5)
            .with_lr_scale(2.0),
        ParamGroup::new(ParamMatch::BiasesAndNorms).with_weight_decay(0.0),
        ParamGroup::new(ParamMatch::Prefix("b.".into())).freeze(),
    ])
    .unwrap();
    let grads = unit_grads(&model);
    optim::step(&mut opt, &mut model, &grads);
    // First step with momentum: b = d, so w = w - lr_g * (g + wd_g * w).
    for ((name, w0, g), (_, p)) in before.iter().zip(&model.0) {
        let got: Vec<f64> = p.value().iter().copied().collect();
        let (lr, wd) = match name.as_str() {
            "a.weight_threshold" => (0.2, 0.5), // first match wins: not the scalar (bias) group
            "a.bias" => (0.1, 0.0),
            "a.weight" => (0.1, 0.01), // no group: the defaults
            _ => {
                assert_eq!(&got, w0, "frozen {name} changed");
                assert!(
                    opt.momentum_buffer(name).is_none(),
                    "frozen {name} got state"
                );
                continue;
            }
        };
        let want: Vec<f64> = w0
            .iter()
            .zip(g)
            .map(|(w, g)| w - lr * (g + wd * w))
            .collect();
        assert_close(&got, &want, name);
    }
    let state_names: Vec<String> = opt.state().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        state_names,
        [
            "a.bias.momentum_buffer",
            "a.weight.momentum_buffer",
            "a.weight_threshold.momentum_buffer"
        ]
    );
}

#[test]
fn first_matching_group_wins() {
    let groups = |first_threshold: bool| {
        let threshold =
            ParamGroup::new(ParamMatch::Suffix("_threshold".into())).with_weight_decay(0.5);
        let norms = ParamGroup::new(ParamMatch::BiasesAndNorms).with_weight_decay(0.0);
        if first_threshold {
            vec![threshold, norms]
        } else {
            vec![norms, threshold]
        }
    };
    let mut opt = Sgd::<f64>::new(SgdConfig {
        lr: 0.1,
        weight_decay: 0.01,
        ..Default::default()
    });
    opt.set_groups(groups(true)).unwrap();
    let hyper = |opt: &Sgd<f64>, name: &str, shape: &[usize]| opt.hyper_for(name, shape).unwrap();
    assert_eq!(hyper(&opt, "fc1.weight_threshold", &[1]).weight_decay, 0.5);
    assert_eq!(hyper(&opt, "fc1.bias", &[300]).weight_decay, 0.0);
    assert_eq!(hyper(&opt, "bn1.weight", &[64]).weight_decay, 0.0);
    assert_eq!(hyper(&opt, "fc1.weight", &[300, 784]).weight_decay, 0.01);
    opt.set_groups(groups(false)).unwrap();
    assert_eq!(hyper(&opt, "fc1.weight_threshold", &[1]).weight_decay, 0.0);
    // Schedules set the base rate; multipliers apply on top.
    opt.set_groups(vec![
        ParamGroup::new(ParamMatch::Names(vec!["fc1.weight".into()])).with_lr_scale(0.5),
    ])
    .unwrap();
    opt.set_lr(0.04);
    assert_eq!(hyper(&opt, "fc1.weight", &[3, 3]).lr, 0.02);
    assert_eq!(hyper(&opt, "fc2.weight", &[3, 3]).lr, 0.04);
    let err = opt
        .set_groups(vec![
            ParamGroup::new(ParamMatch::All).with_weight_decay(-1.0),
        ])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "parameter group 0 (All): weight_decay must be finite and >= 0, got -1"
    );
}

#[test]
fn adam_and_adamw_use_groups() {
    for config in [AdamConfig::adam(), AdamConfig::adamw()] {
        let mut model = named_model();
        let before = values(&model);
        let config = AdamConfig {
            lr: 0.01,
            weight_decay: 0.1,
            ..config
        };
        let mut opt = Adam::<f64>::new(config.clone());
        opt.set_groups(vec![
            ParamGroup::new(ParamMatch::BiasesAndNorms)
                .with_weight_decay(0.0)
                .with_lr_scale(3.0),
            ParamGroup::new(ParamMatch::Names(vec!["b.weight".into()])).freeze(),
        ])
        .unwrap();
        let grads = unit_grads(&model);
        optim::step(&mut opt, &mut model, &grads);
        for ((name, w0, g), (_, p)) in before.iter().zip(&model.0) {
            let got: Vec<f64> = p.value().iter().copied().collect();
            if name == "b.weight" {
                assert_eq!(&got, w0);
                assert_eq!(opt.step_count(name), 0);
                continue;
            }
            let group = if name == "a.weight" {
                config.clone()
            } else {
                AdamConfig {
                    lr: 0.03,
                    weight_decay: 0.0,
                    ..config.clone()
                }
            };
            let want: Vec<f64> = w0
                .iter()
                .zip(g)
                .map(|(&w, &g)| adam_reference(&group, w, &[g])[0])
                .collect();
            assert_close(&got, &want, &format!("{name} {config:?}"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// State export and import.

/// A small f32 classifier: Linear(6 -> 4) on fixed random data.
fn classifier(seed: u64) -> Linear<f32> {
    Linear::new(6, 4, true, &mut derived(seed, 1))
}

fn batch(step: usize) -> (Tensor<f32>, Vec<usize>) {
    let mut rng = derived(7, 100 + step as u64);
    let x = ArrayD::from_shape_fn(IxDyn(&[8, 6]), |_| standard_normal(&mut rng) as f32);
    let labels = (0..8).map(|i| (i + step) % 4).collect();
    (x, labels)
}

fn train<M: Module<f32>>(
    model: &mut M,
    opt: &mut dyn Optimizer<f32>,
    steps: std::ops::Range<usize>,
) {
    for s in steps {
        let (x, labels) = batch(s);
        let tape = Tape::new();
        let loss = model.forward(tape.constant(x)).cross_entropy(&labels, 0.0);
        let grads = loss.backward();
        optim::step(opt, model, &grads);
    }
}

fn weights<M: Module<f32>>(model: &M) -> Vec<(String, Tensor<f32>)> {
    sparsegrad::nn::named_params(model)
        .into_iter()
        .map(|(n, p)| (n, p.value().clone()))
        .collect()
}

fn set_weights<M: Module<f32>>(model: &mut M, saved: &[(String, Tensor<f32>)]) {
    model.visit_mut("", &mut |name, p| {
        let (_, v) = saved.iter().find(|(n, _)| n == name).unwrap();
        p.set_value(v.clone());
    });
}

fn round_trip(make: &dyn Fn() -> Box<dyn Optimizer<f32>>) {
    let mut straight = classifier(3);
    let mut opt = make();
    train(&mut straight, opt.as_mut(), 0..10);

    let mut first = classifier(3);
    let mut opt1 = make();
    train(&mut first, opt1.as_mut(), 0..5);
    let (saved_weights, saved_state) = (weights(&first), opt1.state());
    assert!(!saved_state.is_empty());
    drop((first, opt1));

    let mut resumed = classifier(99); // different init: everything must come from the checkpoint
    set_weights(&mut resumed, &saved_weights);
    let mut opt2 = make();
    optim::load_state(opt2.as_mut(), &resumed, &saved_state).unwrap();
    assert_eq!(opt2.state(), saved_state);
    train(&mut resumed, opt2.as_mut(), 5..10);

    assert_eq!(weights(&resumed), weights(&straight), "resumed run differs");
    assert_eq!(opt2.state(), opt.state());
}

#[test]
fn state_round_trip_sgd_is_bit_identical() {
    round_trip(&|| {
        Box::new(Sgd::new(SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 1e-3,
            ..Default::default()
        }))
    });
}

#[test]
fn state_round_trip_adam_is_bit_identical() {
    round_trip(&|| {
        Box::new(Adam::new(AdamConfig {
            lr: 0.01,
            weight_decay: 1e-3,
            ..AdamConfig::adam()
        }))
    });
    round_trip(&|| {
        Box::new(Adam::new(AdamConfig {
            lr: 0.01,
            amsgrad: true,
            ..AdamConfig::adamw()
        }))
    });
}

#[test]
fn state_names_and_step_tensor() {
    let mut model = classifier(3);
    let mut opt = Adam::new(AdamConfig::adam());
    train(&mut model, &mut opt, 0..3);
    let state = opt.state();
    let names: Vec<&str> = state.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "bias.exp_avg",
            "bias.exp_avg_sq",
            "bias.step",
            "weight.exp_avg",
            "weight.exp_avg_sq",
            "weight.step"
        ]
    );
    let step = &state[2].1;
    assert_eq!(step.ndim(), 0);
    assert_eq!(step[IxDyn(&[])], 3.0);
}

#[test]
fn load_state_names_every_bad_entry_and_changes_nothing() {
    let model = classifier(3);
    let mut sgd = Sgd::<f32>::new(SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        ..Default::default()
    });
    let bad = vec![
        (
            "weight.exp_avg".to_string(),
            ArrayD::<f32>::zeros(IxDyn(&[4, 6])),
        ),
        (
            "fc9.weight.momentum_buffer".to_string(),
            ArrayD::zeros(IxDyn(&[4, 6])),
        ),
        (
            "weight.momentum_buffer".to_string(),
            ArrayD::zeros(IxDyn(&[6, 4])),
        ),
        (
            "bias.momentum_buffer".to_string(),
            ArrayD::zeros(IxDyn(&[4])),
        ),
        (
            "bias.momentum_buffer".to_string(),
            ArrayD::zeros(IxDyn(&[4])),
        ),
        ("bias".to_string(), ArrayD::zeros(IxDyn(&[4]))),
    ];
    let err = optim::load_state(&mut sgd, &model, &bad).unwrap_err();
    assert_eq!(
        err.to_string(),
        "SGD state: 5 bad entries: \
         `weight.exp_avg`: not a state entry of SGD (its entries are `<param>.{momentum_buffer}`); \
         `fc9.weight.momentum_buffer`: the model has no trainable parameter `fc9.weight`; \
         `weight.momentum_buffer`: shape [6, 4] does not match parameter `weight` of shape [4, 6]; \
         `bias.momentum_buffer`: given more than once; \
         `bias`: not a state entry of SGD (its entries are `<param>.{momentum_buffer}`)"
    );
    assert!(sgd.state().is_empty(), "a failed load changed the state");

    let mut plain = Sgd::<f32>::new(SgdConfig::default());
    let err = optim::load_state(&mut plain, &model, &bad[3..4]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "SGD state: 1 bad entry: `bias.momentum_buffer`: not a state entry of SGD \
         (it keeps no state with these settings)"
    );

    let mut adam = Adam::<f32>::new(AdamConfig::adam());
    let scalar = |v: f32| ArrayD::from_elem(IxDyn(&[]), v);
    let entries = vec![
        (
            "weight.exp_avg".to_string(),
            ArrayD::<f32>::zeros(IxDyn(&[4, 6])),
        ),
        ("weight.step".to_string(), scalar(1.5)),
        ("bias.exp_avg".to_string(), ArrayD::zeros(IxDyn(&[4]))),
        ("bias.exp_avg_sq".to_string(), ArrayD::zeros(IxDyn(&[4]))),
        ("bias.step".to_string(), ArrayD::from_elem(IxDyn(&[1]), 2.0)),
        (
            "bias.max_exp_avg_sq".to_string(),
            ArrayD::zeros(IxDyn(&[4])),
        ),
    ];
    let err = optim::load_state(&mut adam, &model, &entries).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Adam state: 4 bad entries: \
         `weight.step`: a step count must be a scalar holding a whole number >= 1, got shape [] values 1.5; \
         `bias.step`: a step count must be a scalar holding a whole number >= 1, got shape [1] values [2]; \
         `bias.max_exp_avg_sq`: not a state entry of Adam (its entries are `<param>.{step,exp_avg,exp_avg_sq}`); \
         `weight.exp_avg_sq`: missing (Adam state of `weight` needs step, exp_avg, exp_avg_sq)"
    );
    assert!(adam.state().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Mask hygiene.

/// Test-only transform: effective weight = raw * fixed 0/1 mask.
struct FixedMask(Tensor<f32>);

impl WeightTransform<f32> for FixedMask {
    fn name(&self) -> &'static str {
        "fixed_mask"
    }
    fn apply<'t>(&self, raw: Var<'t, f32>) -> Var<'t, f32> {
        raw * raw.tape().constant(self.0.clone())
    }
    fn effective(&self, raw: &Tensor<f32>) -> Tensor<f32> {
        raw * &self.0
    }
    fn mask(&self) -> Option<&Tensor<f32>> {
        Some(&self.0)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// A Linear(6 -> 4) whose weight has a fixed checkerboard-ish mask with 8 of 24 entries pruned (flat index divisible by 3).
fn masked_classifier() -> (Linear<f32>, Tensor<f32>) {
    let mut layer = classifier(5);
    let mask = ArrayD::from_shape_fn(IxDyn(&[4, 6]), |i| {
        if (i[0] * 6 + i[1]) % 3 == 0 { 0.0 } else { 1.0 }
    });
    layer.weight.transform = Some(Box::new(FixedMask(mask.clone())));
    (layer, mask)
}

fn assert_masked(mask: &Tensor<f32>, t: &Tensor<f32>, what: &str) {
    for (m, v) in mask.iter().zip(t) {
        if *m == 0.0 {
            assert_eq!(v.to_bits(), 0.0f32.to_bits(), "{what}: pruned entry is {v}");
        }
    }
}

#[test]
fn masked_weights_stay_exactly_zero_under_sgd_momentum_and_decay() {
    let (mut layer, mask) = masked_classifier();
    let initial = layer.weight.raw.value().clone();
    let mut opt = Sgd::new(SgdConfig {
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 5e-4,
        ..Default::default()
    });
    train(&mut layer, &mut opt, 0..100);
    let w = layer.weight.raw.value();
    assert_masked(&mask, w, "weight");
    assert_masked(
        &mask,
        opt.momentum_buffer("weight").unwrap(),
        "momentum buffer",
    );
    // The kept entries did train.
    let moved = w
        .iter()
        .zip(&initial)
        .zip(&mask)
        .filter(|((a, b), m)| **m == 1.0 && a != b)
        .count();
    assert_eq!(moved, 16);
}

#[test]
fn masked_weights_stay_exactly_zero_under_adam() {
    for config in [AdamConfig::adam(), AdamConfig::adamw()] {
        let (mut layer, mask) = masked_classifier();
        let mut opt = Adam::new(AdamConfig {
            lr: 0.01,
            weight_decay: 5e-4,
            amsgrad: true,
            ..config
        });
        train(&mut layer, &mut opt, 0..100);
        assert_masked(&mask, layer.weight.raw.value(), "weight");
        for (name, t) in opt.state() {
            if name.starts_with("weight.") && name != "weight.step" {
                assert_masked(&mask, &t, &name);
            }
        }
    }
}
