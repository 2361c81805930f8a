//! Side-by-side comparison of finished runs, as a Markdown table (what `sparsegrad report` prints
//! for several runs, and how `docs/results.md` is built).

use crate::io::runlog::Summary;

/// A compact per-layer sparsity list: `fc1 97.1, fc2 90.2, fc3 40.0` (percent).
pub fn layer_sparsities(summary: &Summary) -> String {
    summary
        .layers
        .iter()
        .map(|l| {
            format!(
                "{} {:.1}",
                l.name.trim_end_matches(".weight"),
                100.0 * l.sparsity
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One row per run: name, model, method, final and best test accuracy, global sparsity, nonzero
/// parameters, sparse FLOPs as a share of dense, per-layer sparsity, wall time.
pub fn markdown_table(runs: &[(String, Summary)]) -> String {
    let mut out = String::from(
        "| run | model | method | test acc (final) | test acc (best) | sparsity | nonzero / params | FLOPs (sparse / dense) | per-layer sparsity (%) | wall s |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (name, s) in runs {
        let flops_share = if s.flops_dense == 0 {
            1.0
        } else {
            s.flops_sparse as f64 / s.flops_dense as f64
        };
        out += &format!(
            "| {name} | {} | {} | {:.2}% | {:.2}% | {:.2}% | {} / {} | {:.1}% of {} | {} | {:.1} |\n",
            s.model,
            s.method,
            100.0 * s.test_accuracy,
            100.0 * s.best_test_accuracy,
            100.0 * s.overall_sparsity,
            s.params_nonzero,
            s.params_total,
            100.0 * flops_share,
            s.flops_dense,
            layer_sparsities(s),
            s.wall_seconds
        );
    }
    out
}
