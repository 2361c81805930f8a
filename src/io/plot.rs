//! SVG figures of a run: training curves and the per-layer sparsity budget (the STR paper's
//! budget figure). SVG text needs no fonts, so this works on any machine.

use std::path::Path;

use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::sparsity::report::LayerReport;

fn plot_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::invalid(format!("{}: cannot draw the figure ({e})", path.display()))
}

/// One curve: a label and (epoch, value) points.
pub struct Curve<'a> {
    pub label: &'a str,
    pub points: Vec<(f64, f64)>,
}

/// Two panels side by side: loss curves (left) and accuracy curves (right), per epoch.
pub fn draw_curves(path: &Path, losses: &[Curve<'_>], accuracies: &[Curve<'_>]) -> Result<()> {
    let root = SVGBackend::new(path, (1000, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_error(path, e))?;
    let panels = root.split_evenly((1, 2));
    for (area, (title, curves)) in panels
        .iter()
        .zip([("loss", losses), ("accuracy", accuracies)])
    {
        let points = curves.iter().flat_map(|c| c.points.iter());
        let (mut x_max, mut y_min, mut y_max) = (1.0f64, f64::INFINITY, f64::NEG_INFINITY);
        for &(x, y) in points.filter(|p| p.1.is_finite()) {
            x_max = x_max.max(x);
            y_min = y_min.min(y);
            y_max = y_max.max(y);
        }
        if !y_min.is_finite() {
            (y_min, y_max) = (0.0, 1.0);
        }
        let pad = ((y_max - y_min) * 0.05).max(1e-3);
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..x_max, (y_min - pad)..(y_max + pad))
            .map_err(|e| plot_error(path, e))?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .draw()
            .map_err(|e| plot_error(path, e))?;
        for (i, curve) in curves.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    curve.points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(|e| plot_error(path, e))?
                .label(curve.label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| plot_error(path, e))?;
    }
    root.present().map_err(|e| plot_error(path, e))
}

/// Bars of per-layer sparsity (%) in layer order, each labelled with its parameter count.
pub fn draw_sparsity_bars(path: &Path, title: &str, layers: &[LayerReport]) -> Result<()> {
    let width = (160 + 80 * layers.len()).max(480) as u32;
    let root = SVGBackend::new(path, (width, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_error(path, e))?;
    let n = layers.len();
    let names: Vec<String> = layers
        .iter()
        .map(|l| l.name.trim_end_matches(".weight").to_string())
        .collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((0..n).into_segmented(), 0f64..100f64)
        .map_err(|e| plot_error(path, e))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc("sparsity (%)")
        .x_labels(n.max(1))
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) if *i < names.len() => names[*i].clone(),
            _ => String::new(),
        })
        .draw()
        .map_err(|e| plot_error(path, e))?;
    chart
        .draw_series(layers.iter().enumerate().map(|(i, l)| {
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), 100.0 * l.sparsity),
                ],
                BLUE.mix(0.6).filled(),
            );
            bar.set_margin(0, 0, 8, 8);
            bar
        }))
        .map_err(|e| plot_error(path, e))?;
    chart
        .draw_series(layers.iter().enumerate().map(|(i, l)| {
            let label = format!("{:.1}% of {}", 100.0 * l.sparsity, l.params);
            Text::new(
                label,
                (SegmentValue::Exact(i), (100.0 * l.sparsity).min(93.0) + 3.0),
                ("sans-serif", 12),
            )
        }))
        .map_err(|e| plot_error(path, e))?;
    root.present().map_err(|e| plot_error(path, e))
}
