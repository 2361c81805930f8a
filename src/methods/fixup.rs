//! The exact finish of the learned-threshold methods: after the optimisation, move the
//! per-layer thresholds by one common factor until exactly round(r0 N) weights are pruned
//! (FCPTS's guarantee; the authors' code ends with the same top-k correction). [`fixup_counts`]
//! is the counting rule, [`fix_up`] applies it to FCPTS's `ThresholdMask`s, and [`FixUp`] is
//! what the summary reports.

use crate::methods::fcpts::threshold_mask;
use crate::nn::Module;
use crate::sparsity::ThresholdMask;

/// One thresholded layer as the fix-up sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ThresholdedLayer {
    /// |w| in ascending order.
    pub sorted_abs: Vec<f64>,
    /// The layer's threshold t (weights with |w| <= t are pruned).
    pub threshold: f64,
    /// #{|w| <= t}.
    pub pruned: usize,
}

/// Per-layer prune counts totalling `goal` (when the unlocked layers can supply it), reached by
/// multiplying every unlocked threshold by one common factor: to prune d more weights, the d kept
/// weights with the smallest |w| / t_l go; to restore d, the d pruned weights with the largest
/// |w| / t_l come back. Ratios, not differences, so layers of different weight scales are treated
/// alike; ties go to the earlier layer. Within a layer this always moves the threshold past a
/// prefix of the sorted magnitudes, so every layer stays a threshold mask.
pub fn fixup_counts(layers: &[ThresholdedLayer], locked: &[bool], goal: usize) -> Vec<usize> {
    let mut counts: Vec<usize> = layers.iter().map(|l| l.pruned).collect();
    let current: usize = counts.iter().sum();
    let ratio = |a: f64, layer: &ThresholdedLayer| a / layer.threshold.max(f64::MIN_POSITIVE);
    let open = || {
        layers
            .iter()
            .enumerate()
            .filter(|(l, _)| !locked.get(*l).copied().unwrap_or(false))
    };
    let mut candidates: Vec<(f64, usize)> = Vec::new();
    if current < goal {
        let need = goal - current;
        for (l, layer) in open() {
            let kept = &layer.sorted_abs[layer.pruned..];
            candidates.extend(kept.iter().take(need).map(|&a| (ratio(a, layer), l)));
        }
        candidates.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
        for &(_, l) in candidates.iter().take(need) {
            counts[l] += 1;
        }
    } else if current > goal {
        let excess = current - goal;
        for (l, layer) in open() {
            let pruned = &layer.sorted_abs[..layer.pruned];
            candidates.extend(
                pruned
                    .iter()
                    .rev()
                    .take(excess)
                    .map(|&a| (ratio(a, layer), l)),
            );
        }
        candidates.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
        for &(_, l) in candidates.iter().take(excess) {
            counts[l] -= 1;
        }
    }
    counts
}

/// What the final fix-up did.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FixUp {
    /// round(r0 N): the weights the result prunes.
    pub goal: usize,
    /// Weights the learned thresholds pruned before the fix-up.
    pub pruned_before: usize,
    /// Weights pruned after it (= `goal` unless tied magnitudes made it impossible).
    pub pruned_after: usize,
    /// Weights whose mask the fix-up changed (pruned or restored): sum_l |k_l - c_l|.
    pub changed: usize,
    /// Per-layer sparsity and threshold learned by the optimisation, before the fix-up (in the
    /// summary's per-layer table, not repeated here).
    #[serde(skip)]
    pub learned_sparsity: Vec<f64>,
    #[serde(skip)]
    pub learned_threshold: Vec<f64>,
}

fn layer_states(model: &dyn Module<f32>) -> Vec<ThresholdedLayer> {
    let mut states = Vec::new();
    model.visit_weights("", &mut |_, w| {
        let t = threshold_mask(w).threshold();
        let mut sorted_abs: Vec<f64> = w.raw.value().iter().map(|v| v.abs() as f64).collect();
        sorted_abs.sort_unstable_by(f64::total_cmp);
        // Widening f32 to f64 is exact, so this is the forward pass's `|w| <= t` count.
        let pruned = sorted_abs.partition_point(|&a| a <= t as f64);
        states.push(ThresholdedLayer {
            sorted_abs,
            threshold: t as f64,
            pruned,
        });
    });
    states
}

/// Moves the learned thresholds so exactly round(r0 N) weights are pruned ([`fixup_counts`]);
/// each changed layer gets the threshold [`ThresholdMask::for_prune_count`] finds for its new
/// count. A layer whose count no threshold can hit (|w| ties straddling it, or |w| >= 1 beyond
/// sigmoid's range) keeps the nearest count and the others absorb the rest, at most one round per
/// layer.
pub fn fix_up(model: &mut dyn Module<f32>, r0: f64) -> FixUp {
    let before = layer_states(model);
    let total: usize = before.iter().map(|l| l.sorted_abs.len()).sum();
    let goal = (r0 * total as f64).round() as usize;
    let mut locked = vec![false; before.len()];
    let mut states = before.clone();
    for _ in 0..=before.len() {
        if states.iter().map(|l| l.pruned).sum::<usize>() == goal {
            break;
        }
        let counts = fixup_counts(&states, &locked, goal);
        let mut layer = 0;
        model.visit_weights_mut("", &mut |_, w| {
            if counts[layer] != states[layer].pruned {
                let variant = threshold_mask(w).variant;
                w.transform = Some(Box::new(ThresholdMask::for_prune_count(
                    w.raw.value(),
                    counts[layer],
                    variant,
                )));
            }
            layer += 1;
        });
        states = layer_states(model);
        let mut newly_locked = false;
        for (l, state) in states.iter().enumerate() {
            if state.pruned != counts[l] && !locked[l] {
                locked[l] = true;
                newly_locked = true;
            }
        }
        if !newly_locked {
            break;
        }
    }
    FixUp {
        goal,
        pruned_before: before.iter().map(|l| l.pruned).sum(),
        pruned_after: states.iter().map(|l| l.pruned).sum(),
        changed: before
            .iter()
            .zip(&states)
            .map(|(b, a)| b.pruned.abs_diff(a.pruned))
            .sum(),
        learned_sparsity: before
            .iter()
            .map(|l| l.pruned as f64 / l.sorted_abs.len().max(1) as f64)
            .collect(),
        learned_threshold: before.iter().map(|l| l.threshold).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(abs: &[f64], threshold: f64) -> ThresholdedLayer {
        let mut sorted_abs = abs.to_vec();
        sorted_abs.sort_by(f64::total_cmp);
        let pruned = sorted_abs.partition_point(|&a| a <= threshold);
        ThresholdedLayer {
            sorted_abs,
            threshold,
            pruned,
        }
    }

    #[test]
    fn prunes_the_smallest_ratios_to_the_threshold() {
        // Layer 0 (t = 1): kept 1.5, 3; layer 1 (t = 10): kept 12, 40. Ratios: 1.5, 3 | 1.2, 4.
        let layers = [
            layer(&[0.5, 1.5, 3.0], 1.0),
            layer(&[5.0, 12.0, 40.0], 10.0),
        ];
        assert_eq!(fixup_counts(&layers, &[false, false], 2), vec![1, 1]);
        assert_eq!(fixup_counts(&layers, &[false, false], 3), vec![1, 2]);
        assert_eq!(fixup_counts(&layers, &[false, false], 4), vec![2, 2]);
        assert_eq!(fixup_counts(&layers, &[false, true], 4), vec![3, 1]);
    }

    #[test]
    fn restores_the_largest_ratios_to_the_threshold() {
        // Pruned: layer 0 (t = 1): 0.2, 0.9 (ratios .2, .9); layer 1 (t = 10): 5, 8 (ratios .5, .8).
        let layers = [layer(&[0.2, 0.9, 3.0], 1.0), layer(&[5.0, 8.0, 40.0], 10.0)];
        assert_eq!(fixup_counts(&layers, &[false, false], 3), vec![1, 2]);
        assert_eq!(fixup_counts(&layers, &[false, false], 2), vec![1, 1]);
        assert_eq!(fixup_counts(&layers, &[false, false], 0), vec![0, 0]);
        assert_eq!(fixup_counts(&layers, &[false, false], 4), vec![2, 2]);
    }

    #[test]
    fn equal_ratios_go_to_the_earlier_layer() {
        let layers = [layer(&[0.5, 2.0], 1.0), layer(&[5.0, 20.0], 10.0)];
        assert_eq!(fixup_counts(&layers, &[false, false], 3), vec![2, 1]);
    }
}
