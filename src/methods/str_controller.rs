//! STR's target controller (our addition to STR, `--target-sparsity`): the FCPTS control loss
//! (Gong et al. 2024, eq. 3) lambda_c |f(S_now) - f(S)| on the global sparsity the thresholds
//! produce, S_now = sum_l n_l r_l / N with r_l = `sparsity_rate(W_l, g(s_l))` (eq. 10,
//! differentiable in s through the KDE bridge, eq. 11), on the log-density scale
//! f(S) = -ln(1 - S) by default and with a ramped target (see [`Controller::loss`]).

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
    /// The control loss at step `t` of `total` for the current sparsity `now` (see
    /// `docs/methods.md`), with f(S) = S (`Linear`) or -ln(1 - S) (`LogDensity`): during the
    /// ramp (t < ramp x total) lambda_c relu(f(S*(t)) - f(S_now)) with
    /// S*(t) = S (1 - (1 - t / t_ramp)^3), GMP's cubic schedule, which only pushes sparsity up
    /// to the schedule and leaves STR alone when it is ahead; from then on the two-sided
    /// lambda_c |f(S_now) - f(S)| (FCPTS eq. 3 on the chosen scale), which lands on S.
    pub fn loss<'t>(&self, now: Var<'t, f32>, t: usize, total: usize) -> Var<'t, f32> {
        let ramp_steps = self.ramp * total as f64;
        // The error e = f(S*) - f(S_now) with f = S (linear) or f = -ln(1 - S) (log density), so
        // e > 0 means too few weights are pruned.
        let at = |s: f64| match self.scale {
            ControlScale::Linear => s,
            ControlScale::LogDensity => -(1.0 - s).ln(),
        };
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
        let gap = if (t as f64) < ramp_steps {
            let p = t as f64 / ramp_steps;
            let scheduled = self.target * (1.0 - (1.0 - p).powi(3));
            now.neg().add_scalar(at(scheduled)).relu()
        } else {
            now.add_scalar(-at(self.target)).abs()
        };
        gap.mul_scalar(self.weight)
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
