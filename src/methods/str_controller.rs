//! STR's target controller (our addition to STR, `--target-sparsity`): the FCPTS control loss
//! (Gong et al. 2024, eq. 3) lambda_c |f(S_now) - f(S)| on the global sparsity the thresholds
//! produce, S_now = sum_l n_l r_l / N with r_l = `sparsity_rate(W_l, g(s_l))` (eq. 10,
//! differentiable in s through the KDE bridge, eq. 11), on the log-density scale
//! f(S) = -ln(1 - S) by default and with a ramped target (see [`Controller::loss`]), plus a
//! Lagrange multiplier mu on the constraint f(S_now) = f(S*(t)), raised by dual ascent while the
//! gap persists and lowered once it closes ([`Controller::next_multiplier`]): the constant-weight
//! loss alone stalls short of high targets as the learning rate decays (the constant-weight controller
//! reached 0.9914 for a target of 0.998 on LeNet-300).

use serde::{Deserialize, Serialize};

use crate::nn::Module;
use crate::ops::sparsity::Density;
use crate::tape::{Tape, Var};

use super::str::soft_threshold;

/// The target controller: a control loss on the distance from S_now to the (ramped) target.
#[derive(Clone, Debug, PartialEq)]
pub struct Controller {
    /// Global sparsity S over all prunable weights (`--target-sparsity`).
    pub target: f64,
    /// lambda_c (`--controller-weight`).
    pub weight: f64,
    /// Density estimate of dr/dt (FCPTS eq. 12: `Density::paper()`).
    pub density: Density,
    /// The scale the error is measured on (`--controller-loss`).
    pub scale: ControlScale,
    /// Fraction of the run's steps over which the target ramps up (`--controller-ramp`; 0: the
    /// full target from the first step).
    pub ramp: f64,
    /// eta, the multiplier's step per optimiser step per unit of gap (`--controller-dual-lr`;
    /// 0: no multiplier, the constant-weight loss alone).
    pub dual_lr: f64,
}

/// The scale on which the controller measures the distance to the target
/// (`--controller-loss`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum ControlScale {
    /// |ln(1 - S_now) - ln(1 - S)|: the same on the log of the kept fraction. Its gradient is
    /// eq. 8's times 1 / (1 - S_now), a gain that grows as few weights remain, where the bridge's
    /// density (and so eq. 8) is small (default; `docs/methods.md` has the runs behind it).
    #[value(name = "log")]
    #[serde(rename = "log")]
    LogDensity,
    /// FCPTS eq. 3 as written: |S_now - S|.
    #[value(name = "linear")]
    #[serde(rename = "linear")]
    Linear,
}

impl Controller {
    /// f(S) on the controller's scale: S (`Linear`) or -ln(1 - S) (`LogDensity`).
    fn scaled(&self, s: f64) -> f64 {
        match self.scale {
            ControlScale::Linear => s,
            ControlScale::LogDensity => -(1.0 - s).max(KEPT_FLOOR as f64).ln(),
        }
    }

    /// Whether step `t` of `total` is in the ramp (one-sided constraint S_now >= S*(t)).
    fn in_ramp(&self, t: usize, total: usize) -> bool {
        (t as f64) < self.ramp * total as f64
    }

    /// The target at step `t` of `total`: during the ramp S*(t) = S (1 - (1 - t / t_ramp)^3),
    /// GMP's cubic schedule; S from then on.
    pub fn scheduled(&self, t: usize, total: usize) -> f64 {
        if self.in_ramp(t, total) {
            let p = t as f64 / (self.ramp * total as f64);
            self.target * (1.0 - (1.0 - p).powi(3))
        } else {
            self.target
        }
    }

    /// The gap e = f(S*(t)) - f(S_now) (e > 0: too few weights pruned).
    pub fn gap(&self, now: f64, t: usize, total: usize) -> f64 {
        self.scaled(self.scheduled(t, total)) - self.scaled(now)
    }

    /// The multiplier after step `t` (dual ascent on the Lagrangian, whose derivative in mu is
    /// the gap): mu + eta e, projected on mu >= 0 during the ramp, where the constraint is the
    /// inequality S_now >= S*(t), and free afterwards, where it is the equality S_now = S (a
    /// negative mu pulls sparsity down after an overshoot).
    pub fn next_multiplier(&self, mu: f64, gap: f64, t: usize, total: usize) -> f64 {
        let next = mu + self.dual_lr * gap;
        if self.in_ramp(t, total) {
            next.max(0.0)
        } else {
            next
        }
    }

    /// The control loss at step `t` of `total` for the current sparsity `now` and multiplier
    /// `mu` (see `docs/methods.md`), with f(S) = S (`Linear`) or -ln(1 - S) (`LogDensity`) and
    /// e = f(S*(t)) - f(S_now): during the ramp lambda_c relu(e), which only pushes sparsity up
    /// to the schedule and leaves STR alone when it is ahead; from then on the two-sided
    /// lambda_c |e| (FCPTS eq. 3 on the chosen scale). Plus the Lagrangian term mu e, with mu a
    /// constant on the tape: the push on f(S_now) is lambda_c sign(e) + mu, a proportional
    /// (bang-bang) part and an integral part that grows while the gap persists.
    pub fn loss<'t>(&self, now: Var<'t, f32>, t: usize, total: usize, mu: f64) -> Var<'t, f32> {
        let now = match self.scale {
            ControlScale::Linear => now,
            ControlScale::LogDensity => {
                // The kept fraction is 0 only when every weight is pruned; floored there so the
                // loss stays finite (and gives no gradient) instead of reading as a divergence.
                let floor = now.tape().constant(crate::tape::Tensor::from_elem(
                    ndarray::IxDyn(&[]),
                    KEPT_FLOOR,
                ));
                now.neg().add_scalar(1.0).maximum(floor).ln().neg()
            }
        };
        // e = f(S*) - f(S_now), on the tape.
        let gap = now.neg().add_scalar(self.scaled(self.scheduled(t, total)));
        let proportional = if self.in_ramp(t, total) {
            gap.relu()
        } else {
            gap.abs()
        };
        let loss = proportional.mul_scalar(self.weight);
        if mu == 0.0 {
            loss
        } else {
            loss + gap.mul_scalar(mu)
        }
    }
}

/// Smallest kept fraction the log-density control loss takes the logarithm of.
const KEPT_FLOOR: f32 = 1e-12;

/// The global sparsity the thresholds produce, S_now = sum_l n_l r_l / N (N = `total_weights`,
/// all prunable weights), recorded on `tape`
/// (differentiable in every s through the sparsity bridge). `None` if nothing is thresholded.
pub fn sparsity_on<'t>(
    model: &dyn Module<f32>,
    tape: &'t Tape<f32>,
    density: &Density,
    total_weights: usize,
) -> Option<Var<'t, f32>> {
    let mut pruned: Option<Var<'t, f32>> = None;
    let mut add = |v: Var<'t, f32>| pruned = Some(pruned.map_or(v, |p| p + v));
    model.visit_weights("", &mut |_, w| {
        let Some(st) = soft_threshold(w) else { return };
        let t = st.s_on(tape).threshold_fn(st.g());
        let raw = w.raw.value();
        if t.len() == 1 {
            // Per layer or global: r_l over the whole weight, times n_l.
            let r = tape.param(&w.raw).sparsity_rate(t, density);
            add(r.mul_scalar(raw.len() as f64));
        } else {
            // Per channel: r_c over row c with its own threshold. The value added is exactly
            // n_c r_c, but its gradient is that of n_l r_c: each channel threshold is pushed
            // as hard as its layer's threshold would be (with n_c it would move C times
            // slower than a per-layer one, against an unchanged weight decay).
            let ax = ndarray::Axis(0);
            let n_l = raw.len() as f64;
            for (c, row) in raw.axis_iter(ax).enumerate() {
                let row = tape.constant(row.to_owned());
                let r = row.sparsity_rate(t.narrow(0, c, 1), density);
                let held = tape.constant((*r.value()).clone());
                add(r.mul_scalar(n_l) - held.mul_scalar(n_l - row.len() as f64));
            }
        }
    });
    pruned.map(|p| p.mul_scalar(1.0 / total_weights as f64))
}
