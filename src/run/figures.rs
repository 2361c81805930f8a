//! The run directory's figures, drawn from its logs and summary: `curves.svg` (training: loss,
//! accuracy, global sparsity and learning rate per epoch; post-training: reconstruction loss,
//! sparsity and learning rate per iteration) and `sparsity.svg` (per-layer sparsity with kept
//! weights and share of multiply-accumulates: the STR paper's budget figure).

use std::path::Path;

use crate::error::Result;
use crate::io::plot::{Curve, Panel, draw_panels, draw_sparsity_bars};
use crate::run::dir::{CURVES_FILE, METRICS_FILE, POSTTRAIN_LOG_FILE, SPARSITY_FILE};
use crate::run::log::JsonLines;
use crate::run::summary::{EpochMetrics, IterationLog};
use crate::sparsity::report::LayerReport;

/// The title of a run's figures: the run directory's name, model, method and outcome.
pub fn title(out: &Path, model: &str, method: &str, sparsity: f64, test_accuracy: f64) -> String {
    let run = out
        .file_name()
        .map_or_else(|| out.display().to_string(), |n| n.to_string_lossy().into());
    format!(
        "{run}: {model} / {method}, {:.2}% sparse, test {:.2}%",
        100.0 * sparsity,
        100.0 * test_accuracy
    )
}

/// `sparsity.svg` of a finished run.
pub fn draw_sparsity(out: &Path, title: &str, layers: &[LayerReport]) -> Result<()> {
    draw_sparsity_bars(&out.join(SPARSITY_FILE), title, layers)
}

/// (x, y) points of the entries of `rows` for which `y` gives a value.
fn points<T>(rows: &[T], x: impl Fn(&T) -> f64, y: impl Fn(&T) -> Option<f64>) -> Vec<(f64, f64)> {
    rows.iter()
        .filter_map(|r| y(r).map(|v| (x(r), v)))
        .collect()
}

/// `curves.svg` of a training run, from its `metrics.jsonl`.
pub fn draw_training_curves(out: &Path, title: &str) -> Result<()> {
    let metrics = JsonLines::<EpochMetrics>::read(&out.join(METRICS_FILE))?;
    let epoch = |m: &EpochMetrics| m.epoch as f64;
    let percent = |f: fn(&EpochMetrics) -> f64| move |m: &EpochMetrics| Some(100.0 * f(m));
    let mut accuracy = vec![Curve {
        label: "train",
        points: points(&metrics, epoch, percent(|m| m.train_acc)),
    }];
    if metrics.iter().any(|m| m.val_acc.is_some()) {
        accuracy.push(Curve {
            label: "validation",
            points: points(&metrics, epoch, |m| m.val_acc.map(|v| 100.0 * v)),
        });
    }
    accuracy.push(Curve {
        label: "test",
        points: points(&metrics, epoch, percent(|m| m.test_acc)),
    });
    let panels = [
        Panel {
            caption: "loss",
            y_desc: "train loss",
            curves: vec![Curve {
                label: "train loss",
                points: points(&metrics, epoch, |m| Some(m.train_loss)),
            }],
        },
        Panel {
            caption: "accuracy",
            y_desc: "accuracy (%)",
            curves: accuracy,
        },
        Panel {
            caption: "global sparsity",
            y_desc: "sparsity (%)",
            curves: vec![Curve {
                label: "sparsity",
                points: points(&metrics, epoch, percent(|m| m.sparsity)),
            }],
        },
        Panel {
            caption: "learning rate",
            y_desc: "learning rate",
            curves: vec![Curve {
                label: "lr",
                points: points(&metrics, epoch, |m| Some(m.lr)),
            }],
        },
    ];
    draw_panels(&out.join(CURVES_FILE), title, "epoch", &panels)
}

/// `curves.svg` of a post-training run, from its `posttrain.jsonl` (nothing to draw, and no
/// file, without fine-tuning iterations).
pub fn draw_posttrain_curves(out: &Path, title: &str) -> Result<()> {
    let log = JsonLines::<IterationLog>::read(&out.join(POSTTRAIN_LOG_FILE))?;
    if log.is_empty() {
        return Ok(());
    }
    let iter = |l: &IterationLog| l.iter as f64;
    let mut losses = vec![Curve {
        label: "L_rec",
        points: points(&log, iter, |l| Some(l.l_rec)),
    }];
    if log.iter().any(|l| l.l_c.is_some()) {
        losses.push(Curve {
            label: "regulariser",
            points: points(&log, iter, |l| l.l_c),
        });
    }
    let panels = [
        Panel {
            caption: "reconstruction loss",
            y_desc: "loss",
            curves: losses,
        },
        Panel {
            caption: "global sparsity",
            y_desc: "sparsity (%)",
            curves: vec![Curve {
                label: "sparsity",
                points: points(&log, iter, |l| Some(100.0 * l.sparsity)),
            }],
        },
        Panel {
            caption: "learning rate",
            y_desc: "learning rate",
            curves: vec![Curve {
                label: "lr",
                points: points(&log, iter, |l| Some(l.lr)),
            }],
        },
    ];
    draw_panels(&out.join(CURVES_FILE), title, "iteration", &panels)
}
