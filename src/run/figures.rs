//! The run directory's figures, drawn from its logs and summary: `curves.svg` (loss and
//! accuracy per epoch) and `sparsity.svg` (per-layer sparsity, the STR paper's budget figure).

use std::path::Path;

use crate::error::Result;
use crate::io::plot::{Curve, draw_curves, draw_sparsity_bars};
use crate::run::dir::{CURVES_FILE, METRICS_FILE, SPARSITY_FILE};
use crate::run::log::JsonLines;
use crate::run::summary::EpochMetrics;
use crate::sparsity::report::LayerReport;

/// The title of a run's figures.
pub fn title(model: &str, method: &str, sparsity: f64, test_accuracy: f64) -> String {
    format!(
        "{model} / {method}: {:.2}% sparse, test {:.2}%",
        100.0 * sparsity,
        100.0 * test_accuracy
    )
}

/// `sparsity.svg` of a finished run.
pub fn draw_sparsity(out: &Path, title: &str, layers: &[LayerReport]) -> Result<()> {
    draw_sparsity_bars(&out.join(SPARSITY_FILE), title, layers)
}

/// `curves.svg` of a training run, from its `metrics.jsonl`.
pub fn draw_training_curves(out: &Path) -> Result<()> {
    let metrics = JsonLines::<EpochMetrics>::read(&out.join(METRICS_FILE))?;
    let points = |f: &dyn Fn(&EpochMetrics) -> Option<f64>| -> Vec<(f64, f64)> {
        metrics
            .iter()
            .filter_map(|m| f(m).map(|v| (m.epoch as f64, v)))
            .collect()
    };
    let losses = [Curve {
        label: "train loss",
        points: points(&|m| Some(m.train_loss)),
    }];
    let mut accs = vec![
        Curve {
            label: "train",
            points: points(&|m| Some(m.train_acc)),
        },
        Curve {
            label: "test",
            points: points(&|m| Some(m.test_acc)),
        },
    ];
    if metrics.iter().any(|m| m.val_acc.is_some()) {
        accs.insert(
            1,
            Curve {
                label: "val",
                points: points(&|m| m.val_acc),
            },
        );
    }
    draw_curves(&out.join(CURVES_FILE), &losses, &accs)
}
