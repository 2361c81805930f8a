//! Optimiser state as named tensors, for checkpoints.
//!
//! Every optimiser exports its per-parameter state as `{param}.{slot}` entries, with PyTorch's
//! slot names (`momentum_buffer`, `exp_avg`, `exp_avg_sq`, `max_exp_avg_sq`, `step`), the step
//! count as a scalar (0-dimensional) tensor as PyTorch stores it. Loading checks every entry
//! against the optimiser's slots and the model's parameters and reports ALL bad entries by name in
//! one error, changing nothing unless every entry is good.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{Error, Result};
use crate::float::Float;
use crate::tape::Tensor;

/// Shapes of the model's trainable parameters by full name (what state entries must match).
pub type ParamShapes = BTreeMap<String, Vec<usize>>;

/// What a state slot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SlotKind {
    /// A tensor of the parameter's shape (momentum, moments).
    LikeParam,
    /// A scalar tensor holding a whole number >= 1 (the number of updates so far).
    StepCount,
}

/// One named slot of per-parameter state.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot {
    pub name: &'static str,
    pub kind: SlotKind,
}

/// Good entries sorted by parameter, then slot.
pub(crate) type SortedState<'a, F> = BTreeMap<&'a str, BTreeMap<&'static str, &'a Tensor<F>>>;

/// Collects problems while checking a state; fails with all of them at once.
pub(crate) struct StateCheck {
    optimizer: &'static str,
    problems: Vec<String>,
    /// `{param}.{slot}` entries with a known slot, good or bad (a bad one is not also "missing").
    seen: BTreeSet<String>,
}

impl StateCheck {
    pub fn new(optimizer: &'static str) -> Self {
        StateCheck {
            optimizer,
            problems: Vec::new(),
            seen: BTreeSet::new(),
        }
    }

    pub fn problem(&mut self, entry: &str, what: impl std::fmt::Display) {
        self.problems.push(format!("`{entry}`: {what}"));
    }

    /// Sorts `entries` by parameter and slot, recording unknown slots, unknown parameters, shape
    /// mismatches, malformed step counts and duplicates.
    pub fn sort<'a, F: Float>(
        &mut self,
        entries: &'a [(String, Tensor<F>)],
        slots: &[Slot],
        params: &ParamShapes,
    ) -> SortedState<'a, F> {
        let mut sorted: SortedState<'a, F> = BTreeMap::new();
        for (entry, tensor) in entries {
            let split = entry.rsplit_once('.');
            let Some((param, slot)) = split.and_then(|(p, s)| {
                slots
                    .iter()
                    .find(|slot| slot.name == s)
                    .map(|slot| (p, *slot))
            }) else {
                let expected = if slots.is_empty() {
                    "it keeps no state with these settings".to_string()
                } else {
                    let names: Vec<&str> = slots.iter().map(|s| s.name).collect();
                    format!("its entries are `<param>.{{{}}}`", names.join(","))
                };
                self.problem(
                    entry,
                    format!("not a state entry of {} ({expected})", self.optimizer),
                );
                continue;
            };
            self.seen.insert(entry.clone());
            let Some(shape) = params.get(param) else {
                self.problem(
                    entry,
                    format!("the model has no trainable parameter `{param}`"),
                );
                continue;
            };
            let ok = match slot.kind {
                SlotKind::LikeParam if tensor.shape() != shape.as_slice() => {
                    self.problem(
                        entry,
                        format!(
                            "shape {:?} does not match parameter `{param}` of shape {shape:?}",
                            tensor.shape()
                        ),
                    );
                    false
                }
                SlotKind::StepCount if step_count(tensor).is_none() => {
                    self.problem(
                        entry,
                        format!(
                            "a step count must be a scalar holding a whole number >= 1, got shape {:?} values {}",
                            tensor.shape(),
                            tensor
                        ),
                    );
                    false
                }
                _ => true,
            };
            if ok
                && sorted
                    .entry(param)
                    .or_default()
                    .insert(slot.name, tensor)
                    .is_some()
            {
                self.problem(entry, "given more than once");
            }
        }
        sorted
    }

    /// Records every parameter in `sorted` that lacks one of the `required` slots.
    pub fn require<F: Float>(&mut self, sorted: &SortedState<'_, F>, required: &[Slot]) {
        for (param, have) in sorted {
            for slot in required.iter().filter(|s| !have.contains_key(s.name)) {
                let entry = format!("{param}.{}", slot.name);
                if self.seen.contains(&entry) {
                    continue; // already reported as malformed
                }
                let names: Vec<&str> = required.iter().map(|s| s.name).collect();
                self.problem(
                    &entry,
                    format!(
                        "missing ({} state of `{param}` needs {})",
                        self.optimizer,
                        names.join(", ")
                    ),
                );
            }
        }
    }

    pub fn finish(self) -> Result<()> {
        if self.problems.is_empty() {
            return Ok(());
        }
        Err(Error::invalid(format!(
            "{} state: {} bad entr{}: {}",
            self.optimizer,
            self.problems.len(),
            if self.problems.len() == 1 { "y" } else { "ies" },
            self.problems.join("; ")
        )))
    }
}

/// The step count as PyTorch stores it: a scalar tensor.
pub(crate) fn step_tensor<F: Float>(step: u64) -> Tensor<F> {
    Tensor::from_elem(ndarray::IxDyn(&[]), F::c(step as f64))
}

/// The step count held by a scalar tensor, if it is a whole number >= 1.
pub(crate) fn step_count<F: Float>(t: &Tensor<F>) -> Option<u64> {
    if t.ndim() != 0 {
        return None;
    }
    let v = t.iter().next()?.f64();
    (v.is_finite() && v >= 1.0 && v.fract() == 0.0 && v <= (1u64 << 53) as f64).then_some(v as u64)
}
