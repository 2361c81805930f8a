//! The run directory's figures, checked by their content (title, panels, series, bars and their
//! labels), not by pixels.

use std::path::Path;

use crate::methods_support::temp_dir;

use sparsegrad::run::dir::{CURVES_FILE, METRICS_FILE, POSTTRAIN_LOG_FILE, SPARSITY_FILE};
use sparsegrad::run::figures::{draw_posttrain_curves, draw_sparsity, draw_training_curves, title};
use sparsegrad::run::log::JsonLines;
use sparsegrad::run::summary::{EpochMetrics, IterationLog};
use sparsegrad::sparsity::report::LayerReport;

fn svg(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The texts of an SVG (`<text ...>TEXT</text>`), in order.
fn texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let start = t.find('>')? + 1;
            let end = t.find("</text>")?;
            Some(t[start..end].trim().to_string())
        })
        .collect()
}

fn epoch(epoch: usize, val: Option<f64>, sparsity: f64) -> EpochMetrics {
    EpochMetrics {
        epoch,
        lr: 0.1 / epoch as f64,
        train_loss: 1.0 / epoch as f64,
        train_acc: 0.9,
        val_acc: val,
        test_acc: 0.91,
        sparsity,
        seconds: 1.0,
        layers: Vec::new(),
    }
}

#[test]
fn training_curves_have_a_title_and_loss_accuracy_sparsity_and_learning_rate_panels() {
    let scratch = temp_dir("figures-train");
    let dir = scratch.join("gmp95");
    std::fs::create_dir_all(&dir).unwrap();
    let mut log = JsonLines::open(&dir.join(METRICS_FILE), |_: &EpochMetrics| false).unwrap();
    for (e, s) in [(1, 0.0), (2, 0.6), (3, 0.95)] {
        log.append(&epoch(e, Some(0.9), s)).unwrap();
    }
    let title = title(&dir, "lenet5", "gmp", 0.95, 0.9912);
    assert_eq!(title, "gmp95: lenet5 / gmp, 95.00% sparse, test 99.12%");
    draw_training_curves(&dir, &title).unwrap();
    let t = texts(&svg(&dir.join(CURVES_FILE)));
    for expected in [
        title.as_str(),
        "loss",
        "accuracy",
        "global sparsity",
        "learning rate",
        "train",
        "validation",
        "test",
        "sparsity",
        "lr",
        "epoch",
    ] {
        assert!(
            t.iter().any(|x| x == expected),
            "no text {expected:?} in {t:?}"
        );
    }
}

#[test]
fn training_curves_leave_out_validation_when_there_is_none() {
    let dir = temp_dir("figures-noval");
    let mut log = JsonLines::open(&dir.join(METRICS_FILE), |_: &EpochMetrics| false).unwrap();
    log.append(&epoch(1, None, 0.5)).unwrap();
    draw_training_curves(&dir, "t").unwrap();
    let t = texts(&svg(&dir.join(CURVES_FILE)));
    assert!(!t.iter().any(|x| x == "validation"), "{t:?}");
    assert!(t.iter().any(|x| x == "test"));
}

#[test]
fn posttrain_curves_show_the_reconstruction_loss_and_sparsity_per_iteration() {
    let dir = temp_dir("figures-posttrain");
    let mut log = JsonLines::open(&dir.join(POSTTRAIN_LOG_FILE), |_: &IterationLog| false).unwrap();
    for iter in [100, 200] {
        log.append(&IterationLog {
            iter,
            lr: 0.01,
            l_rec: 0.5,
            l_c: Some(0.1),
            sparsity: 0.9,
            layers: Vec::new(),
        })
        .unwrap();
    }
    draw_posttrain_curves(&dir, "fcpts90").unwrap();
    let t = texts(&svg(&dir.join(CURVES_FILE)));
    for expected in [
        "fcpts90",
        "reconstruction loss",
        "L_rec",
        "regulariser",
        "global sparsity",
        "iteration",
    ] {
        assert!(
            t.iter().any(|x| x == expected),
            "no text {expected:?} in {t:?}"
        );
    }
    // Without fine-tuning there is nothing to draw, and no file.
    let empty = temp_dir("figures-posttrain-empty");
    draw_posttrain_curves(&empty, "none").unwrap();
    assert!(!empty.join(CURVES_FILE).exists());
}

fn layer(name: &str, params: usize, nonzero: usize, macs: usize) -> LayerReport {
    LayerReport {
        name: name.into(),
        shape: vec![params],
        params,
        nonzero,
        sparsity: 1.0 - nonzero as f64 / params as f64,
        flops_dense: macs,
        flops_sparse: macs * nonzero / params,
        threshold: None,
    }
}

#[test]
fn the_budget_figure_has_one_bar_per_layer_with_kept_counts_and_mac_shares() {
    let dir = temp_dir("figures-bars");
    let layers = [
        layer("conv1.weight", 500, 330, 288_000),
        layer("conv2.weight", 25_000, 3_000, 1_600_000),
        layer("fc1.weight", 400_000, 32_000, 400_000),
        layer("fc2.weight", 5_000, 950, 5_000),
    ];
    draw_sparsity(&dir, "lenet5", &layers).unwrap();
    let text = svg(&dir.join(SPARSITY_FILE));
    let t = texts(&text);
    for expected in [
        "lenet5",
        "conv1",
        "fc2",
        "34.0% sparse",
        "kept 3000 / 25000",
        "69.8% of MACs",
        "81.0% sparse",
    ] {
        assert!(
            t.iter().any(|x| x == expected),
            "no text {expected:?} in {t:?}"
        );
    }
    // One bar per layer (the bar colour, nowhere else in the figure).
    assert_eq!(
        text.matches("fill=\"#1F77B4\"").count(),
        layers.len(),
        "{text}"
    );
}
