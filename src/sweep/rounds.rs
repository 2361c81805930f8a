//! Round by round: for series whose runs report per-round rows (`lottery`: its summary's
//! `method_details.rounds`), the test accuracy against density over the rounds, mean and standard
//! deviation over seeds. This is the lottery-ticket paper's figure (tickets against the reinit and
//! random-prune controls), written as `rounds-MODEL.svg` and as a table in `results.md`.
//!
//! The accuracy of a round is its test accuracy at the evaluation of best validation accuracy
//! (the paper's early-stopping measure; the test set selects nothing), and its final one.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::io::plot::{Curve, Panel, draw_panels};
use crate::run::dir::SUMMARY_FILE;
use crate::run::summary::Summary;
use crate::sweep::aggregate::Stat;
use crate::sweep::scripts::read_manifest;

/// One round of one series, over its seeds.
#[derive(Clone, Debug, PartialEq)]
pub struct RoundStat {
    pub round: usize,
    pub density: Stat,
    pub test_at_best_val: Stat,
    pub final_test: Stat,
}

/// One series' rounds.
#[derive(Clone, Debug, PartialEq)]
pub struct RoundSeries {
    pub model: String,
    pub series: String,
    pub rounds: Vec<RoundStat>,
}

/// One run's row of a round: (round, density, test at best val, final test).
type Row = (usize, f64, f64, f64);

/// The per-round rows of one run.
fn rows_of(run: &Path) -> Option<Vec<Row>> {
    let text = std::fs::read_to_string(run.join(SUMMARY_FILE)).ok()?;
    let summary: Summary = serde_json::from_str(&text).ok()?;
    let rows = summary.method_details.get("rounds")?.as_array()?;
    rows.iter()
        .map(|r| {
            let final_test = r.get("final_test_accuracy")?.as_f64()?;
            Some((
                r.get("round")?.as_u64()? as usize,
                r.get("density")?.as_f64()?,
                r.get("test_accuracy_at_best_val")
                    .and_then(|v| v.as_f64())
                    .unwrap_or(final_test),
                final_test,
            ))
        })
        .collect()
}

/// Every series of the sweep in `dir` with per-round rows (complete runs only).
pub fn round_series(dir: &Path) -> Result<Vec<RoundSeries>> {
    let manifest = read_manifest(dir)?;
    let mut out: Vec<(RoundSeries, Vec<Vec<Row>>)> = Vec::new();
    for job in &manifest.jobs {
        let Some(rows) = rows_of(&job.out) else {
            continue;
        };
        let key = (job.model.as_str(), job.series.as_str());
        let slot = match out
            .iter()
            .position(|(s, _)| (s.model.as_str(), s.series.as_str()) == key)
        {
            Some(i) => i,
            None => {
                out.push((
                    RoundSeries {
                        model: job.model.clone(),
                        series: job.series.clone(),
                        rounds: Vec::new(),
                    },
                    Vec::new(),
                ));
                out.len() - 1
            }
        };
        out[slot].1.push(rows);
    }
    Ok(out
        .into_iter()
        .map(|(mut series, runs)| {
            let rounds = runs.iter().map(Vec::len).min().unwrap_or(0);
            let stat = |i: usize, f: &dyn Fn(&Row) -> f64| {
                Stat::of(&runs.iter().map(|r| f(&r[i])).collect::<Vec<_>>())
            };
            series.rounds = (0..rounds)
                .map(|i| RoundStat {
                    round: runs[0][i].0,
                    density: stat(i, &|r| r.1),
                    test_at_best_val: stat(i, &|r| r.2),
                    final_test: stat(i, &|r| r.3),
                })
                .collect();
            series
        })
        .collect())
}

/// `rounds-MODEL.svg` for every model with round series: accuracy (mean over seeds) against the
/// density (%, log-spaced rounds read right to left as in the paper).
pub fn draw_rounds(dir: &Path, all: &[RoundSeries]) -> Result<Vec<PathBuf>> {
    let mut models: Vec<&str> = all.iter().map(|s| s.model.as_str()).collect();
    models.dedup();
    let mut written = Vec::new();
    for model in models {
        let series: Vec<&RoundSeries> = all.iter().filter(|s| s.model == model).collect();
        let curves = |f: &dyn Fn(&RoundStat) -> f64| {
            series
                .iter()
                .map(|s| Curve {
                    label: &s.series,
                    points: s
                        .rounds
                        .iter()
                        .map(|r| (100.0 * r.density.mean, 100.0 * f(r)))
                        .collect(),
                })
                .collect::<Vec<_>>()
        };
        let panels = [
            Panel {
                caption: "test accuracy at best validation (%)",
                y_desc: "accuracy (%)",
                curves: curves(&|r| r.test_at_best_val.mean),
            },
            Panel {
                caption: "final test accuracy (%)",
                y_desc: "accuracy (%)",
                curves: curves(&|r| r.final_test.mean),
            },
        ];
        let path = dir.join(format!("rounds-{model}.svg"));
        let title = format!("{model}: accuracy per pruning round, mean over seeds");
        draw_panels(
            &path,
            &title,
            "density of the prunable weights (%)",
            &panels,
        )?;
        written.push(path);
    }
    Ok(written)
}

/// The Markdown table of every round series: one row per round, mean ± std (n).
pub fn rounds_markdown(all: &[RoundSeries]) -> String {
    let mut md = String::new();
    for s in all {
        md += &format!(
            "\n**{} / {}: per round** (test accuracy at best validation; final; mean ± std over seeds)\n\n\
             | round | density (%) | test at best val (%) | final test (%) |\n|---|---|---|---|\n",
            s.model, s.series
        );
        for r in &s.rounds {
            md += &format!(
                "| {} | {:.1} | {:.2} ± {:.2} ({}) | {:.2} ± {:.2} |\n",
                r.round,
                100.0 * r.density.mean,
                100.0 * r.test_at_best_val.mean,
                100.0 * r.test_at_best_val.std,
                r.test_at_best_val.n,
                100.0 * r.final_test.mean,
                100.0 * r.final_test.std,
            );
        }
    }
    md
}
