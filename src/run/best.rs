//! Which epoch of a training run is its "best", and what is reported for it.
//!
//! The rule (also [`BEST_RULE`], printed under every table that shows it): among the epochs whose
//! model is at the run's final sparsity, the one with the highest validation accuracy (the
//! earliest on a tie); its *test* accuracy is reported. The test set never takes part in the
//! choice, so the reported figure is an honest estimate, and the sparsity filter keeps an epoch
//! before pruning finished (GMP's ramp, magnitude pruning's dense phase) from standing in for the
//! sparse model.
//!
//! "At the final sparsity", precisely: an epoch qualifies when the number of pruned (exactly
//! zero) prunable weights at its end is at least the final model's count minus the weights the
//! method's final fix-up moved (`FixUp::changed`; 0 without a fix-up). A method that reaches its
//! count exactly in `finish` (FCPTS-style fix-ups, GMP's exact final count) thus still counts its
//! last epoch, and nothing sparser than the result is ever excluded. No validation split
//! (`--val-split 0`) or no qualifying epoch: no best (the final accuracy stands alone).

use serde::{Deserialize, Serialize};

use crate::run::summary::EpochMetrics;

/// How "best" is selected, in one line for tables and the end of `train`.
pub const BEST_RULE: &str = "best = test accuracy at the epoch of highest validation accuracy \
     among the epochs at the run's final sparsity (never selected on the test set)";

/// The selected epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BestEpoch {
    /// 1-based epoch (over all rounds).
    pub epoch: usize,
    pub val_accuracy: f64,
    /// Test accuracy of that epoch's model: the figure reported as "best".
    pub test_accuracy: f64,
    /// Global sparsity of that epoch's model.
    pub sparsity: f64,
}

/// Pruned weights of an epoch's model of `total` prunable weights (its metrics line keeps the
/// sparsity as a fraction; `total` < 2^53, so rounding recovers the count exactly).
fn pruned(m: &EpochMetrics, total: usize) -> usize {
    (m.sparsity * total as f64).round() as usize
}

/// The best epoch of `history` (every epoch's metrics line, in order) for a run whose final model
/// prunes `final_pruned` of `total` weights after a fix-up that moved `fixup_moved` of them (see
/// the module docs).
pub fn select_best(
    history: &[EpochMetrics],
    total: usize,
    final_pruned: usize,
    fixup_moved: usize,
) -> Option<BestEpoch> {
    let floor = final_pruned.saturating_sub(fixup_moved);
    let mut best: Option<BestEpoch> = None;
    for m in history {
        let Some(val) = m.val_acc else { continue };
        if pruned(m, total) < floor || best.as_ref().is_some_and(|b| val <= b.val_accuracy) {
            continue;
        }
        best = Some(BestEpoch {
            epoch: m.epoch,
            val_accuracy: val,
            test_accuracy: m.test_acc,
            sparsity: m.sparsity,
        });
    }
    best
}
