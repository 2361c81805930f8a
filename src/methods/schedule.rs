//! When a pruning method prunes, and to what global sparsity: the *schedule* part of
//! score x distribution x schedule (see `methods::prune`). Steps are optimiser steps taken
//! (`t = step + 1` in `after_step`).

use serde::{Deserialize, Serialize};

/// Gradual pruning on the polynomial schedule of Zhu & Gupta (2017), eq. (1):
/// s(t) = s_f + (s_i - s_f)(1 - p)^power with p = clip((t - t_begin) / (t_end - t_begin), 0, 1);
/// power 3 is the paper's cubic schedule (GMP).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolynomialSchedule {
    pub initial: f64,
    pub target: f64,
    pub begin: usize,
    pub end: usize,
    /// Steps between mask updates, counted from `begin`.
    pub every: usize,
    pub power: i32,
}

impl PolynomialSchedule {
    /// GMP's cubic schedule from 0 to `target`.
    pub fn cubic(target: f64, begin: usize, end: usize, every: usize) -> Self {
        PolynomialSchedule {
            initial: 0.0,
            target,
            begin,
            end,
            every,
            power: 3,
        }
    }

    /// s(t) of eq. (1).
    pub fn sparsity_at(&self, t: usize) -> f64 {
        let span = self.end.saturating_sub(self.begin).max(1) as f64;
        let p = ((t as f64 - self.begin as f64) / span).clamp(0.0, 1.0);
        self.target + (self.initial - self.target) * (1.0 - p).powi(self.power)
    }

    /// Whether the masks are updated after `t` steps: every `every` steps from t_begin, and at
    /// t_end.
    pub fn prunes_at(&self, t: usize) -> bool {
        t >= self.begin
            && t <= self.end
            && ((t - self.begin).is_multiple_of(self.every) || t == self.end)
    }

    /// The target to prune to after `t` steps, if the masks are updated then, and whether it is
    /// the last update (which must meet the target exactly).
    pub fn target_after(&self, t: usize) -> Option<(f64, bool)> {
        self.prunes_at(t)
            .then(|| (self.sparsity_at(t), t >= self.end))
    }
}
