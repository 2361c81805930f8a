//! The sweep report's SVG figures: test accuracy against achieved sparsity and against MACs (multiply-accumulates)
//! (one line per series, points at the seed means, error bars of ± one standard deviation), and
//! the per-layer budgets of every series at one target side by side (the STR paper's budget
//! figure). SVG text needs no fonts, so this draws on any machine.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::error::Result;
use crate::io::plot::plot_error;
use crate::sweep::aggregate::{Aggregate, Setting};
use crate::sweep::results::series_of;

/// A point of a line: (x, mean accuracy %, its standard deviation %).
type Point = (f64, f64, f64);
/// A labelled line of points.
type Line<'a> = (&'a str, Vec<Point>);
/// x of a setting.
type XOf<'a> = &'a dyn Fn(&Setting) -> f64;

/// Colour `i` of `n`, evenly spaced in hue.
fn colour(i: usize, n: usize) -> HSLColor {
    HSLColor(i as f64 / n.max(1) as f64, 0.75, 0.42)
}

/// One series' points: (x, mean accuracy %, std %), complete settings only, by x.
fn points(agg: &Aggregate, model: &str, series: &str, x: &dyn Fn(&Setting) -> f64) -> Vec<Point> {
    let mut p: Vec<_> = agg
        .settings
        .iter()
        .filter(|s| s.model == model && s.series == series && s.test_accuracy.n > 0)
        .map(|s| {
            (
                x(s),
                100.0 * s.test_accuracy.mean,
                100.0 * s.test_accuracy.std,
            )
        })
        .collect();
    p.sort_by(|a, b| a.0.total_cmp(&b.0));
    p
}

/// `accuracy_vs_sparsity-MODEL.svg` and `accuracy_vs_flops-MODEL.svg`.
pub fn draw_accuracy(dir: &Path, agg: &Aggregate, model: &str) -> Result<Vec<PathBuf>> {
    let sparsity = |s: &Setting| 100.0 * s.sparsity.mean;
    let flops = |s: &Setting| 100.0 * s.flops_fraction.mean;
    let figures: [(&str, &str, XOf<'_>); 2] = [
        ("accuracy_vs_sparsity", "achieved sparsity (%)", &sparsity),
        ("accuracy_vs_flops", "MACs (% of dense)", &flops),
    ];
    let mut written = Vec::new();
    for (stem, x_desc, x) in figures {
        let path = dir.join(format!("{stem}-{model}.svg"));
        let series = series_of(agg, model);
        let lines: Vec<Line<'_>> = series
            .iter()
            .map(|s| (*s, points(agg, model, s, x)))
            .collect();
        draw_lines(&path, &format!("{model}: test accuracy"), x_desc, &lines)?;
        written.push(path);
    }
    Ok(written)
}

fn draw_lines(path: &Path, title: &str, x_desc: &str, lines: &[Line<'_>]) -> Result<()> {
    let all = lines.iter().flat_map(|(_, p)| p.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y, e) in all {
        (x0, x1) = (x0.min(x), x1.max(x));
        (y0, y1) = (y0.min(y - e), y1.max(y + e));
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 100.0, 0.0, 100.0);
    }
    let (xp, yp) = (((x1 - x0) * 0.05).max(0.5), ((y1 - y0) * 0.05).max(0.1));
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_error(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((x0 - xp)..(x1 + xp), (y0 - yp)..(y1 + yp))
        .map_err(|e| plot_error(path, e))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc("test accuracy (%)")
        .draw()
        .map_err(|e| plot_error(path, e))?;
    for (i, (label, p)) in lines.iter().enumerate() {
        let c = colour(i, lines.len());
        let line = p.iter().map(|&(x, y, _)| (x, y));
        chart
            .draw_series(LineSeries::new(line, c.stroke_width(2)))
            .map_err(|e| plot_error(path, e))?
            .label(*label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        let bars = p
            .iter()
            .map(|&(x, y, e)| PathElement::new(vec![(x, y - e), (x, y + e)], c.stroke_width(1)));
        chart.draw_series(bars).map_err(|e| plot_error(path, e))?;
        let dots = p
            .iter()
            .map(|&(x, y, _)| Circle::new((x, y), 3, c.filled()));
        chart.draw_series(dots).map_err(|e| plot_error(path, e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| plot_error(path, e))?;
    root.present().map_err(|e| plot_error(path, e))
}

/// `budget-MODEL-TARGET.svg`: the mean per-layer sparsity of every series run at `target`,
/// one bar per series in each layer's group (nothing when fewer than one such series).
pub fn draw_budgets(dir: &Path, agg: &Aggregate, model: &str, target: f64) -> Result<Vec<PathBuf>> {
    let rows: Vec<&Setting> = agg
        .settings
        .iter()
        .filter(|s| s.model == model && s.target == Some(target) && !s.layers.is_empty())
        .collect();
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    let layers: Vec<&str> = first.layers.iter().map(|(n, _)| n.as_str()).collect();
    let path = dir.join(format!("budget-{model}-{target}.svg"));
    draw_grouped_bars(&path, model, target, &layers, &rows)?;
    Ok(vec![path])
}

fn draw_grouped_bars(
    path: &Path,
    model: &str,
    target: f64,
    layers: &[&str],
    rows: &[&Setting],
) -> Result<()> {
    let (n_layers, n_series) = (layers.len(), rows.len());
    let width = (200 + 40 * n_layers * n_series).clamp(700, 2400) as u32;
    let root = SVGBackend::new(path, (width, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_error(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{model}: per-layer sparsity at target {target}"),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(20)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..n_layers as f64, -8f64..100f64)
        .map_err(|e| plot_error(path, e))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .disable_x_axis()
        .y_desc("sparsity (%)")
        .draw()
        .map_err(|e| plot_error(path, e))?;
    let slot = 0.8 / n_series as f64;
    for (j, s) in rows.iter().enumerate() {
        let c = colour(j, n_series);
        let bars = s.layers.iter().enumerate().map(|(i, (_, sp))| {
            let x = i as f64 + 0.1 + j as f64 * slot;
            Rectangle::new([(x, 0.0), (x + slot * 0.9, 100.0 * sp)], c.filled())
        });
        chart
            .draw_series(bars)
            .map_err(|e| plot_error(path, e))?
            .label(s.series.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], c.filled()));
    }
    let names = layers
        .iter()
        .enumerate()
        .map(|(i, n)| Text::new(n.to_string(), (i as f64 + 0.4, -4.0), ("sans-serif", 12)));
    chart.draw_series(names).map_err(|e| plot_error(path, e))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| plot_error(path, e))?;
    root.present().map_err(|e| plot_error(path, e))
}
