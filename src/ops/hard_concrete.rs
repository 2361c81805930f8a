//! The L0 gates of Louizos et al. (ICLR 2018) as ops: a training-time hard-concrete sample
//! ([`Var::hard_concrete`]), the deterministic test-time gate ([`Var::hard_concrete_eval`]) and the
//! expected L0 penalty ([`Var::l0_penalty`]). All are composed from gradient-checked elementwise
//! ops, so their gradients are theirs; `docs/gradients.md` lists their tests.

use crate::float::Float;
use crate::tape::{Tensor, Var};

/// Hard-concrete distribution parameters (Louizos et al. 2018): temperature `beta`, stretch
/// interval (`gamma`, `zeta`) with gamma < 0 < 1 < zeta.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HardConcrete {
    pub beta: f64,
    pub gamma: f64,
    pub zeta: f64,
}

impl Default for HardConcrete {
    /// The paper's values: beta = 2/3, gamma = -0.1, zeta = 1.1.
    fn default() -> Self {
        HardConcrete {
            beta: 2.0 / 3.0,
            gamma: -0.1,
            zeta: 1.1,
        }
    }
}

impl HardConcrete {
    fn check(&self, op: &str) {
        assert!(
            self.beta > 0.0 && self.gamma < 0.0 && self.zeta > 1.0,
            "op `{op}`: needs beta > 0 and gamma < 0 < 1 < zeta, got {self:?}"
        );
    }

    /// log_alpha giving gates with drop rate p at initialisation: ln(1 - p) - ln p.
    pub fn log_alpha_for_drop_rate(p: f64) -> f64 {
        (1.0 - p).ln() - p.ln()
    }
}

impl<'t, F: Float> Var<'t, F> {
    /// A training-time hard-concrete gate sample from `self` = log_alpha and uniform noise `u` in
    /// (0, 1) (same shape as log_alpha, or broadcastable against it):
    /// s = sigmoid((ln u - ln(1 - u) + log_alpha) / beta), z = clamp(s (zeta - gamma) + gamma, 0, 1).
    /// Composed from elementwise ops, so its gradient is theirs (clamp passes it on [0, 1]).
    pub fn hard_concrete(self, u: &Tensor<F>, hc: &HardConcrete) -> Self {
        hc.check("hard_concrete");
        assert!(
            u.iter().all(|&u| u > F::zero() && u < F::one()),
            "op `hard_concrete`: noise u must lie in the open interval (0, 1)"
        );
        let logistic_noise = self
            .tape()
            .constant(u.mapv(|u| u.ln() - (F::one() - u).ln()));
        (self + logistic_noise)
            .mul_scalar(1.0 / hc.beta)
            .sigmoid()
            .mul_scalar(hc.zeta - hc.gamma)
            .add_scalar(hc.gamma)
            .clamp(0.0, 1.0)
    }

    /// The deterministic test-time gate z = clamp(sigmoid(log_alpha) (zeta - gamma) + gamma, 0, 1).
    pub fn hard_concrete_eval(self, hc: &HardConcrete) -> Self {
        hc.check("hard_concrete_eval");
        self.sigmoid()
            .mul_scalar(hc.zeta - hc.gamma)
            .add_scalar(hc.gamma)
            .clamp(0.0, 1.0)
    }

    /// The expected number of open gates, sum_j P(z_j != 0) = sum_j sigmoid(log_alpha_j -
    /// beta ln(-gamma / zeta)), as a value of shape [].
    pub fn l0_penalty(self, hc: &HardConcrete) -> Self {
        hc.check("l0_penalty");
        self.open_probability(hc).sum()
    }

    /// Per gate, the probability that it is open, P(z_j != 0) = sigmoid(log_alpha_j -
    /// beta ln(-gamma / zeta)) (the paper's eq. 12 summand), in log_alpha's shape: the weights
    /// of the L2 prior term of the authors' `_reg_w`.
    pub fn open_probability(self, hc: &HardConcrete) -> Self {
        hc.check("open_probability");
        self.add_scalar(-hc.beta * (-hc.gamma / hc.zeta).ln())
            .sigmoid()
    }
}
