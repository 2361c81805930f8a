//! SVG figures of a run: panels of curves against a shared x axis (training: loss, accuracy,
//! sparsity and learning rate per epoch; post-training: reconstruction loss and sparsity per
//! iteration) and the per-layer sparsity budget (the STR paper's budget figure). SVG text needs
//! no fonts, so this works on any machine; tests read the SVG's text (titles, series, bars).

use std::path::Path;

use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::sparsity::report::LayerReport;

/// The error of a figure that could not be drawn, naming its file.
pub(crate) fn plot_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::invalid(format!("{}: cannot draw the figure ({e})", path.display()))
}

/// Line colours in series order: blue, orange, green, red, purple (the Tableau palette's first
/// five; all readable on white, unlike plotters' default yellow).
const SERIES_COLOURS: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
];

/// One curve: a label and (x, y) points.
pub struct Curve<'a> {
    pub label: &'a str,
    pub points: Vec<(f64, f64)>,
}

/// One panel: a caption, its y-axis description and its curves.
pub struct Panel<'a> {
    pub caption: &'a str,
    pub y_desc: &'a str,
    pub curves: Vec<Curve<'a>>,
}

/// `panels` side by side under `title`, all against the same x axis described by `x_desc`.
pub fn draw_panels(path: &Path, title: &str, x_desc: &str, panels: &[Panel<'_>]) -> Result<()> {
    let width = (380 * panels.len()).max(500) as u32;
    let root = SVGBackend::new(path, (width, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_error(path, e))?;
    let root = root
        .titled(title, ("sans-serif", 20))
        .map_err(|e| plot_error(path, e))?;
    let areas = root.split_evenly((1, panels.len().max(1)));
    for (area, panel) in areas.iter().zip(panels) {
        draw_panel(path, area, x_desc, panel)?;
    }
    root.present().map_err(|e| plot_error(path, e))
}

fn draw_panel(
    path: &Path,
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    x_desc: &str,
    panel: &Panel<'_>,
) -> Result<()> {
    let points = panel.curves.iter().flat_map(|c| c.points.iter());
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
        .caption(panel.caption, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, (y_min - pad)..(y_max + pad))
        .map_err(|e| plot_error(path, e))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(panel.y_desc)
        .draw()
        .map_err(|e| plot_error(path, e))?;
    for (i, curve) in panel.curves.iter().enumerate() {
        let colour = SERIES_COLOURS[i % SERIES_COLOURS.len()];
        chart
            .draw_series(LineSeries::new(
                curve.points.iter().copied(),
                colour.stroke_width(2),
            ))
            .map_err(|e| plot_error(path, e))?
            .label(curve.label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| plot_error(path, e))
}

/// One bar per layer, in layer order: its sparsity (%), labelled with the kept weights out of
/// the layer's weights and the layer's share of the model's dense multiply-accumulates.
pub fn draw_sparsity_bars(path: &Path, title: &str, layers: &[LayerReport]) -> Result<()> {
    let n = layers.len();
    let width = (160 + 110 * n).max(520) as u32;
    let root = SVGBackend::new(path, (width, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_error(path, e))?;
    let total_macs: usize = layers.iter().map(|l| l.flops_dense).sum();
    // Layer i occupies [i, i + 1) on the x axis: exactly n slots, no empty one after the last.
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(20)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..n.max(1) as f64, -12f64..108f64)
        .map_err(|e| plot_error(path, e))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .disable_x_axis()
        .y_desc("sparsity (%)")
        .y_labels(6)
        .y_label_formatter(&|y| {
            if (0.0..=100.0).contains(y) {
                format!("{y:.0}")
            } else {
                String::new()
            }
        })
        .draw()
        .map_err(|e| plot_error(path, e))?;
    chart
        .draw_series(layers.iter().enumerate().map(|(i, l)| {
            let x = i as f64;
            Rectangle::new(
                [(x + 0.12, 0.0), (x + 0.88, 100.0 * l.sparsity)],
                SERIES_COLOURS[0].mix(0.7).filled(),
            )
        }))
        .map_err(|e| plot_error(path, e))?;
    let text = |label: String, x: f64, y: f64| Text::new(label, (x, y), ("sans-serif", 11));
    for (i, l) in layers.iter().enumerate() {
        let x = i as f64 + 0.1;
        let top = (100.0 * l.sparsity).min(88.0);
        let macs_share = 100.0 * l.flops_dense as f64 / total_macs.max(1) as f64;
        let labels = [
            (format!("{:.1}% sparse", 100.0 * l.sparsity), top + 12.0),
            (format!("kept {} / {}", l.nonzero, l.params), top + 7.0),
            (format!("{macs_share:.1}% of MACs"), top + 2.5),
            (l.name.trim_end_matches(".weight").to_string(), -4.0),
        ];
        chart
            .draw_series(labels.into_iter().map(|(s, y)| text(s, x, y)))
            .map_err(|e| plot_error(path, e))?;
    }
    root.present().map_err(|e| plot_error(path, e))
}
