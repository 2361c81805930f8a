//! Learning-rate schedules as functions `lr_at(t)` of a step count `t` (0-based). The caller picks
//! the unit: call with the epoch number for a per-epoch schedule, or with the iteration number for
//! a per-iteration one (then give step sizes, milestones and `T_max` in iterations too).
//!
//! Values are PyTorch's closed forms (`_get_closed_form_lr`, what a scheduler computes when
//! stepped to an explicit epoch):
//!
//! ```text
//! constant            lr_t = base
//! StepLR              lr_t = base * gamma^floor(t / step_size)
//! MultiStepLR         lr_t = base * gamma^(number of milestones <= t)
//! CosineAnnealingLR   lr_t = eta_min + (base - eta_min) * (1 + cos(pi * t / T_max)) / 2
//! LinearLR warm-up    lr_t = base * (start_factor + (1 - start_factor) * t / W)     for t < W
//! ```
//!
//! `scheduler.step()` applies the equivalent chainable (recursive) forms, which agree up to
//! floating-point rounding. Like PyTorch, the cosine is not clamped after `T_max` (it rises
//! again); set `T_max` to the run length. A warm-up of `W` units followed by a main schedule is
//! `SequentialLR([LinearLR(start_factor, total_iters=W), main], milestones=[W])`: the main
//! schedule starts at its own `t = 0` (the base rate) at unit `W`, so the warm-up's end value
//! (the base rate) is never used by LinearLR itself.

use crate::error::{Error, Result};

/// What a schedule counts (`--schedule-unit`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleUnit {
    /// The schedule advances once per epoch.
    Epoch,
    /// The schedule advances once per optimiser step.
    Step,
}

impl std::fmt::Display for ScheduleUnit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ScheduleUnit::Epoch => "epoch",
            ScheduleUnit::Step => "step",
        })
    }
}

/// The main schedule (after any warm-up), as a multiple of the base learning rate.
#[derive(Clone, Debug, PartialEq)]
pub enum Schedule {
    Constant,
    /// `torch.optim.lr_scheduler.StepLR(step_size, gamma)`.
    Step {
        step_size: usize,
        gamma: f64,
    },
    /// `MultiStepLR(milestones, gamma)`; milestones strictly increasing.
    MultiStep {
        milestones: Vec<usize>,
        gamma: f64,
    },
    /// `CosineAnnealingLR(T_max, eta_min)`; `eta_min` is an absolute learning rate.
    Cosine {
        t_max: usize,
        eta_min: f64,
    },
}

impl Schedule {
    /// The learning rate at `t` units after this schedule starts, from base rate `base`.
    pub fn lr_at(&self, base: f64, t: usize) -> f64 {
        match self {
            Schedule::Constant => base,
            // Python: base_lr * gamma ** (last_epoch // step_size); `**` is C pow, as powf.
            Schedule::Step { step_size, gamma } => base * gamma.powf((t / step_size) as f64),
            Schedule::MultiStep { milestones, gamma } => {
                let passed = milestones.iter().filter(|&&m| m <= t).count(); // bisect_right
                base * gamma.powf(passed as f64)
            }
            // Evaluated in PyTorch's operation order.
            Schedule::Cosine { t_max, eta_min } => {
                let cos = (std::f64::consts::PI * t as f64 / *t_max as f64).cos();
                eta_min + (base - eta_min) * (1.0 + cos) / 2.0
            }
        }
    }

    /// Parses a `--schedule` value. `main_units` is the length of the main schedule in the unit
    /// the caller steps it in (epochs or iterations, after any warm-up): cosine anneals over it.
    ///
    /// `constant` | `step:STEP_SIZE:GAMMA` | `multistep:M1,M2,...:GAMMA` | `cosine` |
    /// `cosine:ETA_MIN`
    pub fn parse(spec: &str, main_units: usize) -> Result<Schedule> {
        let fail = |why: String| Error::invalid(format!("--schedule `{spec}`: {why}"));
        let parts: Vec<&str> = spec.split(':').collect();
        let want = |n: usize, form: &str| {
            if parts.len() == n {
                Ok(())
            } else {
                Err(fail(format!("expected {form}")))
            }
        };
        match parts[0] {
            "constant" => {
                want(1, "`constant` with no arguments")?;
                Ok(Schedule::Constant)
            }
            "step" => {
                want(3, "`step:STEP_SIZE:GAMMA`, e.g. `step:30:0.1`")?;
                let step_size =
                    parse_count(parts[1]).map_err(|e| fail(format!("STEP_SIZE {e}")))?;
                let gamma = parse_gamma(parts[2]).map_err(fail)?;
                Ok(Schedule::Step { step_size, gamma })
            }
            "multistep" => {
                want(3, "`multistep:M1,M2,...:GAMMA`, e.g. `multistep:50,75:0.1`")?;
                let milestones = parts[1]
                    .split(',')
                    .map(|m| parse_count(m).map_err(|e| fail(format!("milestone {e}"))))
                    .collect::<Result<Vec<usize>>>()?;
                if milestones.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(fail(format!(
                        "milestones must be strictly increasing, got {}",
                        parts[1]
                    )));
                }
                let gamma = parse_gamma(parts[2]).map_err(fail)?;
                Ok(Schedule::MultiStep { milestones, gamma })
            }
            "cosine" => {
                let eta_min = match parts.len() {
                    1 => 0.0,
                    2 => match parts[1].parse::<f64>() {
                        Ok(v) if v.is_finite() && v >= 0.0 => v,
                        _ => {
                            return Err(fail(format!(
                                "ETA_MIN `{}` is not a finite number >= 0",
                                parts[1]
                            )));
                        }
                    },
                    _ => {
                        return Err(fail(
                            "expected `cosine` or `cosine:ETA_MIN`, e.g. `cosine:1e-5`".into(),
                        ));
                    }
                };
                if main_units == 0 {
                    return Err(fail(
                        "cosine needs at least one epoch or iteration after warm-up".into(),
                    ));
                }
                Ok(Schedule::Cosine {
                    t_max: main_units,
                    eta_min,
                })
            }
            other => Err(fail(format!(
                "unknown schedule `{other}` (expected constant, step, multistep or cosine)"
            ))),
        }
    }
}

/// Parses a whole number >= 1; the error says what was wrong with `s`.
fn parse_count(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("`{s}` is not a whole number >= 1")),
    }
}

fn parse_gamma(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(g) if g.is_finite() && g > 0.0 => Ok(g),
        _ => Err(format!("GAMMA `{s}` is not a finite number > 0")),
    }
}

/// A linear warm-up (`LinearLR(start_factor, end_factor=1, total_iters=units)`).
#[derive(Clone, Debug, PartialEq)]
pub struct Warmup {
    /// Length W of the warm-up, in the schedule's unit.
    pub units: usize,
    /// The fraction of the base rate at t = 0, in (0, 1].
    pub start_factor: f64,
}

impl Warmup {
    /// `torch.optim.lr_scheduler.LinearLR`'s default start factor.
    pub const DEFAULT_START_FACTOR: f64 = 1.0 / 3.0;

    /// Parses a `--warmup` value: `UNITS` or `UNITS:START_FACTOR` (e.g. `5` or `5:0.1`).
    pub fn parse(spec: &str) -> Result<Warmup> {
        let fail = |why: String| Error::invalid(format!("--warmup `{spec}`: {why}"));
        let (units, factor) = match spec.split_once(':') {
            None => (spec, None),
            Some((u, f)) => (u, Some(f)),
        };
        let units = parse_count(units).map_err(|e| fail(format!("UNITS {e}")))?;
        let start_factor = match factor {
            None => Self::DEFAULT_START_FACTOR,
            Some(f) => match f.parse::<f64>() {
                Ok(v) if v > 0.0 && v <= 1.0 => v,
                _ => {
                    return Err(fail(format!(
                        "START_FACTOR `{f}` is not a number in (0, 1]"
                    )));
                }
            },
        };
        Ok(Warmup {
            units,
            start_factor,
        })
    }
}

/// A base learning rate, an optional warm-up, and the main schedule after it.
#[derive(Clone, Debug, PartialEq)]
pub struct LrSchedule {
    pub base_lr: f64,
    pub warmup: Option<Warmup>,
    pub main: Schedule,
}

impl LrSchedule {
    pub fn new(base_lr: f64, warmup: Option<Warmup>, main: Schedule) -> Self {
        LrSchedule {
            base_lr,
            warmup,
            main,
        }
    }

    /// The learning rate at step count `t` (epoch or iteration, 0-based).
    pub fn lr_at(&self, t: usize) -> f64 {
        match &self.warmup {
            // LinearLR closed form: base * (start + (end - start) * min(total, t) / total).
            Some(w) if t < w.units => {
                self.base_lr * (w.start_factor + (1.0 - w.start_factor) * t as f64 / w.units as f64)
            }
            Some(w) => self.main.lr_at(self.base_lr, t - w.units),
            None => self.main.lr_at(self.base_lr, t),
        }
    }

    /// Sets `opt`'s base learning rate for step count `t`.
    pub fn apply<F: crate::float::Float, O: crate::optim::Optimizer<F> + ?Sized>(
        &self,
        opt: &mut O,
        t: usize,
    ) {
        opt.set_lr(self.lr_at(t));
    }
}
