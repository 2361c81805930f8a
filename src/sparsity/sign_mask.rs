//! [`ThresholdMask`]: FCPTS's learnable per-layer magnitude threshold (Gong et al. 2024) as a
//! weight transform. The effective weight is M W with M = 1[|W| > t] (eqs. 1-2).
//!
//! As in the authors' code (ModelTC/FCPTS `main.py`, `SparsityConstrain` with type `v1`; ModelTC/
//! msbench `FCPTSFakeSparse`), the threshold is parameterised by an unconstrained score,
//! t = sigmoid(score), on the raw |w|; the score is a trainable parameter named `{weight}_score`
//! (shape []). [`ThresholdMask::for_sparsity`] initialises it from a target layer sparsity.
//!
//! Two variants ([`FcptsVariant`]):
//! - `Paper(surrogate)`: the reconstruction loss reaches t through dM/dt (eq. 14) via a
//!   straight-through [`Surrogate`];
//! - `Code`: the authors' released code builds the mask under `no_grad`, so only the control
//!   loss (through [`ThresholdMask::sparsity_rate`]) moves t.

use std::any::Any;

use crate::error::{Error, Result};
use crate::float::Float;
use crate::nn::WeightTransform;
use crate::ops::sparsity::{Density, Surrogate};
use crate::param::Param;
use crate::tape::{Tape, Tensor, Var};

/// Whether the mask passes a gradient to its threshold.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FcptsVariant {
    /// The paper (eq. 14): dL/dt through the mask, with dM/dt from the surrogate.
    Paper(Surrogate),
    /// The released code: the mask is a constant for t; only the sparsity bridge moves t.
    Code,
}

/// FCPTS's threshold mask.
pub struct ThresholdMask<F: Float> {
    score: Param<F>,
    pub variant: FcptsVariant,
}

impl<F: Float> ThresholdMask<F> {
    /// A mask with threshold sigmoid(`score`).
    pub fn new(score: f64, variant: FcptsVariant) -> Self {
        ThresholdMask {
            score: Param::new(Tensor::from_elem(ndarray::IxDyn(&[]), F::c(score))),
            variant,
        }
    }

    /// A mask pruning round(`sparsity` * len) weights of `w` at initialisation (see
    /// [`ThresholdMask::for_prune_count`]). `sparsity` must be in [0, 1].
    pub fn for_sparsity(w: &Tensor<F>, sparsity: f64, variant: FcptsVariant) -> Result<Self> {
        if !(0.0..=1.0).contains(&sparsity) {
            return Err(Error::invalid(format!(
                "ThresholdMask::for_sparsity: sparsity {sparsity} is outside [0, 1]"
            )));
        }
        let k = (sparsity * w.len() as f64).round() as usize;
        Ok(Self::for_prune_count(w, k.min(w.len()), variant))
    }

    /// A mask pruning exactly `k` weights of `w` (the k smallest |w|) at initialisation.
    ///
    /// With a_1 <= ... <= a_n the sorted |w|, exactly k are pruned iff a_k <= t < a_{k+1}. We aim
    /// at the middle of that interval, take score = logit(t), then nudge the score (in F
    /// precision) until sigmoid(score) evaluated exactly as the forward pass does lands inside.
    /// Exactness is impossible when |w| ties straddle rank k, or when a_k >= 1 (t = sigmoid < 1);
    /// then the count nearest to k is used (more pruned on a tie).
    pub fn for_prune_count(w: &Tensor<F>, k: usize, variant: FcptsVariant) -> Self {
        let mut abs: Vec<f64> = w.iter().map(|x| x.abs().f64()).collect();
        abs.sort_unstable_by(f64::total_cmp);
        let k = k.min(abs.len());
        let lo = if k == 0 { 0.0 } else { abs[k - 1] };
        let hi = abs.get(k).copied().unwrap_or(1.0).min(1.0);
        let target = if hi > lo { 0.5 * (lo + hi) } else { lo };
        let target = target.clamp(f64::MIN_POSITIVE, 1.0 - f64::EPSILON);
        let mut mask = Self::new(target.ln() - (-target).ln_1p(), variant);
        mask.nudge_to_count(&abs, k);
        mask
    }

    /// Moves the score by one relative epsilon at a time (at most 64 steps) until the forward pass
    /// prunes `k` of the weights whose sorted magnitudes are `sorted_abs`; stops early when a step
    /// jumps over `k` (no representable score hits it) and keeps the best score seen.
    fn nudge_to_count(&mut self, sorted_abs: &[f64], k: usize) {
        let pruned = |m: &Self| {
            let t = m.threshold();
            sorted_abs.partition_point(|&a| F::c(a) <= t)
        };
        // Closest to k first; on equal distance, more pruned.
        let rank = |c: usize| (c.abs_diff(k), std::cmp::Reverse(c));
        let mut score = self.score_value();
        let mut best = (pruned(self), score);
        let mut went_up = None;
        for _ in 0..64 {
            let c = pruned(self);
            if rank(c) < rank(best.0) {
                best = (c, score);
            }
            if c == k || went_up == Some(c > k) {
                break;
            }
            went_up = Some(c < k);
            let step = (score.abs() * F::epsilon()).max(F::min_positive_value());
            score = if c < k { score + step } else { score - step };
            self.set_score(score);
        }
        self.set_score(best.1);
    }

    fn score_value(&self) -> F {
        *self.score.value().iter().next().expect("scalar score")
    }

    fn set_score(&mut self, score: F) {
        self.score
            .set_value(Tensor::from_elem(ndarray::IxDyn(&[]), score));
    }

    /// The score parameter (t = sigmoid(score)).
    pub fn score(&self) -> &Param<F> {
        &self.score
    }

    /// The threshold t = sigmoid(score), computed exactly as the forward pass computes it.
    pub fn threshold(&self) -> F {
        let tape = Tape::new();
        let _no_grad = tape.no_grad();
        self.threshold_on(&tape).item()
    }

    /// t = sigmoid(score) as a differentiable variable on `tape`.
    pub fn threshold_on<'t>(&self, tape: &'t Tape<F>) -> Var<'t, F> {
        tape.param(&self.score).sigmoid()
    }

    /// The layer's sparsity rate r(t) (FCPTS eq. 10), differentiable in the score through
    /// dr/dt = p(t) + p(-t) (eq. 11): the input of the control loss (eq. 3).
    pub fn sparsity_rate<'t>(&self, raw: Var<'t, F>, density: &Density) -> Var<'t, F> {
        raw.sparsity_rate(self.threshold_on(raw.tape()), density)
    }
}

impl<F: Float> WeightTransform<F> for ThresholdMask<F> {
    fn name(&self) -> &'static str {
        "fcpts"
    }

    fn apply<'t>(&self, raw: Var<'t, F>) -> Var<'t, F> {
        let tape = raw.tape();
        match self.variant {
            FcptsVariant::Paper(surrogate) => raw.sign_mask(self.threshold_on(tape), surrogate),
            FcptsVariant::Code => {
                // The score enters the tape with its gradient (the sparsity bridge may use it on
                // this tape too); only the mask's copy of t is cut off.
                let score = tape.param(&self.score);
                let t = {
                    let _no_grad = tape.no_grad();
                    score.sigmoid()
                };
                // t carries no gradient, so the surrogate is never evaluated.
                raw.sign_mask(t, Surrogate::ClippedIdentity)
            }
        }
    }

    /// t = sigmoid(score).
    fn threshold(&self) -> Option<f64> {
        Some(ThresholdMask::threshold(self).f64())
    }

    fn effective(&self, raw: &Tensor<F>) -> Tensor<F> {
        // The same op as the forward pass, on a throwaway tape that records no gradients.
        let tape = Tape::new();
        let _no_grad = tape.no_grad();
        (*self.apply(tape.constant(raw.clone())).value()).clone()
    }

    fn visit<'a>(&'a self, weight: &str, f: &mut dyn FnMut(&str, &'a Param<F>)) {
        f(&format!("{weight}_score"), &self.score);
    }

    fn visit_mut(&mut self, weight: &str, f: &mut dyn FnMut(&str, &mut Param<F>)) {
        f(&format!("{weight}_score"), &mut self.score);
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
