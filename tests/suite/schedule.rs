//! Learning-rate schedules at chosen step counts, against values derived by hand (in the
//! comments) and against a step-by-step simulation of PyTorch's chainable `scheduler.step()`
//! recursions written from `torch/optim/lr_scheduler.py`.

use sparsegrad::optim::{LrSchedule, Optimizer, Schedule, Sgd, SgdConfig, Warmup};

fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= 1e-12 * want.abs().max(1e-300)
}

fn check(s: &LrSchedule, expected: &[(usize, f64)]) {
    for &(t, want) in expected {
        let got = s.lr_at(t);
        assert!(
            close(got, want),
            "{s:?} at t={t}: got {got:.17}, want {want:.17}"
        );
    }
}

#[test]
fn constant() {
    let s = LrSchedule::new(0.1, None, Schedule::Constant);
    check(&s, &[(0, 0.1), (1, 0.1), (1000, 0.1)]);
}

#[test]
fn step_lr() {
    // base 0.1, step_size 30, gamma 0.1: 0.1 until t=29, 0.01 from 30, 0.001 from 60, 1e-4 at 90.
    let s = LrSchedule::new(
        0.1,
        None,
        Schedule::Step {
            step_size: 30,
            gamma: 0.1,
        },
    );
    check(
        &s,
        &[
            (0, 0.1),
            (29, 0.1),
            (30, 0.01),
            (59, 0.01),
            (60, 0.001),
            (89, 0.001),
            (90, 1e-4),
        ],
    );
}

#[test]
fn multistep_lr() {
    // base 0.1, milestones 50 and 75, gamma 0.2: 0.1, then 0.02 from 50, then 0.004 from 75.
    let s = LrSchedule::new(
        0.1,
        None,
        Schedule::MultiStep {
            milestones: vec![50, 75],
            gamma: 0.2,
        },
    );
    check(
        &s,
        &[
            (0, 0.1),
            (49, 0.1),
            (50, 0.02),
            (74, 0.02),
            (75, 0.004),
            (300, 0.004),
        ],
    );
}

#[test]
fn cosine_annealing() {
    // T_max 100, eta_min 0: base at 0, base/2 at 50, 0 at 100, base (1 + cos(pi/4)) / 2 =
    // base (2 + sqrt 2) / 4 at 25.
    let s = LrSchedule::new(
        0.1,
        None,
        Schedule::Cosine {
            t_max: 100,
            eta_min: 0.0,
        },
    );
    check(
        &s,
        &[(0, 0.1), (25, 0.1 * (2.0 + 2f64.sqrt()) / 4.0), (50, 0.05)],
    );
    assert!(s.lr_at(100).abs() < 1e-17, "cosine ends at eta_min 0");
    // eta_min 0.001: 0.001 + 0.099 / 2 = 0.0505 at 50, 0.001 at 100; 75: 0.001 + 0.099 (1 - sqrt(2)/2) / 2.
    let s = LrSchedule::new(
        0.1,
        None,
        Schedule::Cosine {
            t_max: 100,
            eta_min: 0.001,
        },
    );
    check(
        &s,
        &[
            (0, 0.1),
            (50, 0.0505),
            (75, 0.001 + 0.099 * (1.0 - 2f64.sqrt() / 2.0) / 2.0),
            (100, 0.001),
        ],
    );
}

#[test]
fn per_iteration_cosine() {
    // 3 epochs of 10 iterations, stepped per iteration: T_max = 30 iterations; mid-run at
    // iteration 15 the rate is half the base, a third of the way (10) it is base (1 + cos(pi/3)) / 2
    // = 0.75 base.
    let s = LrSchedule::new(
        0.4,
        None,
        Schedule::Cosine {
            t_max: 30,
            eta_min: 0.0,
        },
    );
    check(&s, &[(0, 0.4), (10, 0.3), (15, 0.2), (20, 0.1)]);
}

#[test]
fn warmup_then_cosine_boundaries() {
    // Warm-up 5 units from 0.1 * base, then cosine over 95: t < 5 is base (0.1 + 0.9 t / 5); t = 5
    // is the cosine's t = 0 (the base); t = 100 is the cosine's T_max (eta_min).
    let base = 0.2;
    let s = LrSchedule::new(
        base,
        Some(Warmup {
            units: 5,
            start_factor: 0.1,
        }),
        Schedule::Cosine {
            t_max: 95,
            eta_min: 0.002,
        },
    );
    check(
        &s,
        &[
            (0, 0.02),
            (1, base * 0.28),
            (4, base * 0.82),
            (5, base),
            (
                6,
                0.002 + (base - 0.002) * (1.0 + (std::f64::consts::PI / 95.0).cos()) / 2.0,
            ),
            (5 + 95, 0.002),
        ],
    );
    // Warm-up before a step schedule: its epochs count from the end of the warm-up.
    let s = LrSchedule::new(
        0.1,
        Some(Warmup {
            units: 3,
            start_factor: 0.5,
        }),
        Schedule::Step {
            step_size: 10,
            gamma: 0.1,
        },
    );
    check(
        &s,
        &[
            (0, 0.05),
            (2, 0.1 * (0.5 + 0.5 * 2.0 / 3.0)),
            (3, 0.1),
            (12, 0.1),
            (13, 0.01),
        ],
    );
}

#[test]
fn apply_sets_the_optimizer_base_rate() {
    let s = LrSchedule::new(
        0.1,
        None,
        Schedule::Step {
            step_size: 2,
            gamma: 0.5,
        },
    );
    let mut opt = Sgd::<f32>::new(SgdConfig::default());
    s.apply(&mut opt, 4);
    assert_eq!(Optimizer::<f32>::lr(&opt), 0.025);
}

// ---------------------------------------------------------------------------------------------
// Agreement with PyTorch's chainable form, stepped one unit at a time.

/// `get_lr()` of the main schedulers: the new lr from the previous one (`last_epoch` = t >= 1).
fn chainable_main(s: &Schedule, base: f64, prev: f64, t: usize) -> f64 {
    use std::f64::consts::PI;
    match s {
        Schedule::Constant => prev,
        Schedule::Step { step_size, gamma } => {
            if t.is_multiple_of(*step_size) {
                prev * gamma
            } else {
                prev
            }
        }
        Schedule::MultiStep { milestones, gamma } => {
            if milestones.contains(&t) {
                prev * gamma
            } else {
                prev
            }
        }
        Schedule::Cosine { t_max, eta_min } => {
            // Python: (last_epoch - 1 - T_max) % (2 * T_max) == 0, a non-negative modulo.
            let restart = (t as i64 - 1 - *t_max as i64).rem_euclid(2 * *t_max as i64) == 0;
            let (t, tm) = (t as f64, *t_max as f64);
            if restart {
                prev + (base - eta_min) * (1.0 - (PI / tm).cos()) / 2.0
            } else {
                (1.0 + (PI * t / tm).cos()) / (1.0 + (PI * (t - 1.0) / tm).cos()) * (prev - eta_min)
                    + eta_min
            }
        }
    }
}

/// SequentialLR([LinearLR(start_factor, total_iters=W), main], milestones=[W]) stepped to `until`.
fn pytorch_sequence(s: &LrSchedule, until: usize) -> Vec<f64> {
    let mut lrs = Vec::new();
    let mut lr = f64::NAN;
    for t in 0..until {
        lr = match &s.warmup {
            Some(w) if t < w.units => {
                let (sf, total) = (w.start_factor, w.units as f64);
                if t == 0 {
                    s.base_lr * sf
                } else {
                    lr * (1.0 + (1.0 - sf) / (total * sf + (t as f64 - 1.0) * (1.0 - sf)))
                }
            }
            // SequentialLR calls main.step(0) at the milestone: the closed form at 0, the base.
            Some(w) if t == w.units => s.base_lr,
            Some(w) => chainable_main(&s.main, s.base_lr, lr, t - w.units),
            None if t == 0 => s.base_lr,
            None => chainable_main(&s.main, s.base_lr, lr, t),
        };
        lrs.push(lr);
    }
    lrs
}

#[test]
fn closed_forms_match_pytorch_chainable_steps() {
    let warm = Some(Warmup {
        units: 7,
        start_factor: 0.25,
    });
    let mains = [
        Schedule::Constant,
        Schedule::Step {
            step_size: 13,
            gamma: 0.3,
        },
        Schedule::MultiStep {
            milestones: vec![20, 45, 46],
            gamma: 0.5,
        },
        Schedule::Cosine {
            t_max: 60,
            eta_min: 0.003,
        },
    ];
    for main in mains {
        for warmup in [None, warm.clone()] {
            let s = LrSchedule::new(0.3, warmup, main.clone());
            for (t, want) in pytorch_sequence(&s, 67).into_iter().enumerate() {
                let got = s.lr_at(t);
                assert!(
                    (got - want).abs() <= 1e-12 * want,
                    "{s:?} at t={t}: got {got}, PyTorch steps {want}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing.

#[test]
fn parses_schedules() {
    assert_eq!(Schedule::parse("constant", 90).unwrap(), Schedule::Constant);
    assert_eq!(
        Schedule::parse("step:30:0.1", 90).unwrap(),
        Schedule::Step {
            step_size: 30,
            gamma: 0.1
        }
    );
    assert_eq!(
        Schedule::parse("multistep:50,75:0.1", 90).unwrap(),
        Schedule::MultiStep {
            milestones: vec![50, 75],
            gamma: 0.1
        }
    );
    assert_eq!(
        Schedule::parse("cosine", 90).unwrap(),
        Schedule::Cosine {
            t_max: 90,
            eta_min: 0.0
        }
    );
    assert_eq!(
        Schedule::parse("cosine:1e-5", 90).unwrap(),
        Schedule::Cosine {
            t_max: 90,
            eta_min: 1e-5
        }
    );
    assert_eq!(
        Warmup::parse("5").unwrap(),
        Warmup {
            units: 5,
            start_factor: 1.0 / 3.0
        }
    );
    assert_eq!(
        Warmup::parse("5:0.1").unwrap(),
        Warmup {
            units: 5,
            start_factor: 0.1
        }
    );
}

#[test]
fn schedule_parse_errors_name_the_flag_and_the_problem() {
    let cases = [
        (
            "",
            "--schedule ``: unknown schedule `` (expected constant, step, multistep or cosine)",
        ),
        (
            "linear",
            "--schedule `linear`: unknown schedule `linear` (expected constant, step, multistep or cosine)",
        ),
        (
            "constant:1",
            "--schedule `constant:1`: expected `constant` with no arguments",
        ),
        (
            "step:30",
            "--schedule `step:30`: expected `step:STEP_SIZE:GAMMA`, e.g. `step:30:0.1`",
        ),
        (
            "step:0:0.1",
            "--schedule `step:0:0.1`: STEP_SIZE `0` is not a whole number >= 1",
        ),
        (
            "step:3.5:0.1",
            "--schedule `step:3.5:0.1`: STEP_SIZE `3.5` is not a whole number >= 1",
        ),
        (
            "step:30:-1",
            "--schedule `step:30:-1`: GAMMA `-1` is not a finite number > 0",
        ),
        (
            "step:30:nan",
            "--schedule `step:30:nan`: GAMMA `nan` is not a finite number > 0",
        ),
        (
            "multistep:50,75",
            "--schedule `multistep:50,75`: expected `multistep:M1,M2,...:GAMMA`, e.g. `multistep:50,75:0.1`",
        ),
        (
            "multistep:50,x:0.1",
            "--schedule `multistep:50,x:0.1`: milestone `x` is not a whole number >= 1",
        ),
        (
            "multistep::0.1",
            "--schedule `multistep::0.1`: milestone `` is not a whole number >= 1",
        ),
        (
            "multistep:75,50:0.1",
            "--schedule `multistep:75,50:0.1`: milestones must be strictly increasing, got 75,50",
        ),
        (
            "cosine:abc",
            "--schedule `cosine:abc`: ETA_MIN `abc` is not a finite number >= 0",
        ),
        (
            "cosine:1:2",
            "--schedule `cosine:1:2`: expected `cosine` or `cosine:ETA_MIN`, e.g. `cosine:1e-5`",
        ),
    ];
    for (spec, message) in cases {
        let err = Schedule::parse(spec, 90).unwrap_err();
        assert_eq!(err.to_string(), message, "spec {spec:?}");
    }
    assert_eq!(
        Schedule::parse("cosine", 0).unwrap_err().to_string(),
        "--schedule `cosine`: cosine needs at least one epoch or iteration after warm-up"
    );
}

#[test]
fn warmup_parse_errors_name_the_flag_and_the_problem() {
    let cases = [
        ("", "--warmup ``: UNITS `` is not a whole number >= 1"),
        ("0", "--warmup `0`: UNITS `0` is not a whole number >= 1"),
        (
            "5:0",
            "--warmup `5:0`: START_FACTOR `0` is not a number in (0, 1]",
        ),
        (
            "5:1.5",
            "--warmup `5:1.5`: START_FACTOR `1.5` is not a number in (0, 1]",
        ),
    ];
    for (spec, message) in cases {
        assert_eq!(
            Warmup::parse(spec).unwrap_err().to_string(),
            message,
            "spec {spec:?}"
        );
    }
}
