//! What a post-training run writes once its method has finished: the export (with the
//! post-training settings in its metadata), `summary.json` and `sparsity.svg`, and the lines it
//! prints about the fix-up.

use std::time::Instant;

use crate::error::Result;
use crate::io::json::write_json;
use crate::methods::FixUp;
use crate::nn::Module;
use crate::posttrain::config::PosttrainConfig;
use crate::posttrain::inputs::{Inputs, pruned_goal};
use crate::run::dir::SUMMARY_FILE;
use crate::run::figures::{draw_posttrain_curves, draw_sparsity, title};
use crate::run::meta::{CheckpointMeta, ModelInfo, save_exports};
use crate::run::progress::Progress;
use crate::run::summary::{PosttrainLayer, PosttrainSummary, SparseKernelUse};
use crate::sparsity::report::{SparsityReport, sparsity_report};

/// What the run measured, for the summary.
pub struct Outcome {
    /// The student right after the method's `attach` and `init` (its starting allocation).
    pub initial: SparsityReport,
    pub fixup: Option<FixUp>,
    pub iterations: usize,
    pub dense_test_accuracy: f64,
    pub test_accuracy: f64,
    pub optimise_seconds: f64,
    pub evaluate_seconds: f64,
    pub started: Instant,
    pub sparse_kernels: SparseKernelUse,
}

/// How far (in weights, per thousand prunable weights, at least one) the result's pruned count
/// may be from round(r0 N) and still meet its target. Exact methods reach round(r0 N) exactly
/// unless weights of one layer share a magnitude across the threshold (a threshold mask prunes
/// all of a tie or none); a miss beyond this is a failed run.
pub const MISS_TOLERANCE: usize = 1000;

/// Why a result pruning `pruned` of `total` weights misses the goal round(r0 N) = `goal`, if it
/// does by more than one weight per [`MISS_TOLERANCE`].
pub fn target_miss(pruned: usize, goal: usize, total: usize, r0: f64) -> Option<String> {
    let allowed = (total / MISS_TOLERANCE).max(1);
    (pruned.abs_diff(goal) > allowed).then(|| {
        format!(
            "the result prunes {pruned} of {total} weights ({:.2}% sparse), not the {goal} of \
             --target-sparsity {r0} (allowed: within {allowed})",
            100.0 * pruned as f64 / total.max(1) as f64
        )
    })
}

/// A warning when the learned thresholds missed the target by more than 1% of the weights: the
/// control loss lost to the reconstruction loss, and the fix-up, not the optimisation, chose
/// which weights to prune. None when the fix-up could not reach the goal either (tied
/// magnitudes): the run then fails with [`target_miss`]'s message, and the advice cannot help.
pub fn fixup_warning(f: &FixUp, total: usize) -> Option<String> {
    let missed = f.pruned_before.abs_diff(f.goal);
    (missed * 100 > total && f.pruned_after == f.goal).then(|| {
        format!(
            "warning: the learned thresholds prune {:.2}% of the weights instead of {:.2}%; the fix-up moved {} weights (try a larger --control-weight or a smaller --score-lr)",
            100.0 * f.pruned_before as f64 / total as f64,
            100.0 * f.goal as f64 / total as f64,
            f.changed
        )
    })
}

/// The fix-up warning (if any) and the line closing the optimisation.
pub fn report_fixup(
    progress: &mut Progress,
    fixup: Option<&FixUp>,
    total: usize,
    iterations: usize,
    seconds: f64,
) {
    if let Some(warning) = fixup.and_then(|f| fixup_warning(f, total)) {
        progress.note(&warning);
    }
    if iterations > 0 {
        progress.finish_epoch(&format!(
            "{iterations} iterations in {seconds:.1}s{}",
            fixup.map_or(String::new(), |f| format!(
                "; learned thresholds prune {} weights, the fix-up moved {} to prune {}{}",
                f.pruned_before,
                f.changed,
                f.pruned_after,
                if f.pruned_after == f.goal {
                    String::new()
                } else {
                    format!(" (goal {})", f.goal)
                }
            ))
        ));
    }
}

/// Writes the export, `summary.json` and `sparsity.svg` of the finished `student`.
pub fn write(
    config: &PosttrainConfig,
    inputs: &Inputs,
    student: &dyn Module<f32>,
    o: Outcome,
) -> Result<PosttrainSummary> {
    let out = config.out_dir();
    let report = sparsity_report(student);
    let info = ModelInfo {
        method: config.method.to_string(),
        ..inputs.meta.info.clone()
    };
    let base = CheckpointMeta::new(&info, &inputs.meta.config, None);
    let export_config = PosttrainConfig {
        out: None,
        threads: None,
        ..config.clone()
    };
    let exports = save_exports(
        &out,
        student,
        &base.to_metadata_with(Some(("posttrain", &export_config))),
    )?;
    let layers: Vec<PosttrainLayer> = report
        .layers
        .iter()
        .zip(&o.initial.layers)
        .enumerate()
        .map(|(l, (r, init))| PosttrainLayer {
            report: r.clone(),
            // Pruned / params, as the allocation states it.
            initial_sparsity: (init.params - init.nonzero) as f64 / init.params.max(1) as f64,
            learned_sparsity: o.fixup.as_ref().map(|f| f.learned_sparsity[l]),
            learned_threshold: o.fixup.as_ref().map(|f| f.learned_threshold[l]),
        })
        .collect();
    let fcpts = config.methods.fcpts.clone();
    let settings = (config.method == crate::methods::PosttrainMethod::Fcpts)
        .then(|| crate::methods::fcpts::FcptsSettings::new(&fcpts))
        .transpose()?;
    let r0 = config.r0();
    let pruned = report.params_total - report.params_nonzero;
    let goal = pruned_goal(r0, report.params_total);
    let summary = PosttrainSummary {
        model: inputs.meta.info.model.to_string(),
        method: config.method.to_string(),
        variant: settings.map(|s| s.variant_name().to_string()),
        surrogate: settings.and_then(|s| s.surrogate_name()),
        density: settings.map(|s| s.density_name().to_string()),
        target_sparsity: r0,
        achieved_sparsity: report.overall_sparsity,
        params_total: report.params_total,
        params_nonzero: report.params_nonzero,
        pruned_goal: goal,
        fixup: o.fixup,
        calibration_images: inputs.calib.len(),
        iterations: o.iterations,
        dense_test_accuracy: o.dense_test_accuracy,
        test_accuracy: o.test_accuracy,
        flops_dense: report.flops_dense,
        flops_sparse: report.flops_sparse,
        layers,
        missed_target: target_miss(pruned, goal, report.params_total, r0),
        optimise_seconds: o.optimise_seconds,
        evaluate_seconds: o.evaluate_seconds,
        wall_seconds: o.started.elapsed().as_secs_f64(),
        config: serde_json::to_value(config).expect("config serialises"),
        exports: Some(exports),
        sparse_kernels: Some(o.sparse_kernels),
    };
    write_json(&out.join(SUMMARY_FILE), &summary)?;
    let figure_title = title(
        &out,
        &summary.model,
        &summary.method,
        summary.achieved_sparsity,
        summary.test_accuracy,
    );
    draw_posttrain_curves(&out, &figure_title)?;
    draw_sparsity(&out, &figure_title, &report.layers)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixup(pruned_before: usize, goal: usize) -> FixUp {
        FixUp {
            goal,
            pruned_before,
            pruned_after: goal,
            changed: pruned_before.abs_diff(goal),
            weights: 1000,
            learned_sparsity: Vec::new(),
            learned_threshold: Vec::new(),
        }
    }

    #[test]
    fn warns_only_when_the_thresholds_missed_by_more_than_one_percent() {
        assert_eq!(fixup_warning(&fixup(900, 900), 1000), None);
        assert_eq!(fixup_warning(&fixup(910, 900), 1000), None);
        assert_eq!(
            fixup_warning(&fixup(911, 900), 1000).as_deref(),
            Some(
                "warning: the learned thresholds prune 91.10% of the weights instead of 90.00%; the fix-up moved 11 weights (try a larger --control-weight or a smaller --score-lr)"
            )
        );
        assert!(fixup_warning(&fixup(889, 900), 1000).is_some());
    }

    #[test]
    fn a_miss_beyond_one_weight_per_thousand_is_reported() {
        assert_eq!(target_miss(900, 900, 1000, 0.9), None);
        assert_eq!(target_miss(901, 900, 1000, 0.9), None);
        assert_eq!(target_miss(4_504, 4_500, 5_000, 0.9), None);
        assert_eq!(
            target_miss(898, 900, 1000, 0.9).as_deref(),
            Some(
                "the result prunes 898 of 1000 weights (89.80% sparse), not the 900 of --target-sparsity 0.9 (allowed: within 1)"
            )
        );
        assert!(target_miss(4_506, 4_500, 5_000, 0.9).is_some());
    }
}
