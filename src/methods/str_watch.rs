//! STR's no-pruning warning (our addition): a watch on the largest threshold parameter s of every
//! layer over each epoch, which warns once when every threshold g(s) stayed ~0 all epoch and, moving
//! at that epoch's pace, would still be ~0 at the end of the run, with ~0 gradient: nothing will be
//! pruned (the most common complaint about STR with ImageNet settings on short runs).

use serde::{Deserialize, Serialize};

use crate::nn::{Module, Weight};
use crate::ops::sparsity::ThresholdFn;
use crate::sparsity::GroupSoftThreshold;

use super::str::{DEFAULT_S_INIT, soft_threshold};

/// A threshold is "~0" when it is below this fraction of the weights' RMS magnitude (or of the
/// RMS group norm, for group thresholds): it then shrinks every weight by less than 0.1% of its
/// typical size, prunes about 0.1% of a Gaussian layer at most, and its gradient, proportional
/// to g'(s) <= g(s) for sigmoid and exp, is as small.
pub const NEGLIGIBLE_THRESHOLD: f64 = 1e-3;

/// What the no-pruning warning has seen of the current epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Watch {
    epoch: usize,
    steps: usize,
    /// Per thresholded weight: the largest entry of s after the epoch's first step, and the
    /// largest seen since.
    s_first: Vec<f64>,
    s_max: Vec<f64>,
}

/// The watch and whether its warning was given (saved in checkpoints).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NoPruningWatch {
    watch: Option<Watch>,
    /// The warning is given once.
    warned: bool,
}

impl NoPruningWatch {
    /// Records the thresholds after a step of `epoch`.
    pub fn observe(&mut self, model: &dyn Module<f32>, epoch: usize) {
        let s = largest_s(model);
        match &mut self.watch {
            Some(w) if w.epoch == epoch => {
                w.steps += 1;
                for (m, v) in w.s_max.iter_mut().zip(&s) {
                    *m = m.max(*v);
                }
            }
            _ => {
                self.watch = Some(Watch {
                    epoch,
                    steps: 1,
                    s_first: s.clone(),
                    s_max: s,
                })
            }
        }
    }

    /// The warning after `epoch` of `epochs`, if every threshold stayed ~0 (g(s) below
    /// [`NEGLIGIBLE_THRESHOLD`] of the weights' RMS) and would still be ~0 after the last epoch.
    pub fn warning(
        &mut self,
        model: &dyn Module<f32>,
        epoch: usize,
        epochs: usize,
    ) -> Option<String> {
        let watch = self
            .watch
            .as_ref()
            .filter(|w| w.epoch == epoch && !self.warned)?;
        let s_now = largest_s(model);
        let remaining = epochs.saturating_sub(epoch + 1) as f64;
        // The epoch's first step is not in s_first - s_end: scale to a whole epoch.
        let per_epoch = watch.steps as f64 / (watch.steps.max(2) - 1) as f64;
        let mut worst: Option<(String, f64, f64, f64)> = None; // name, s, g(s), g(s_final)
        for (k, (name, g, scale)) in threshold_scales(model).iter().enumerate() {
            let (s_first, s_max, s_end) = (watch.s_first[k], watch.s_max[k], s_now[k]);
            let drift = ((s_end - s_first) * per_epoch).max(0.0);
            let s_final = s_end + drift * remaining;
            let limit = NEGLIGIBLE_THRESHOLD * scale;
            if g.value(s_max) >= limit || g.value(s_final) >= limit {
                return None;
            }
            if worst.as_ref().is_none_or(|w| s_max > w.1) {
                worst = Some((name.clone(), s_max, g.value(s_max), g.value(s_final)));
            }
        }
        let (name, s, gs, g_final) = worst?;
        self.warned = true;
        Some(format!(
            "STR: every threshold g(s) stayed ~0 in epoch {} (largest: {name}, s = {s:.4}, g(s) = {gs:.3e}) and at its pace would still be ~0 ({g_final:.3e}) after the last epoch, with ~0 gradient: nothing will be pruned. Use a larger --s-init (e.g. {:.0}) or a larger --weight-decay",
            epoch + 1,
            DEFAULT_S_INIT
        ))
    }
}

/// The largest entry of every threshold parameter s (a global one once, at its owner).
fn largest_s(model: &dyn Module<f32>) -> Vec<f64> {
    let mut out = Vec::new();
    model.visit_weights("", &mut |_, w| {
        if let Some(st) = soft_threshold(w).filter(|st| st.owns_threshold()) {
            out.push(
                st.s()
                    .iter()
                    .fold(f64::NEG_INFINITY, |m, s| m.max(*s as f64)),
            );
        } else if let Some(gt) = group_threshold(w) {
            out.push(gt.s() as f64);
        }
    });
    out
}

/// Per threshold parameter (in [`largest_s`] order): the weight's name, its g, and the
/// magnitude a threshold is compared with (RMS weight; RMS group norm for group thresholds).
fn threshold_scales(model: &dyn Module<f32>) -> Vec<(String, ThresholdFn, f64)> {
    let mut out = Vec::new();
    model.visit_weights("", &mut |name, w| {
        let raw = w.raw.value();
        let sq: f64 = raw.iter().map(|v| (*v as f64).powi(2)).sum();
        if let Some(st) = soft_threshold(w).filter(|st| st.owns_threshold()) {
            let rms = (sq / raw.len().max(1) as f64).sqrt();
            out.push((name.to_string(), st.g().clone(), rms));
        } else if let Some(gt) = group_threshold(w) {
            let groups = raw.len_of(ndarray::Axis(gt.axis())).max(1);
            out.push((
                name.to_string(),
                gt.g().clone(),
                (sq / groups as f64).sqrt(),
            ));
        }
    });
    out
}

fn group_threshold(w: &Weight<f32>) -> Option<&GroupSoftThreshold<f32>> {
    w.transform.as_ref()?.as_any().downcast_ref()
}
