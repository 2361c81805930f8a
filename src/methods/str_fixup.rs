//! STR's exact finish (our addition, `--str-finish exact|strict`): when the learned thresholds
//! leave the model short of (or past) `--target-sparsity`, a magnitude fix-up among the
//! surviving weights brings the global count of zeros to exactly round(S N), keeping the learned
//! per-layer budget: every sparsified layer's kept count is scaled by one common factor
//! ([`proportional_counts`]), so the ratios of the layers' densities stay what STR learned.
//!
//! Within a layer the fix-up works on the soft threshold's margins m_i = |W_i| - g(s_i) (f32,
//! exactly as the forward pass computes them; W_eff_i = sign(W_i) max(m_i, 0)):
//! - to prune d more, the d survivors with the smallest m (= the smallest |W_eff|) become 0, the
//!   other survivors keep their values;
//! - to restore d, the d pruned weights with the largest m come back with the value
//!   sign(W_i) (m_i - m*), m* the largest margin still pruned in the layer (as if the layer's
//!   threshold were lowered just for them: small values, so the trained function barely moves);
//!   a tie with m* gives the smallest positive f32 instead of 0, so the count stays exact.
//!
//! Ties go to the lower index. Layers kept dense (`--first-layer-dense`, `--last-layer-dense`)
//! are not touched; their zeros count as they are.

use crate::methods::FixUp;
use crate::methods::str::soft_threshold;
use crate::nn::Module;
use crate::tape::Tensor;

/// One sparsified layer as the fix-up sees it.
struct Layer {
    /// The raw weights and their margins m_i = |W_i| - t_i, in row-major order.
    raw: Vec<f32>,
    margins: Vec<f32>,
    kept: usize,
}

impl Layer {
    fn kept_at(&self, i: usize) -> bool {
        self.margins[i] > 0.0 && self.raw[i] != 0.0
    }

    /// The (index, new baked value) changes that take the layer from its kept count to `keep`.
    fn changes(&self, keep: usize) -> Vec<(usize, f32)> {
        let by_margin =
            |a: &usize, b: &usize| self.margins[*a].total_cmp(&self.margins[*b]).then(a.cmp(b));
        if keep < self.kept {
            let mut survivors: Vec<usize> =
                (0..self.raw.len()).filter(|&i| self.kept_at(i)).collect();
            survivors.sort_by(by_margin);
            return survivors[..self.kept - keep]
                .iter()
                .map(|&i| (i, 0.0))
                .collect();
        }
        let mut pruned: Vec<usize> = (0..self.raw.len()).filter(|&i| !self.kept_at(i)).collect();
        // Largest margin first, ties to the lower index.
        pruned.sort_by(|a, b| by_margin(b, a).then(a.cmp(b)));
        let mut restorable = pruned.iter().copied().filter(|&i| self.raw[i] != 0.0);
        let restored: Vec<usize> = restorable.by_ref().take(keep - self.kept).collect();
        let remaining = pruned.iter().filter(|i| !restored.contains(i));
        let floor = remaining
            .map(|&i| self.margins[i] as f64)
            .fold(f64::NEG_INFINITY, f64::max);
        // Nothing left pruned: m* below every margin (m_i >= -t_i >= -max t), values >= |W_i|.
        let floor = if floor.is_finite() {
            floor
        } else {
            self.margins
                .iter()
                .zip(&self.raw)
                .map(|(&m, &w)| m as f64 - w.abs() as f64)
                .fold(0.0, f64::min)
        };
        restored
            .into_iter()
            .map(|i| {
                let value = ((self.margins[i] as f64 - floor) as f32).max(f32::MIN_POSITIVE);
                (i, value.copysign(self.raw[i]))
            })
            .collect()
    }
}

/// Counts k_l <= cap_l totalling `total` (at most sum cap), proportional to `weights`: one
/// common factor c with k_l ~ w_l c, layers that would pass their cap held at it (water
/// filling), the rounding remainder to the largest fractional parts (ties to the earlier layer).
/// Layers of weight 0 get nothing unless the others cannot hold `total`; the rest is then spread
/// over them in proportion to their caps.
pub fn proportional_counts(weights: &[usize], cap: &[usize], total: usize) -> Vec<usize> {
    let total = total.min(cap.iter().sum());
    let mut counts = vec![0; cap.len()];
    let (positive, zero): (Vec<usize>, Vec<usize>) =
        (0..cap.len()).partition(|&l| weights[l] > 0 && cap[l] > 0);
    let positive_cap: usize = positive.iter().map(|&l| cap[l]).sum();
    if total <= positive_cap {
        water_fill(&positive, &|l| weights[l] as f64, cap, total, &mut counts);
    } else {
        for &l in &positive {
            counts[l] = cap[l];
        }
        water_fill(
            &zero,
            &|l| cap[l] as f64,
            cap,
            total - positive_cap,
            &mut counts,
        );
    }
    counts
}

fn water_fill(
    layers: &[usize],
    weight: &dyn Fn(usize) -> f64,
    cap: &[usize],
    total: usize,
    counts: &mut [usize],
) {
    let mut capped = vec![false; cap.len()];
    let mut factor;
    loop {
        let room = total
            - layers
                .iter()
                .filter(|&&l| capped[l])
                .map(|&l| cap[l])
                .sum::<usize>();
        let free: Vec<usize> = layers.iter().copied().filter(|&l| !capped[l]).collect();
        let sum: f64 = free.iter().map(|&l| weight(l)).sum();
        factor = if sum > 0.0 { room as f64 / sum } else { 0.0 };
        let over: Vec<usize> = free
            .into_iter()
            .filter(|&l| weight(l) * factor >= cap[l] as f64)
            .collect();
        if over.is_empty() {
            break;
        }
        for l in over {
            capped[l] = true;
        }
    }
    let mut fractions = Vec::new();
    for &l in layers {
        if capped[l] {
            counts[l] = cap[l];
        } else {
            let share = weight(l) * factor;
            counts[l] = (share.floor() as usize).min(cap[l]);
            fractions.push((share - share.floor(), l));
        }
    }
    fractions.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut left = total.saturating_sub(layers.iter().map(|&l| counts[l]).sum());
    while left > 0 {
        let before = left;
        for &(_, l) in &fractions {
            if left > 0 && counts[l] < cap[l] {
                counts[l] += 1;
                left -= 1;
            }
        }
        if left == before {
            break;
        }
    }
}

/// What the fix-up will do to a model, computed before anything changes (so a strict run can
/// refuse it first).
pub struct Plan {
    /// Per prunable weight, in visit order: the changes to its baked values (none for a dense
    /// layer).
    changes: Vec<Vec<(usize, f32)>>,
    fixup: FixUp,
}

/// Plans the fix-up of a model carrying STR's soft thresholds to round(`target` N) zeros.
pub fn plan(model: &dyn Module<f32>, target: f64) -> Plan {
    let mut layers: Vec<Option<Layer>> = Vec::new();
    let mut sizes = Vec::new();
    let mut dense_zeros = Vec::new();
    let mut learned_threshold = Vec::new();
    model.visit_weights("", &mut |_, w| {
        let raw = w.raw.value();
        sizes.push(raw.len());
        let Some(st) = soft_threshold(w) else {
            dense_zeros.push(raw.iter().filter(|v| **v == 0.0).count());
            learned_threshold.push(f64::NAN);
            layers.push(None);
            return;
        };
        dense_zeros.push(0);
        learned_threshold.push(crate::nn::WeightTransform::threshold(st).unwrap_or(f64::NAN));
        let thresholds = st.threshold_value();
        let thresholds = thresholds
            .broadcast(raw.raw_dim())
            .expect("a threshold broadcasts to its weight");
        let raw_flat: Vec<f32> = raw.iter().copied().collect();
        let margins: Vec<f32> = raw
            .iter()
            .zip(thresholds.iter())
            .map(|(w, t)| w.abs() - t)
            .collect();
        let mut layer = Layer {
            raw: raw_flat,
            margins,
            kept: 0,
        };
        layer.kept = (0..layer.raw.len()).filter(|&i| layer.kept_at(i)).count();
        layers.push(Some(layer));
    });
    let total: usize = sizes.iter().sum();
    let goal = ((target * total as f64).round() as usize).min(total);
    let kept_in_dense: usize = layers
        .iter()
        .zip(&sizes)
        .zip(&dense_zeros)
        .filter(|((l, _), _)| l.is_none())
        .map(|((_, n), z)| n - z)
        .sum();
    let keep_total = (total - goal).saturating_sub(kept_in_dense);
    let kept: Vec<usize> = layers
        .iter()
        .map(|l| l.as_ref().map_or(0, |l| l.kept))
        .collect();
    let cap: Vec<usize> = layers
        .iter()
        .map(|l| {
            l.as_ref()
                .map_or(0, |l| l.raw.iter().filter(|w| **w != 0.0).count())
        })
        .collect();
    let keep = proportional_counts(&kept, &cap, keep_total);
    let changes: Vec<Vec<(usize, f32)>> = layers
        .iter()
        .zip(&keep)
        .map(|(l, &k)| l.as_ref().map_or(Vec::new(), |l| l.changes(k)))
        .collect();
    let pruned: Vec<usize> = layers
        .iter()
        .zip(&sizes)
        .zip(&dense_zeros)
        .map(|((l, n), z)| l.as_ref().map_or(*z, |l| n - l.kept))
        .collect();
    let pruned_before: usize = pruned.iter().sum();
    let changed: usize = changes.iter().map(Vec::len).sum();
    let fixup = FixUp {
        goal,
        pruned_before,
        // As planned; `apply` counts the zeros again.
        pruned_after: (pruned_before + kept.iter().sum::<usize>())
            .saturating_sub(keep.iter().sum()),
        changed,
        weights: total,
        learned_sparsity: pruned
            .iter()
            .zip(&sizes)
            .map(|(p, n)| *p as f64 / (*n).max(1) as f64)
            .collect(),
        learned_threshold,
    };
    Plan { changes, fixup }
}

impl Plan {
    /// The fix-up as planned.
    pub fn summary(&self) -> &FixUp {
        &self.fixup
    }

    /// The share of the weights the target keeps that the fix-up moves ([`FixUp::share_moved`]).
    pub fn share_moved(&self) -> f64 {
        self.fixup.share_moved()
    }

    /// Bakes the soft thresholds into plain weights and applies the fix-up to them; the result
    /// counts the zeros of the baked weights.
    pub fn apply(self, model: &mut dyn Module<f32>) -> FixUp {
        crate::methods::bake(model);
        let mut layer = 0;
        let mut zeros = 0;
        model.visit_weights_mut("", &mut |_, w| {
            let changes = &self.changes[layer];
            layer += 1;
            if !changes.is_empty() {
                let value = w.raw.value();
                let mut flat: Vec<f32> = value.iter().copied().collect();
                for &(i, v) in changes {
                    flat[i] = v;
                }
                let changed = Tensor::from_shape_vec(value.raw_dim(), flat)
                    .expect("the same number of elements");
                w.raw.set_value(changed);
            }
            zeros += w.raw.value().iter().filter(|v| **v == 0.0).count();
        });
        FixUp {
            pruned_after: zeros,
            ..self.fixup
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_keep_the_learned_proportions() {
        // Kept 100 / 20 / 0 of caps 1000 / 100 / 50; keeping 60 in all halves every layer.
        assert_eq!(
            proportional_counts(&[100, 20, 0], &[1000, 100, 50], 60),
            vec![50, 10, 0]
        );
        // Keeping 61: the remainder goes to the largest fraction (50.83 vs 10.17).
        assert_eq!(
            proportional_counts(&[100, 20, 0], &[1000, 100, 50], 61),
            vec![51, 10, 0]
        );
        // Growing: layer 1 reaches its cap (20 x 6 = 120 > 100); layer 0 takes the rest.
        assert_eq!(
            proportional_counts(&[100, 20, 0], &[1000, 100, 50], 720),
            vec![620, 100, 0]
        );
        // More than the kept layers hold: the empty layer gets the rest.
        assert_eq!(
            proportional_counts(&[100, 20, 0], &[1000, 100, 50], 1110),
            vec![1000, 100, 10]
        );
        // Capped at the total of the caps.
        assert_eq!(proportional_counts(&[1, 1], &[3, 4], 100), vec![3, 4]);
        // Equal fractions: the earlier layer.
        assert_eq!(proportional_counts(&[1, 1], &[10, 10], 3), vec![2, 1]);
    }

    fn layer(raw: &[f32], t: f32) -> Layer {
        let margins: Vec<f32> = raw.iter().map(|w| w.abs() - t).collect();
        let mut l = Layer {
            raw: raw.to_vec(),
            margins,
            kept: 0,
        };
        l.kept = (0..raw.len()).filter(|&i| l.kept_at(i)).count();
        l
    }

    #[test]
    fn prunes_the_smallest_survivors_and_restores_the_largest_pruned() {
        // t = 0.5: survivors 0.9 (m .4), -0.6 (m .1), 2.0 (m 1.5); pruned 0.3 (m -.2), -0.45
        // (m -.05), 0.0.
        let l = layer(&[0.9, 0.3, -0.6, 2.0, -0.45, 0.0], 0.5);
        assert_eq!(l.kept, 3);
        assert_eq!(l.changes(3), vec![]);
        assert_eq!(l.changes(1), vec![(2, 0.0), (0, 0.0)]);
        // Restore one: -0.45 (m -.05) comes back as -(m - m*) with m* = -.2 (0.3's margin).
        let restored = l.changes(4);
        assert_eq!(restored.len(), 1);
        assert_eq!(restored[0].0, 4);
        assert!((restored[0].1 - -0.15).abs() < 1e-6, "{restored:?}");
        // Restore both non-zero pruned weights: m* is the zero weight's margin, -0.5.
        let both = l.changes(5);
        assert_eq!(both.iter().map(|c| c.0).collect::<Vec<_>>(), vec![4, 1]);
        assert!(
            (both[0].1 - -0.45).abs() < 1e-6 && (both[1].1 - 0.3).abs() < 1e-6,
            "{both:?}"
        );
    }
}
