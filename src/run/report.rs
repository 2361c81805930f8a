//! What `sparsegrad report` prints: one run's per-layer table ([`report_run`]), or several runs
//! side by side as one Markdown table ([`compare_runs`]), training and post-training runs alike.

use std::path::Path;

use crate::error::Result;
use crate::run::best::{BEST_RULE, BestEpoch};
use crate::run::dir::{is_posttrain_run, read_summary};
use crate::run::summary::{PosttrainSummary, Summary};
use crate::sparsity::report::{LayerReport, SparsityReport, format_table};

/// One run's figures, whatever kind of run produced them.
#[derive(Clone, Debug, PartialEq)]
pub struct ComparisonRow {
    pub run: String,
    pub model: String,
    /// Method and its distinguishing settings (e.g. `fcpts (paper)` or `str, target 0.95`).
    pub method: String,
    pub test_accuracy: f64,
    /// Test accuracy at the best epoch (`run::best`: selected on validation accuracy among the
    /// epochs at the final sparsity; training runs only).
    pub best_test_accuracy: Option<f64>,
    pub sparsity: f64,
    pub params_nonzero: usize,
    pub params_total: usize,
    pub flops_sparse: usize,
    pub flops_dense: usize,
    /// (layer, sparsity) in forward order.
    pub layers: Vec<(String, f64)>,
    pub wall_seconds: f64,
}

/// (short layer name, sparsity) of a per-layer report.
pub fn layer_sparsities(layers: &[LayerReport]) -> Vec<(String, f64)> {
    layers
        .iter()
        .map(|l| (l.name.trim_end_matches(".weight").to_string(), l.sparsity))
        .collect()
}

impl ComparisonRow {
    /// The row of a post-training run's summary.
    pub fn from_posttrain(run: &str, s: &PosttrainSummary) -> Self {
        let variant = [s.variant.as_deref(), s.density.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>();
        let method = if variant.is_empty() {
            format!("{} r0 {}", s.method, s.target_sparsity)
        } else {
            format!(
                "{} ({}) r0 {}",
                s.method,
                variant.join(", "),
                s.target_sparsity
            )
        };
        let layers: Vec<LayerReport> = s.layers.iter().map(|l| l.report.clone()).collect();
        ComparisonRow {
            run: run.to_string(),
            model: s.model.clone(),
            method,
            test_accuracy: s.test_accuracy,
            best_test_accuracy: None,
            sparsity: s.achieved_sparsity,
            params_nonzero: s.params_nonzero,
            params_total: s.params_total,
            flops_sparse: s.flops_sparse,
            flops_dense: s.flops_dense,
            layers: layer_sparsities(&layers),
            wall_seconds: s.wall_seconds,
        }
    }

    /// The row of a training run's summary.
    pub fn from_summary(run: &str, s: &Summary) -> Self {
        let target = s
            .config
            .pointer("/sparsity/target_sparsity")
            .and_then(|v| v.as_f64());
        ComparisonRow {
            run: run.to_string(),
            model: s.model.clone(),
            method: match target {
                Some(t) if s.method != "dense" => format!("{}, target {t}", s.method),
                _ => s.method.clone(),
            },
            test_accuracy: s.test_accuracy,
            best_test_accuracy: s.best.as_ref().map(|b| b.test_accuracy),
            sparsity: s.overall_sparsity,
            params_nonzero: s.params_nonzero,
            params_total: s.params_total,
            flops_sparse: s.flops_sparse,
            flops_dense: s.flops_dense,
            layers: layer_sparsities(&s.layers),
            wall_seconds: s.wall_seconds,
        }
    }
}

/// The Markdown table of `rows`, then a line saying how "best" was selected.
pub fn markdown_table(rows: &[ComparisonRow]) -> String {
    let mut out = String::from(
        "| run | model | method | test acc | best | sparsity | nonzero / weights | MACs (% of dense) | per-layer sparsity (%) | wall s |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let flops = if r.flops_dense == 0 {
            100.0
        } else {
            100.0 * r.flops_sparse as f64 / r.flops_dense as f64
        };
        let layers: Vec<String> = r
            .layers
            .iter()
            .map(|(n, s)| format!("{n} {:.1}", 100.0 * s))
            .collect();
        out += &format!(
            "| {} | {} | {} | {:.2}% | {} | {:.2}% | {} / {} | {:.1}% | {} | {:.1} |\n",
            r.run,
            r.model,
            r.method,
            100.0 * r.test_accuracy,
            r.best_test_accuracy
                .map(|b| format!("{:.2}%", 100.0 * b))
                .unwrap_or_else(|| "-".into()),
            100.0 * r.sparsity,
            r.params_nonzero,
            r.params_total,
            flops,
            layers.join(", "),
            r.wall_seconds
        );
    }
    out + "\n" + BEST_RULE + ".\n"
}

/// The comparison table of the finished runs in `runs`.
pub fn compare_runs(runs: &[&Path]) -> Result<String> {
    let rows = runs
        .iter()
        .map(|run| {
            let name = run.display().to_string();
            if is_posttrain_run(run) {
                Ok(ComparisonRow::from_posttrain(&name, &read_summary(run)?))
            } else {
                Ok(ComparisonRow::from_summary(&name, &read_summary(run)?))
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(markdown_table(&rows))
}

/// "best X% at epoch N (validation Y%)" as the headlines say it, or why there is none.
pub fn best_phrase(best: Option<&BestEpoch>) -> String {
    match best {
        Some(b) => format!(
            "best {:.2}% at epoch {} (validation {:.2}%)",
            100.0 * b.test_accuracy,
            b.epoch,
            100.0 * b.val_accuracy
        ),
        None => "no best: no validation split, or no epoch at the final sparsity".into(),
    }
}

/// One finished run: a headline, then its per-layer table and how "best" was selected.
pub fn report_run(run: &Path) -> Result<String> {
    if is_posttrain_run(run) {
        return Ok(report_posttrain(run, &read_summary(run)?));
    }
    let s: Summary = read_summary(run)?;
    let headline = format!(
        "{}: {} / {}, {} epochs, test accuracy {:.2}% ({}), {:.1}s\n",
        run.display(),
        s.model,
        s.method,
        s.epochs,
        100.0 * s.test_accuracy,
        best_phrase(s.best.as_ref()),
        s.wall_seconds
    );
    let report = SparsityReport {
        layers: s.layers.clone(),
        params_total: s.params_total,
        params_nonzero: s.params_nonzero,
        overall_sparsity: s.overall_sparsity,
        flops_dense: s.flops_dense,
        flops_sparse: s.flops_sparse,
        low_rank: s.low_rank.clone(),
    };
    Ok(headline + &format_table(&report) + "\n" + BEST_RULE + ".\n")
}

fn report_posttrain(run: &Path, s: &PosttrainSummary) -> String {
    let variant = [s.variant.clone(), s.surrogate.clone(), s.density.clone()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ");
    let variant = if variant.is_empty() {
        String::new()
    } else {
        format!(" ({variant})")
    };
    let fixup = s
        .fixup
        .as_ref()
        .map(|f| format!(", fix-up {} weights", f.changed))
        .unwrap_or_default();
    let missed = s
        .missed_target
        .as_ref()
        .map(|m| format!(", MISSED ITS TARGET ({m})"))
        .unwrap_or_default();
    let headline = format!(
        "{}: {} / {}{variant}, target {:.2}%, {} iterations on {} images: test accuracy {:.2}% (input {:.2}%){fixup}{missed}, optimise {:.1}s\n",
        run.display(),
        s.model,
        s.method,
        100.0 * s.target_sparsity,
        s.iterations,
        s.calibration_images,
        100.0 * s.test_accuracy,
        100.0 * s.dense_test_accuracy,
        s.optimise_seconds
    );
    let report = SparsityReport {
        layers: s.layers.iter().map(|l| l.report.clone()).collect(),
        params_total: s.params_total,
        params_nonzero: s.params_nonzero,
        overall_sparsity: s.achieved_sparsity,
        flops_dense: s.flops_dense,
        flops_sparse: s.flops_sparse,
        low_rank: Vec::new(),
    };
    headline + &format_table(&report)
}
