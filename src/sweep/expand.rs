//! A [`Grid`] expanded into jobs: one `sparsegrad train|posttrain` command line each, with its
//! own run directory `DIR/runs/MODEL/SERIES[-TARGET]/seedN` named from its settings. Every job's
//! command line is parsed by the subcommand's own config and validated (`validate`,
//! `refuse_unused_settings`) before anything is written, so an unknown method or a flag the
//! method does not read is refused here with the entry named, not hours later on a cluster.
//!
//! Jobs come in two phases: training jobs, then post-training jobs, each of which names the
//! training run it sparsifies (`needs`). Phase 2 starts only once phase 1 has ended (see
//! `crate::sweep::scripts`); the local runner starts a phase-2 job as soon as its own run is done.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, Command, FromArgMatches};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::methods::{PosttrainMethod, TrainMethod};
use crate::models::ModelName;
use crate::posttrain::PosttrainConfig;
use crate::run::TrainConfig;
use crate::run::dir::MODEL_FILE;
use crate::sweep::grid::{Entry, FlagValue, Flags, Grid, Kind};

/// One run of the sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub kind: Kind,
    pub model: String,
    /// The entry's name and the values of the axes it varies (everything but target and seed):
    /// one line of a figure, one row of a table.
    pub series: String,
    pub method: String,
    pub target: Option<f64>,
    pub seed: u64,
    /// Absolute run directory.
    pub out: PathBuf,
    /// The subcommand's arguments (`--out` included; `--threads`, `--quiet`, `--finish` are
    /// added by whoever runs it).
    pub args: Vec<String>,
    /// The run directory this job reads (posttrain: its training run).
    pub needs: Option<PathBuf>,
}

impl Job {
    /// The full argument list after the binary: subcommand, run flags, settings.
    pub fn argv(&self, threads: usize) -> Vec<String> {
        let mut argv = vec![
            self.kind.as_str().to_string(),
            "--finish".into(),
            "--quiet".into(),
            "--threads".into(),
            threads.to_string(),
        ];
        argv.extend(self.args.iter().cloned());
        argv
    }

    /// A short name for logs: `lenet300/str-0.9/seed0`.
    pub fn label(&self) -> String {
        let mut parts = self.out.iter().rev().take(3).collect::<Vec<_>>();
        parts.reverse();
        parts
            .iter()
            .map(|p| p.to_string_lossy())
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// Every value combination of `flags`' axes, in key order, with the suffix naming the axes'
/// values (`-lr0.1`; empty where no flag varies).
fn combinations(flags: &Flags) -> Vec<(String, Vec<(String, FlagValue)>)> {
    let mut out = vec![(String::new(), Vec::new())];
    for (key, values) in flags {
        let mut next = Vec::new();
        for (suffix, chosen) in &out {
            for v in values {
                let mut suffix = suffix.clone();
                if values.len() > 1 {
                    suffix += &match v {
                        FlagValue::Switch(true) => format!("-{key}"),
                        FlagValue::Switch(false) => format!("-no-{key}"),
                        FlagValue::Value(v) => format!("-{key}{}", path_safe(v)),
                    };
                }
                let mut chosen = chosen.clone();
                chosen.push((key.clone(), v.clone()));
                next.push((suffix, chosen));
            }
        }
        out = next;
    }
    out
}

fn path_safe(text: &str) -> String {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_');
    text.chars().map(|c| if ok(c) { c } else { '_' }).collect()
}

fn flag_args(chosen: &[(String, FlagValue)]) -> Vec<String> {
    let mut args = Vec::new();
    for (key, v) in chosen {
        match v {
            FlagValue::Switch(true) => args.push(format!("--{key}")),
            FlagValue::Switch(false) => {}
            FlagValue::Value(v) => args.extend([format!("--{key}"), v.clone()]),
        }
    }
    args
}

/// Whether the flag of setting `id` was on the parsed command line.
fn given(matches: &ArgMatches) -> impl Fn(&str) -> bool + '_ {
    move |id| {
        matches
            .try_get_raw(id)
            .is_ok_and(|_| matches.value_source(id) == Some(ValueSource::CommandLine))
    }
}

fn parse_error(e: clap::Error) -> Error {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    Error::invalid(first.trim_start_matches("error: ").to_string())
}

/// Parses and checks `args` exactly as `sparsegrad KIND` would.
fn check(kind: Kind, args: &[String]) -> Result<()> {
    let command = Command::new(kind.as_str())
        .no_binary_name(true)
        .allow_negative_numbers(true);
    match kind {
        Kind::Train => {
            let m = TrainConfig::augment_args(command)
                .try_get_matches_from(args)
                .map_err(parse_error)?;
            let config = TrainConfig::from_arg_matches(&m).map_err(parse_error)?;
            config.validate()?;
            config.refuse_unused_settings(&given(&m))
        }
        Kind::Posttrain => {
            let m = PosttrainConfig::augment_args(command)
                .try_get_matches_from(args)
                .map_err(parse_error)?;
            let config = PosttrainConfig::from_arg_matches(&m).map_err(parse_error)?;
            config.validate()?;
            config.refuse_unused_settings(&given(&m))
        }
    }
}

/// Whether the method of `entry` takes `--target-sparsity` (posttrain methods all do).
fn takes_target(entry: &Entry) -> Result<bool> {
    Ok(match entry.kind {
        Kind::Train => entry
            .method
            .parse::<TrainMethod>()?
            .settings()
            .iter()
            .any(|s| s == "target_sparsity"),
        Kind::Posttrain => {
            entry.method.parse::<PosttrainMethod>()?;
            true
        }
    })
}

fn fmt_target(t: f64) -> String {
    format!("{t}")
}

/// Expands and validates `grid` into jobs writing under `dir` (absolute): training jobs first.
pub fn expand(grid: &Grid, dir: &Path) -> Result<Vec<Job>> {
    if grid.models.is_empty() {
        return Err(Error::invalid("the sweep names no models"));
    }
    if grid.entries.is_empty() {
        return Err(Error::invalid("the sweep names no methods"));
    }
    let mut names = BTreeSet::new();
    for e in &grid.entries {
        if !names.insert(&e.name) {
            return Err(Error::invalid(format!(
                "two entries are named `{}`; give one a `name`",
                e.name
            )));
        }
        // A per-model table must name a model (a typo is an error), but not necessarily one of
        // this sweep: `--model` may narrow a file whose tables cover every model.
        for m in e
            .flags
            .per_model
            .keys()
            .chain(grid.train_flags.per_model.keys())
        {
            m.parse::<ModelName>().map_err(|e| {
                Error::invalid(format!("a table `{m}` of flags names no model: {e}"))
            })?;
        }
    }
    let mut jobs = Vec::new();
    for phase in [Kind::Train, Kind::Posttrain] {
        for entry in grid.entries.iter().filter(|e| e.kind == phase) {
            let context = |e: Error| {
                Error::invalid(format!("[[{}]] `{}`: {e}", entry.kind.as_str(), entry.name))
            };
            expand_entry(grid, entry, dir, &mut jobs).map_err(context)?;
        }
    }
    let mut outs = BTreeSet::new();
    for j in &jobs {
        if !outs.insert(&j.out) {
            return Err(Error::invalid(format!(
                "two jobs write {}; give the entries distinct names",
                j.out.display()
            )));
        }
    }
    Ok(jobs)
}

fn expand_entry(grid: &Grid, entry: &Entry, dir: &Path, jobs: &mut Vec<Job>) -> Result<()> {
    let targets: Vec<Option<f64>> = if takes_target(entry)? {
        let list = entry.sparsities.as_ref().unwrap_or(&grid.sparsities);
        if list.is_empty() {
            return Err(Error::invalid(
                "the method takes --target-sparsity but the sweep gives no sparsities",
            ));
        }
        list.iter().map(|&t| Some(t)).collect()
    } else if entry.sparsities.is_some() {
        return Err(Error::invalid(format!(
            "--method {} takes no --target-sparsity; remove `sparsities`",
            entry.method
        )));
    } else {
        vec![None]
    };
    let common = match entry.kind {
        Kind::Train => &grid.train_flags,
        Kind::Posttrain => &grid.posttrain_flags,
    };
    for model in entry.models.as_ref().unwrap_or(&grid.models) {
        let mut flags = common.for_model(model);
        flags.extend(entry.flags.for_model(model));
        for (suffix, chosen) in combinations(&flags) {
            let series = format!("{}{suffix}", path_safe(&entry.name));
            for &target in &targets {
                let setting = match target {
                    Some(t) => format!("{series}-{}", fmt_target(t)),
                    None => series.clone(),
                };
                for &seed in &grid.seeds {
                    let out = dir
                        .join("runs")
                        .join(path_safe(model))
                        .join(&setting)
                        .join(format!("seed{seed}"));
                    let needs = match entry.kind {
                        Kind::Train => None,
                        Kind::Posttrain => Some(training_run(entry, model, seed, jobs)?),
                    };
                    let mut args = match (&needs, entry.kind) {
                        (Some(run), _) => vec![
                            "--checkpoint".into(),
                            run.join(MODEL_FILE).display().to_string(),
                        ],
                        (None, _) => vec!["--model".into(), model.clone()],
                    };
                    args.extend(["--method".into(), entry.method.clone()]);
                    if let Some(t) = target {
                        args.extend(["--target-sparsity".into(), fmt_target(t)]);
                    }
                    args.extend(["--seed".into(), seed.to_string()]);
                    args.extend(flag_args(&chosen));
                    args.extend(["--out".into(), out.display().to_string()]);
                    check(entry.kind, &args)
                        .map_err(|e| Error::invalid(format!("{model}: {e}")))?;
                    jobs.push(Job {
                        kind: entry.kind,
                        model: model.clone(),
                        series: series.clone(),
                        method: entry.method.clone(),
                        target,
                        seed,
                        out,
                        args,
                        needs,
                    });
                }
            }
        }
    }
    Ok(())
}

/// The training run (same model and seed) of the entry a posttrain entry sparsifies.
fn training_run(entry: &Entry, model: &str, seed: u64, jobs: &[Job]) -> Result<PathBuf> {
    let from = entry.from.as_deref().unwrap_or("dense");
    let runs: Vec<&Job> = jobs
        .iter()
        .filter(|j| {
            j.kind == Kind::Train
                && j.model == model
                && j.seed == seed
                && j.out.parent().and_then(|p| p.file_name()) == Some(from.as_ref())
        })
        .collect();
    match runs.as_slice() {
        [run] => Ok(run.out.clone()),
        [] => Err(Error::invalid(format!(
            "`from = \"{from}\"`: no [[train]] entry named `{from}` with one run for {model} seed {seed} (an entry with a sparsity or a varying flag has several)"
        ))),
        _ => Err(Error::invalid(format!(
            "`from = \"{from}\"` matches {} runs for {model} seed {seed}",
            runs.len()
        ))),
    }
}
