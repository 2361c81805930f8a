//! Parameter groups: per-parameter hyper-parameters, as PyTorch's `param_groups`.
//!
//! A group is a name matcher plus its own learning-rate multiplier, weight decay and frozen flag.
//! The [`step`](crate::optim::step) driver resolves each parameter's group (the FIRST group whose
//! matcher accepts it; the optimiser's defaults when none does) and hands the resolved [`Hyper`]
//! to [`Optimizer::update`](crate::optim::Optimizer::update), so every optimiser gets groups the
//! same way. Typical uses:
//!
//! ```
//! use sparsegrad::optim::{ParamGroup, ParamMatch};
//! let groups = vec![
//!     // STR thresholds (`fc1.weight_threshold`) get their own decay; listed first because they
//!     // are scalars and would otherwise fall into the next group.
//!     ParamGroup::new(ParamMatch::Suffix("_threshold".into())).with_weight_decay(1e-4),
//!     // No weight decay on biases and batchnorm scale/shift.
//!     ParamGroup::new(ParamMatch::BiasesAndNorms).with_weight_decay(0.0),
//! ];
//! ```

use crate::error::{Error, Result};

/// Which parameters a group applies to, judged by full parameter name (and shape).
#[derive(Clone, Debug, PartialEq)]
pub enum ParamMatch {
    /// Names ending with the string, e.g. `_threshold` for STR's `fc1.weight_threshold`.
    Suffix(String),
    /// Names starting with the string, e.g. `features.` or `fc3.`.
    Prefix(String),
    /// Exactly these names.
    Names(Vec<String>),
    /// Biases and normalisation parameters: a name ending in `bias` or a tensor with at most one
    /// dimension (batchnorm/layernorm scale and shift, bias vectors, scalar gates). This is the
    /// usual "no weight decay" rule (timm's `param_groups_weight_decay`); module names alone cannot
    /// tell a batchnorm `features.1.weight` from a conv `features.0.weight`, their rank can.
    BiasesAndNorms,
    /// Every parameter (a catch-all, for example to override the defaults of "all others").
    All,
}

impl ParamMatch {
    pub fn matches(&self, name: &str, shape: &[usize]) -> bool {
        match self {
            ParamMatch::Suffix(s) => name.ends_with(s.as_str()),
            ParamMatch::Prefix(p) => name.starts_with(p.as_str()),
            ParamMatch::Names(names) => names.iter().any(|n| n == name),
            ParamMatch::BiasesAndNorms => name.ends_with("bias") || shape.len() <= 1,
            ParamMatch::All => true,
        }
    }
}

/// One parameter group. Fields left at their defaults inherit the optimiser's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamGroup {
    pub matcher: ParamMatch,
    /// Multiplies the optimiser's (scheduled) learning rate for this group.
    pub lr_scale: f64,
    /// This group's weight decay; `None` uses the optimiser's.
    pub weight_decay: Option<f64>,
    /// A frozen group is skipped entirely: no update and no optimiser state.
    pub frozen: bool,
}

impl ParamGroup {
    /// A group with the optimiser's learning rate and weight decay (override with the builders).
    pub fn new(matcher: ParamMatch) -> Self {
        ParamGroup {
            matcher,
            lr_scale: 1.0,
            weight_decay: None,
            frozen: false,
        }
    }

    pub fn with_lr_scale(mut self, lr_scale: f64) -> Self {
        self.lr_scale = lr_scale;
        self
    }

    pub fn with_weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = Some(weight_decay);
        self
    }

    pub fn freeze(mut self) -> Self {
        self.frozen = true;
        self
    }
}

/// The hyper-parameters one parameter is updated with in one step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hyper {
    pub lr: f64,
    pub weight_decay: f64,
}

/// The hyper-parameters of parameter `name`: those of the first group that matches, applied to
/// the optimiser's `defaults`; `None` when that group is frozen.
pub fn resolve(
    groups: &[ParamGroup],
    name: &str,
    shape: &[usize],
    defaults: Hyper,
) -> Option<Hyper> {
    match groups.iter().find(|g| g.matcher.matches(name, shape)) {
        None => Some(defaults),
        Some(g) if g.frozen => None,
        Some(g) => Some(Hyper {
            lr: defaults.lr * g.lr_scale,
            weight_decay: g.weight_decay.unwrap_or(defaults.weight_decay),
        }),
    }
}

/// Rejects negative or non-finite multipliers and decays (group `i` is named by its position).
pub fn validate(groups: &[ParamGroup]) -> Result<()> {
    for (i, g) in groups.iter().enumerate() {
        if !(g.lr_scale.is_finite() && g.lr_scale >= 0.0) {
            return Err(Error::invalid(format!(
                "parameter group {i} ({:?}): lr_scale must be finite and >= 0, got {}",
                g.matcher, g.lr_scale
            )));
        }
        if let Some(wd) = g.weight_decay
            && !(wd.is_finite() && wd >= 0.0)
        {
            return Err(Error::invalid(format!(
                "parameter group {i} ({:?}): weight_decay must be finite and >= 0, got {wd}",
                g.matcher
            )));
        }
    }
    Ok(())
}
