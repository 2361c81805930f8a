//! A sweep's runs gathered over seeds: per setting (model, series, target) the mean, sample
//! standard deviation and count of each figure over the complete runs. A run without a
//! readable `summary.json` is listed as incomplete with the reason, never averaged.
//!
//! Accuracy is the final test accuracy, and where the run held out a validation set, the test
//! accuracy at the epoch of best validation accuracy. Nothing is selected on test accuracy.

use std::path::Path;

use crate::error::Result;
use crate::run::dir::{CHECKPOINT_FILE, SUMMARY_FILE, is_posttrain_run, read_summary};
use crate::run::report::layer_sparsities;
use crate::run::summary::{PosttrainSummary, Summary};
use crate::sweep::expand::Job;
use crate::sweep::scripts::read_manifest;

/// The figures of one complete run.
#[derive(Clone, Debug, PartialEq)]
pub struct RunResult {
    pub test_accuracy: f64,
    pub test_accuracy_at_best_val: Option<f64>,
    pub sparsity: f64,
    /// Sparse / dense multiply-accumulates.
    pub flops_fraction: f64,
    pub flops_sparse: f64,
    pub wall_seconds: f64,
    pub layers: Vec<(String, f64)>,
}

/// Mean, sample standard deviation (n - 1; 0 for one value) and count.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stat {
    pub mean: f64,
    pub std: f64,
    pub n: usize,
}

impl Stat {
    pub fn of(values: &[f64]) -> Stat {
        let n = values.len();
        if n == 0 {
            return Stat {
                mean: f64::NAN,
                std: f64::NAN,
                n,
            };
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let var = if n > 1 {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        Stat {
            mean,
            std: var.sqrt(),
            n,
        }
    }
}

/// One setting over its seeds.
#[derive(Clone, Debug, PartialEq)]
pub struct Setting {
    pub model: String,
    pub series: String,
    pub method: String,
    pub posttrain: bool,
    pub target: Option<f64>,
    pub seeds: Vec<u64>,
    pub test_accuracy: Stat,
    /// Over the runs that have it (absent when none does).
    pub test_accuracy_at_best_val: Option<Stat>,
    pub sparsity: Stat,
    pub flops_fraction: Stat,
    pub flops_sparse: Stat,
    pub wall_seconds: Stat,
    /// Mean sparsity per layer, in layer order.
    pub layers: Vec<(String, f64)>,
}

/// A run that is not (yet) complete.
#[derive(Clone, Debug, PartialEq)]
pub struct Incomplete {
    pub run: String,
    pub why: String,
}

/// The whole sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct Aggregate {
    pub settings: Vec<Setting>,
    pub incomplete: Vec<Incomplete>,
}

/// Reads one run's summary.
pub fn read_run(run: &Path) -> Result<RunResult> {
    let fraction = |s: usize, d: usize| if d == 0 { 1.0 } else { s as f64 / d as f64 };
    if is_posttrain_run(run) {
        let s: PosttrainSummary = read_summary(run)?;
        let layers: Vec<_> = s.layers.iter().map(|l| l.report.clone()).collect();
        return Ok(RunResult {
            test_accuracy: s.test_accuracy,
            test_accuracy_at_best_val: None,
            sparsity: s.achieved_sparsity,
            flops_fraction: fraction(s.flops_sparse, s.flops_dense),
            flops_sparse: s.flops_sparse as f64,
            wall_seconds: s.wall_seconds,
            layers: layer_sparsities(&layers),
        });
    }
    let s: Summary = read_summary(run)?;
    Ok(RunResult {
        test_accuracy: s.test_accuracy,
        test_accuracy_at_best_val: s.best.as_ref().map(|b| b.test_accuracy),
        sparsity: s.overall_sparsity,
        flops_fraction: fraction(s.flops_sparse, s.flops_dense),
        flops_sparse: s.flops_sparse as f64,
        wall_seconds: s.wall_seconds,
        layers: layer_sparsities(&s.layers),
    })
}

fn why_incomplete(job: &Job) -> String {
    if !job.out.exists() {
        "not started".into()
    } else if job.out.join(CHECKPOINT_FILE).exists() {
        "interrupted (checkpoint, no summary): rerun to resume".into()
    } else {
        format!("no {SUMMARY_FILE} (failed or running)")
    }
}

/// Gathers the runs of the sweep in `dir`, in the manifest's order of settings.
pub fn aggregate(dir: &Path) -> Result<Aggregate> {
    let manifest = read_manifest(dir)?;
    let mut groups: Vec<(&Job, Vec<(u64, RunResult)>)> = Vec::new();
    let mut incomplete = Vec::new();
    for job in &manifest.jobs {
        let result = if job.out.join(SUMMARY_FILE).exists() {
            read_run(&job.out).map_err(|e| e.to_string())
        } else {
            Err(why_incomplete(job))
        };
        let slot = match groups.iter().position(|(g, _)| {
            g.model == job.model && g.series == job.series && g.target == job.target
        }) {
            Some(i) => i,
            None => {
                groups.push((job, Vec::new()));
                groups.len() - 1
            }
        };
        match result {
            Ok(r) => groups[slot].1.push((job.seed, r)),
            Err(why) => incomplete.push(Incomplete {
                run: job.out.display().to_string(),
                why,
            }),
        }
    }
    let settings = groups
        .into_iter()
        .map(|(job, runs)| setting(job, &runs))
        .collect();
    Ok(Aggregate {
        settings,
        incomplete,
    })
}

fn setting(job: &Job, runs: &[(u64, RunResult)]) -> Setting {
    let stat = |f: &dyn Fn(&RunResult) -> f64| {
        Stat::of(&runs.iter().map(|(_, r)| f(r)).collect::<Vec<_>>())
    };
    let at_val: Vec<f64> = runs
        .iter()
        .filter_map(|(_, r)| r.test_accuracy_at_best_val)
        .collect();
    let layers = match runs.first() {
        Some((_, first)) => first
            .layers
            .iter()
            .enumerate()
            .map(|(i, (name, _))| {
                let values: Vec<f64> = runs
                    .iter()
                    .filter_map(|(_, r)| r.layers.get(i).map(|l| l.1))
                    .collect();
                (name.clone(), Stat::of(&values).mean)
            })
            .collect(),
        None => Vec::new(),
    };
    Setting {
        model: job.model.clone(),
        series: job.series.clone(),
        method: job.method.clone(),
        posttrain: job.needs.is_some(),
        target: job.target,
        seeds: runs.iter().map(|(s, _)| *s).collect(),
        test_accuracy: stat(&|r| r.test_accuracy),
        test_accuracy_at_best_val: (!at_val.is_empty()).then(|| Stat::of(&at_val)),
        sparsity: stat(&|r| r.sparsity),
        flops_fraction: stat(&|r| r.flops_fraction),
        flops_sparse: stat(&|r| r.flops_sparse),
        wall_seconds: stat(&|r| r.wall_seconds),
        layers,
    }
}
