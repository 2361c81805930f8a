//! What `sparsegrad report SWEEP_DIR` writes: `results.md` (per model: accuracy at each target
//! sparsity per series, then every setting with sparsity, MACs and wall time, then the figures
//! and the incomplete runs), `results.csv` (one row per setting) and the SVG figures
//! ([`crate::sweep::figures`]). Cells read `mean ± std (n)`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::io::atomic::write_atomic;
use crate::sweep::aggregate::{Aggregate, Setting, Stat, aggregate};
use crate::sweep::figures::{draw_accuracy, draw_budgets};
use crate::sweep::rounds::{draw_rounds, round_series, rounds_markdown};

pub const RESULTS_MD: &str = "results.md";
pub const RESULTS_CSV: &str = "results.csv";

/// `mean ± std (n)` in percent.
fn pct(s: &Stat) -> String {
    if s.n == 0 {
        "-".into()
    } else {
        format!("{:.2} ± {:.2} ({})", 100.0 * s.mean, 100.0 * s.std, s.n)
    }
}

fn target_text(t: Option<f64>) -> String {
    t.map(|t| format!("{t}")).unwrap_or_else(|| "-".into())
}

/// The models of `agg`, in order of appearance.
pub fn models(agg: &Aggregate) -> Vec<String> {
    let mut seen = Vec::new();
    for s in &agg.settings {
        if !seen.contains(&s.model) {
            seen.push(s.model.clone());
        }
    }
    seen
}

/// The series of `model`, in order of appearance.
pub fn series_of<'a>(agg: &'a Aggregate, model: &str) -> Vec<&'a str> {
    let mut seen: Vec<&str> = Vec::new();
    for s in agg.settings.iter().filter(|s| s.model == model) {
        if !seen.contains(&s.series.as_str()) {
            seen.push(&s.series);
        }
    }
    seen
}

fn accuracy_table(agg: &Aggregate, model: &str) -> String {
    let mut targets: Vec<f64> = agg
        .settings
        .iter()
        .filter(|s| s.model == model)
        .filter_map(|s| s.target)
        .collect();
    targets.sort_by(f64::total_cmp);
    targets.dedup();
    let mut out = String::from("| series | no target |");
    for t in &targets {
        out += &format!(" {t} |");
    }
    out += &format!("\n|---|---|{}\n", "---|".repeat(targets.len()));
    for series in series_of(agg, model) {
        let cell = |t: Option<f64>| {
            agg.settings
                .iter()
                .find(|s| s.model == model && s.series == series && s.target == t)
                .map(|s| pct(&s.test_accuracy))
                .unwrap_or_default()
        };
        out += &format!("| {series} | {} |", cell(None));
        for t in &targets {
            out += &format!(" {} |", cell(Some(*t)));
        }
        out += "\n";
    }
    out
}

fn settings_table(rows: &[&Setting]) -> String {
    let mut out = String::from(
        "| series | target | seeds | test acc (%) | test acc at best val (%) | sparsity (%) | MACs (% of dense) | wall s |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for s in rows {
        let seeds: Vec<String> = s.seeds.iter().map(u64::to_string).collect();
        out += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.1} ± {:.1} |\n",
            s.series,
            target_text(s.target),
            seeds.join(","),
            pct(&s.test_accuracy),
            s.test_accuracy_at_best_val
                .as_ref()
                .map(pct)
                .unwrap_or_else(|| "-".into()),
            pct(&s.sparsity),
            pct(&s.flops_fraction),
            s.wall_seconds.mean,
            s.wall_seconds.std
        );
    }
    out
}

/// `results.md` of `agg`; `figures` are the SVG files (names relative to the sweep directory).
pub fn markdown(agg: &Aggregate, figures: &[PathBuf]) -> String {
    let mut out = String::from(
        "# Sweep results\n\nCells: mean ± sample standard deviation (complete runs) over seeds. \
         Accuracy is the final test accuracy; `at best val` is the test accuracy at the epoch of \
         best validation accuracy. Nothing is selected on test accuracy.\n",
    );
    for model in models(agg) {
        out += &format!("\n## {model}\n\n### Test accuracy (%) at each target sparsity\n\n");
        out += &accuracy_table(agg, &model);
        out += "\n### Every setting\n\n";
        let rows: Vec<&Setting> = agg.settings.iter().filter(|s| s.model == model).collect();
        out += &settings_table(&rows);
        out += "\n";
        for f in figures {
            let name = f.file_name().unwrap_or_default().to_string_lossy();
            if name.contains(&format!("-{model}")) {
                out += &format!("![{name}]({name})\n\n");
            }
        }
    }
    out += "\n## Incomplete runs (not averaged)\n\n";
    if agg.incomplete.is_empty() {
        out += "None.\n";
    }
    for i in &agg.incomplete {
        out += &format!("- {}: {}\n", i.run, i.why);
    }
    out
}

/// `results.csv`: one row per setting.
pub fn csv(agg: &Aggregate) -> String {
    let mut out = String::from(
        "model,series,method,kind,target,n,seeds,test_acc_mean,test_acc_std,val_selected_test_acc_mean,val_selected_test_acc_std,sparsity_mean,sparsity_std,flops_fraction_mean,flops_fraction_std,flops_mean,wall_seconds_mean,wall_seconds_std\n",
    );
    for s in &agg.settings {
        let seeds: Vec<String> = s.seeds.iter().map(u64::to_string).collect();
        let val = s.test_accuracy_at_best_val;
        let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        out += &format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            s.model,
            s.series,
            s.method,
            if s.posttrain { "posttrain" } else { "train" },
            s.target.map(|t| t.to_string()).unwrap_or_default(),
            s.test_accuracy.n,
            seeds.join(" "),
            s.test_accuracy.mean,
            s.test_accuracy.std,
            opt(val.map(|v| v.mean)),
            opt(val.map(|v| v.std)),
            s.sparsity.mean,
            s.sparsity.std,
            s.flops_fraction.mean,
            s.flops_fraction.std,
            s.flops_sparse.mean,
            s.wall_seconds.mean,
            s.wall_seconds.std
        );
    }
    out
}

/// Writes `results.md`, `results.csv` and the figures into `dir`; returns `results.md`'s text.
pub fn write_report(dir: &Path) -> Result<String> {
    let agg = aggregate(dir)?;
    let mut figures = Vec::new();
    for model in models(&agg) {
        figures.extend(draw_accuracy(dir, &agg, &model)?);
        let targets: BTreeSet<String> = agg
            .settings
            .iter()
            .filter(|s| s.model == model)
            .filter_map(|s| s.target.map(|t| t.to_string()))
            .collect();
        for t in targets {
            figures.extend(draw_budgets(dir, &agg, &model, t.parse().unwrap_or(0.0))?);
        }
    }
    let rounds = round_series(dir)?;
    figures.extend(draw_rounds(dir, &rounds)?);
    let mut md = markdown(&agg, &figures);
    if !rounds.is_empty() {
        md += "\n## Iterative methods, round by round\n";
        md += &rounds_markdown(&rounds);
    }
    write_atomic(&dir.join(RESULTS_MD), md.as_bytes())?;
    write_atomic(&dir.join(RESULTS_CSV), csv(&agg).as_bytes())?;
    Ok(md)
}
