//! The mask update of dynamic sparse training (RigL, SET): which weights one update drops and
//! which it grows, and when updates happen with what drop fraction. Pure functions of scores, so
//! the methods ([`crate::methods::dynamic`]) and the tests share one definition.
//!
//! One update of a layer with n active weights (Evci et al. 2020, Algorithm 1; the authors'
//! `generic_mask_update`, google-research/rigl `sparse_optimizers.py`):
//! - drop k = floor(f n) of the active weights with the lowest drop score (|w|), f the drop
//!   fraction of [`DropSchedule`];
//! - grow k of the weights inactive after the drop (just-dropped ones included) with the highest
//!   grow score (|dL/d(W m)| for RigL, a uniform draw for SET).
//!
//! The layer keeps n active weights. Ties go to the lower flat (row-major) index in both
//! rankings (the authors break them with tiny noise; here the update is a pure function of the
//! scores). A weight dropped and grown in the same update keeps its value and optimiser state,
//! as the code does (`reinit_when_same = False`); a weight that was inactive starts at 0 with
//! zeroed optimiser state (see `optim::step`: a masked entry's raw value and state are zeroed
//! after every step, so they are zero when it is grown).

use serde::{Deserialize, Serialize};

/// Every `every` optimiser steps until `end`, the drop fraction decays from `alpha` to 0 along
/// a cosine: f(t) = alpha / 2 (1 + cos(pi t / end)) (the paper's eq. 1 with T_end = `end`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DropSchedule {
    pub every: usize,
    pub alpha: f64,
    pub end: usize,
}

impl DropSchedule {
    /// The drop fraction of the update after `t` optimiser steps, if the masks are updated then
    /// (t a positive multiple of `every`, t <= `end`).
    pub fn drop_fraction_after(&self, t: usize) -> Option<f64> {
        let updates = t > 0 && t <= self.end && t.is_multiple_of(self.every);
        updates.then(|| {
            let progress = t as f64 / self.end.max(1) as f64;
            0.5 * self.alpha * (1.0 + (std::f64::consts::PI * progress).cos())
        })
    }
}

/// What one layer's update did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moved {
    /// Active weights dropped (= weights grown).
    pub dropped: usize,
    /// Of the grown weights, those that were inactive before the update (new connections).
    pub revived: usize,
}

/// The mask after one update of a layer: `kept` the current mask, `drop_scores` and
/// `grow_scores` one per entry, `fraction` the drop fraction. Returns the new mask and what moved.
pub fn drop_and_grow(
    kept: &[bool],
    drop_scores: &[f64],
    grow_scores: &[f64],
    fraction: f64,
) -> (Vec<bool>, Moved) {
    assert_eq!(kept.len(), drop_scores.len(), "drop_and_grow: drop scores");
    assert_eq!(kept.len(), grow_scores.len(), "drop_and_grow: grow scores");
    let active: Vec<usize> = (0..kept.len()).filter(|&i| kept[i]).collect();
    let dropped = ((active.len() as f64) * fraction).floor() as usize;
    let survivors = top_scores(active.clone(), drop_scores, active.len() - dropped);
    let mut next = vec![false; kept.len()];
    for &i in &survivors {
        next[i] = true;
    }
    let candidates: Vec<usize> = (0..kept.len()).filter(|&i| !next[i]).collect();
    let mut revived = 0;
    for i in top_scores(candidates, grow_scores, dropped) {
        next[i] = true;
        revived += usize::from(!kept[i]);
    }
    (next, Moved { dropped, revived })
}

/// The `k` of `indices` with the highest `scores` (ties to the lower index; NaN ranks lowest).
fn top_scores(mut indices: Vec<usize>, scores: &[f64], k: usize) -> Vec<usize> {
    let key = |i: usize| {
        if scores[i].is_nan() {
            f64::NEG_INFINITY
        } else {
            scores[i]
        }
    };
    let by_score_desc = |&a: &usize, &b: &usize| key(b).total_cmp(&key(a)).then(a.cmp(&b));
    let k = k.min(indices.len());
    if k > 0 && k < indices.len() {
        indices.select_nth_unstable_by(k - 1, by_score_desc);
    }
    indices.truncate(k);
    indices
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_smallest_active_and_grows_largest_inactive() {
        let kept = [true, true, true, true, false, false, false, false];
        let drop = [0.5, 0.1, 0.9, 0.2, 0.0, 0.0, 0.0, 0.0];
        let grow = [0.0, 0.0, 0.0, 0.0, 3.0, 1.0, 2.0, 0.5];
        let (next, moved) = drop_and_grow(&kept, &drop, &grow, 0.5);
        assert_eq!(
            next,
            [true, false, true, false, true, false, true, false],
            "drops entries 1 and 3 (|w| 0.1, 0.2), grows 4 and 6 (scores 3, 2)"
        );
        assert_eq!(
            moved,
            Moved {
                dropped: 2,
                revived: 2
            }
        );
    }

    #[test]
    fn a_dropped_weight_may_come_back_at_once() {
        let kept = [true, true, false];
        let (next, moved) = drop_and_grow(&kept, &[1.0, 0.5, 0.0], &[0.0, 9.0, 1.0], 0.5);
        assert_eq!(next, [true, true, false]);
        assert_eq!(
            moved,
            Moved {
                dropped: 1,
                revived: 0
            }
        );
    }

    #[test]
    fn ties_go_to_the_lower_index() {
        let kept = [true, true, true, false, false];
        let (next, _) = drop_and_grow(&kept, &[1.0, 1.0, 1.0, 0.0, 0.0], &[0.0; 5], 0.4);
        // One dropped: the highest index among equal |w|; grown: the lowest inactive index.
        assert_eq!(next, [true, true, true, false, false]);
    }

    #[test]
    fn cosine_drop_fraction() {
        let s = DropSchedule {
            every: 10,
            alpha: 0.3,
            end: 40,
        };
        assert_eq!(s.drop_fraction_after(5), None);
        assert_eq!(s.drop_fraction_after(0), None);
        assert_eq!(s.drop_fraction_after(50), None);
        let f = s.drop_fraction_after(20).unwrap();
        assert!((f - 0.15).abs() < 1e-12, "{f}");
        assert!(s.drop_fraction_after(40).unwrap().abs() < 1e-12);
    }
}
