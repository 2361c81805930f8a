//! Side-by-side comparison of finished runs (training or post-training) as a Markdown table:
//! what `sparsegrad report RUN RUN...` prints, and how `docs/results.md` is built.

use crate::io::runlog::Summary;
use crate::sparsity::report::LayerReport;

/// One run's figures, whatever kind of run produced them.
#[derive(Clone, Debug, PartialEq)]
pub struct ComparisonRow {
    pub run: String,
    pub model: String,
    /// Method and its distinguishing settings (e.g. `fcpts (paper)` or `str, target 0.95`).
    pub method: String,
    pub test_accuracy: f64,
    /// Best test accuracy over training epochs (training runs only).
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
            best_test_accuracy: Some(s.best_test_accuracy),
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

/// The Markdown table of `rows`.
pub fn markdown_table(rows: &[ComparisonRow]) -> String {
    let mut out = String::from(
        "| run | model | method | test acc | best | sparsity | nonzero / params | FLOPs (% of dense) | per-layer sparsity (%) | wall s |\n\
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
    out
}
