//! Adam (Kingma & Ba 2015) and AdamW (Loshchilov & Hutter 2019) with the semantics of
//! `torch.optim.Adam` / `torch.optim.AdamW` (single-tensor path), lr and weight decay per group:
//!
//! ```text
//! t = t + 1                                            (per parameter)
//! AdamW: w = w * (1 - lr * wd)          Adam: g = g + wd * w
//! m = lerp(m, g, 1 - beta1)                            (= beta1 m + (1 - beta1) g)
//! v = beta2 v + (1 - beta2) g^2
//! amsgrad: v_max = max(v_max, v), and v_max replaces v below
//! denom = sqrt(v) / sqrt(1 - beta2^t) + eps            (= sqrt(v_hat) + eps)
//! w = w - (lr / (1 - beta1^t)) m / denom               (= w - lr m_hat / denom)
//! ```
//!
//! Scalars (bias corrections, step size) are computed in f64 and rounded once, as PyTorch
//! computes them in Python floats. PyTorch's vectorised `lerp` kernel fuses the multiply-add, so
//! `m` may differ from it in the last bit; the math is the same.

use std::collections::BTreeMap;

use ndarray::Zip;

use crate::error::{Error, Result};
use crate::float::Float;
use crate::optim::groups::{Hyper, ParamGroup};
use crate::optim::state::{ParamShapes, Slot, SlotKind, StateCheck, step_count, step_tensor};
use crate::optim::{Optimizer, zero_pruned};
use crate::tape::Tensor;

/// Default hyper-parameters of [`Adam`] (groups may override lr and weight decay).
#[derive(Clone, Debug, PartialEq)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// AdamW: decoupled weight decay `w *= 1 - lr * wd` instead of L2 added to the gradient.
    pub decoupled: bool,
    /// AMSGrad (Reddi et al. 2018): normalise by the running maximum of `v`.
    pub amsgrad: bool,
}

impl AdamConfig {
    /// `torch.optim.Adam` defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, no weight decay.
    pub fn adam() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
            amsgrad: false,
        }
    }

    /// `torch.optim.AdamW` defaults: as Adam, with decoupled weight decay 1e-2.
    pub fn adamw() -> Self {
        AdamConfig {
            weight_decay: 1e-2,
            decoupled: true,
            ..Self::adam()
        }
    }

    /// The checks `torch.optim.Adam` makes, plus finiteness.
    pub fn validate(&self) -> Result<()> {
        let name = if self.decoupled { "AdamW" } else { "Adam" };
        for (what, v) in [
            ("lr", self.lr),
            ("eps", self.eps),
            ("weight_decay", self.weight_decay),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::invalid(format!(
                    "{name}: {what} must be finite and >= 0, got {v}"
                )));
            }
        }
        for (what, v) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return Err(Error::invalid(format!(
                    "{name}: {what} must be in [0, 1), got {v}"
                )));
            }
        }
        Ok(())
    }
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self::adam()
    }
}

/// Per-parameter state.
struct Moments<F: Float> {
    step: u64,
    exp_avg: Tensor<F>,
    exp_avg_sq: Tensor<F>,
    max_exp_avg_sq: Option<Tensor<F>>,
}

const STEP: Slot = Slot {
    name: "step",
    kind: SlotKind::StepCount,
};
const EXP_AVG: Slot = Slot {
    name: "exp_avg",
    kind: SlotKind::LikeParam,
};
const EXP_AVG_SQ: Slot = Slot {
    name: "exp_avg_sq",
    kind: SlotKind::LikeParam,
};
const MAX_EXP_AVG_SQ: Slot = Slot {
    name: "max_exp_avg_sq",
    kind: SlotKind::LikeParam,
};

/// Adam or AdamW (see [`AdamConfig::adam`], [`AdamConfig::adamw`]); state keyed by parameter name.
pub struct Adam<F: Float> {
    pub config: AdamConfig,
    groups: Vec<ParamGroup>,
    state: BTreeMap<String, Moments<F>>,
}

impl<F: Float> Adam<F> {
    /// Panics on an invalid configuration; use [`Adam::try_new`] for user input.
    pub fn new(config: AdamConfig) -> Self {
        Self::try_new(config).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_new(config: AdamConfig) -> Result<Self> {
        config.validate()?;
        Ok(Adam {
            config,
            groups: Vec::new(),
            state: BTreeMap::new(),
        })
    }

    /// How many updates parameter `name` has had.
    pub fn step_count(&self, name: &str) -> u64 {
        self.state.get(name).map_or(0, |s| s.step)
    }

    fn name(&self) -> &'static str {
        if self.config.decoupled {
            "AdamW"
        } else {
            "Adam"
        }
    }

    fn slots(&self) -> &'static [Slot] {
        if self.config.amsgrad {
            &[STEP, EXP_AVG, EXP_AVG_SQ, MAX_EXP_AVG_SQ]
        } else {
            &[STEP, EXP_AVG, EXP_AVG_SQ]
        }
    }
}

/// PyTorch's scalar `lerp`: the form it picks keeps the result exact at both ends.
fn lerp<F: Float>(from: F, to: F, weight: F) -> F {
    if weight.abs() < F::c(0.5) {
        from + weight * (to - from)
    } else {
        to - (to - from) * (F::one() - weight)
    }
}

impl<F: Float> Optimizer<F> for Adam<F> {
    fn update(&mut self, name: &str, w: &mut Tensor<F>, g: &Tensor<F>, hyper: Hyper) {
        let c = &self.config;
        let amsgrad = c.amsgrad;
        let s = self
            .state
            .entry(name.to_string())
            .or_insert_with(|| Moments {
                step: 0,
                exp_avg: Tensor::zeros(w.raw_dim()),
                exp_avg_sq: Tensor::zeros(w.raw_dim()),
                max_exp_avg_sq: amsgrad.then(|| Tensor::zeros(w.raw_dim())),
            });
        s.step += 1;
        let t = s.step as f64;
        let bias_correction1 = 1.0 - c.beta1.powf(t);
        let bias_correction2 = 1.0 - c.beta2.powf(t);
        let step_size = F::c(hyper.lr / bias_correction1);
        let bias_correction2_sqrt = F::c(bias_correction2.sqrt());
        let (eps, beta2, one_minus_beta1, one_minus_beta2) = (
            F::c(c.eps),
            F::c(c.beta2),
            F::c(1.0 - c.beta1),
            F::c(1.0 - c.beta2),
        );
        let l2 = if c.decoupled {
            F::zero()
        } else {
            F::c(hyper.weight_decay)
        };
        if c.decoupled && hyper.weight_decay != 0.0 {
            let keep = F::c(1.0 - hyper.lr * hyper.weight_decay); // param.mul_(1 - lr * wd)
            w.mapv_inplace(|v| v * keep);
        }
        let moments = |w: F, g: F, m: &mut F, v: &mut F| {
            let g = g + l2 * w; // grad.add(param, alpha=wd); l2 = 0 for AdamW
            *m = lerp(*m, g, one_minus_beta1); // exp_avg.lerp_(grad, 1 - beta1)
            *v = *v * beta2 + one_minus_beta2 * g * g; // exp_avg_sq.mul_(beta2).addcmul_(g, g, 1 - beta2)
        };
        // param.addcdiv_(exp_avg, denom, value=-step_size): w + (-step_size * m) / denom
        let apply =
            |w: &mut F, m: F, v: F| *w -= step_size * m / (v.sqrt() / bias_correction2_sqrt + eps);
        match &mut s.max_exp_avg_sq {
            None => Zip::from(w)
                .and(g)
                .and(&mut s.exp_avg)
                .and(&mut s.exp_avg_sq)
                .for_each(|w, &g, m, v| {
                    moments(*w, g, m, v);
                    apply(w, *m, *v);
                }),
            Some(v_max) => Zip::from(w)
                .and(g)
                .and(&mut s.exp_avg)
                .and(&mut s.exp_avg_sq)
                .and(v_max)
                .for_each(|w, &g, m, v, v_max| {
                    moments(*w, g, m, v);
                    *v_max = v_max.max(*v); // torch.maximum(max_exp_avg_sq, exp_avg_sq)
                    apply(w, *m, *v_max);
                }),
        }
    }

    fn mask_state(&mut self, name: &str, mask: &Tensor<F>) {
        if let Some(s) = self.state.get_mut(name) {
            zero_pruned(&mut s.exp_avg, mask);
            zero_pruned(&mut s.exp_avg_sq, mask);
            if let Some(v_max) = &mut s.max_exp_avg_sq {
                zero_pruned(v_max, mask);
            }
        }
    }

    fn lr(&self) -> f64 {
        self.config.lr
    }

    fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    fn weight_decay(&self) -> f64 {
        self.config.weight_decay
    }

    fn groups(&self) -> &[ParamGroup] {
        &self.groups
    }

    fn groups_mut(&mut self) -> &mut Vec<ParamGroup> {
        &mut self.groups
    }

    fn state(&self) -> Vec<(String, Tensor<F>)> {
        let mut out = Vec::new();
        for (p, s) in &self.state {
            out.push((format!("{p}.{}", EXP_AVG.name), s.exp_avg.clone()));
            out.push((format!("{p}.{}", EXP_AVG_SQ.name), s.exp_avg_sq.clone()));
            if let Some(v_max) = &s.max_exp_avg_sq {
                out.push((format!("{p}.{}", MAX_EXP_AVG_SQ.name), v_max.clone()));
            }
            out.push((format!("{p}.{}", STEP.name), step_tensor(s.step)));
        }
        out
    }

    fn load_state(&mut self, entries: &[(String, Tensor<F>)], params: &ParamShapes) -> Result<()> {
        let mut check = StateCheck::new(self.name());
        let sorted = check.sort(entries, self.slots(), params);
        check.require(&sorted, self.slots());
        check.finish()?;
        self.state = sorted
            .into_iter()
            .map(|(p, slots)| {
                let moments = Moments {
                    step: step_count(slots[STEP.name]).expect("checked by StateCheck::sort"),
                    exp_avg: slots[EXP_AVG.name].clone(),
                    exp_avg_sq: slots[EXP_AVG_SQ.name].clone(),
                    max_exp_avg_sq: slots.get(MAX_EXP_AVG_SQ.name).map(|t| (*t).clone()),
                };
                (p.to_string(), moments)
            })
            .collect();
        Ok(())
    }
}
