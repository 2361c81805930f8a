//! The `sparsegrad` command line: train, posttrain, eval, report, sweep. Parsing and printing
//! only: the flags are the library's config structs (`TrainConfig`, `PosttrainConfig`,
//! `SweepArgs`, with the clap derive on them), and the work is the library's.
//!
//! Every failure prints one line `error: ...` naming the flag or file and exits non-zero.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use sparsegrad::error::{Error, Result};
use sparsegrad::nn::SparseKernels;
use sparsegrad::posttrain::{self, PosttrainConfig};
use sparsegrad::run::best::BEST_RULE;
use sparsegrad::run::dir::{CHECKPOINT_FILE, SUMMARY_FILE};
use sparsegrad::run::evaluate::evaluate_checkpoint;
use sparsegrad::run::flags::on_threads;
use sparsegrad::run::interrupt;
use sparsegrad::run::report::{best_phrase, compare_runs, report_run};
use sparsegrad::sweep::command::SweepArgs;
use sparsegrad::sweep::results::write_report;
use sparsegrad::sweep::scripts::MANIFEST_FILE;
use sparsegrad::train::{Outcome, Progress, RunOptions, TrainConfig, train};

#[derive(Parser)]
#[command(
    name = "sparsegrad",
    version,
    about = "Sparse neural-network training on CPUs",
    allow_negative_numbers = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model (defaults: LeNet-300-100 on the bundled MNIST-10k, dense, 10 epochs).
    Train(Box<TrainArgs>),
    /// Test accuracy and sparsity of a checkpoint or exported model.
    Eval(EvalArgs),
    /// Per-layer table of a finished run (train or posttrain): shape, params, nonzero, sparsity,
    /// FLOPs, threshold; several runs: one Markdown table comparing them.
    Report(ReportArgs),
    /// Sparsify a trained model with a small calibration set (FCPTS or a magnitude baseline).
    Posttrain(Box<PosttrainArgs>),
    /// Expand a grid of runs (a TOML sweep file or flags; see docs/sweeps.md) into jobs.txt,
    /// Slurm scripts and a manifest, and optionally run it here (`--run N`).
    Sweep(Box<SweepArgs>),
}

#[derive(Args)]
#[command(allow_negative_numbers = true)]
struct TrainArgs {
    #[command(flatten)]
    config: TrainConfig,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    resume: bool,
    /// Bring the run in --out to its end whatever its state: nothing if complete, resume if
    /// interrupted, start otherwise (what sweep job lines use; rerunning one is harmless).
    #[arg(long, conflicts_with_all = ["resume", "force"])]
    finish: bool,
    /// Overwrite a run already in --out.
    #[arg(long)]
    force: bool,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
#[command(allow_negative_numbers = true)]
struct PosttrainArgs {
    #[command(flatten)]
    config: PosttrainConfig,
    /// Nothing if the run in --out is complete, else run it afresh (post-training runs are
    /// short and not resumable).
    #[arg(long, conflicts_with = "force")]
    finish: bool,
    /// Overwrite a run already in --out.
    #[arg(long)]
    force: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct EvalArgs {
    /// A `model.safetensors` or `checkpoint.safetensors` written by `sparsegrad train`.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Data to evaluate on (default: the data the model was trained on).
    #[arg(long)]
    data: Option<String>,
    /// Run masked layers on the sparse kernels (auto: where the calibrated rule says so).
    #[arg(long, value_enum, default_value_t = SparseKernels::Auto)]
    sparse_kernels: SparseKernels,
}

#[derive(Args)]
struct ReportArgs {
    /// Run directories written by `sparsegrad train` or `sparsegrad posttrain`: one gives its
    /// per-layer table, several a Markdown table comparing them. A sweep directory (written by
    /// `sparsegrad sweep`): aggregates its runs over seeds into results.md, results.csv and
    /// SVG figures there.
    #[arg(required = true)]
    runs: Vec<PathBuf>,
}

/// Whether the flag of setting `id` was given on the command line (not a default).
fn given(matches: &ArgMatches) -> impl Fn(&str) -> bool + '_ {
    move |id| {
        matches
            .try_get_raw(id)
            .is_ok_and(|_| matches.value_source(id) == Some(ValueSource::CommandLine))
    }
}

fn run_train(args: &TrainArgs, matches: &ArgMatches) -> Result<()> {
    let config = &args.config;
    config.validate()?;
    config.refuse_unused_settings(&given(matches))?;
    let out = config.out_dir();
    if args.finish && out.join(SUMMARY_FILE).exists() {
        println!("{} is complete: nothing to do", out.display());
        return Ok(());
    }
    let resume = args.resume || (args.finish && out.join(CHECKPOINT_FILE).exists());
    let command = interrupt::command_line();
    interrupt::on_interrupt(move |signal| interrupt::train_message(signal, &out, &command));
    let options = RunOptions {
        resume,
        force: args.force || (args.finish && !resume),
        stop_after: None,
    };
    let outcome = on_threads(config.threads, || {
        train(config, options, &mut Progress::new(args.quiet))
    })?;
    let Outcome::Finished(summary) = outcome else {
        unreachable!("train stops early only when asked to")
    };
    println!("{} ({BEST_RULE})", best_phrase(summary.best.as_ref()));
    println!("{}", summary.result_line());
    println!("run written to {}", config.out_dir().display());
    Ok(())
}

fn run_posttrain(args: &PosttrainArgs, matches: &ArgMatches) -> Result<()> {
    let config = &args.config;
    config.validate()?;
    config.refuse_unused_settings(&given(matches))?;
    if args.finish && config.out_dir().join(SUMMARY_FILE).exists() {
        println!("{} is complete: nothing to do", config.out_dir().display());
        return Ok(());
    }
    let force = args.force || args.finish;
    let command = interrupt::command_line();
    interrupt::on_interrupt(move |signal| interrupt::posttrain_message(signal, &command));
    let s = on_threads(config.threads, || {
        posttrain::run(config, force, &mut Progress::new(args.quiet))
    })?;
    println!("{}", s.result_line());
    println!("run written to {}", config.out_dir().display());
    Ok(())
}

fn run_eval(args: &EvalArgs) -> Result<()> {
    let e = evaluate_checkpoint(&args.checkpoint, args.data.as_deref(), args.sparse_kernels)?;
    println!(
        "{} ({} / {}) on {}: test_accuracy={:.4} sparsity={:.4} ({} test images)",
        args.checkpoint.display(),
        e.model,
        e.method,
        e.data.display(),
        e.test_accuracy,
        e.sparsity,
        e.test_images
    );
    if !e.sparse_layers.is_empty() {
        println!("sparse kernels: {}", e.sparse_layers.join(", "));
    }
    Ok(())
}

fn run_report(args: &ReportArgs) -> Result<()> {
    let runs: Vec<&Path> = args.runs.iter().map(PathBuf::as_path).collect();
    match runs.as_slice() {
        [dir] if dir.join(MANIFEST_FILE).exists() => print!("{}", write_report(dir)?),
        [run] => print!("{}", report_run(run)?),
        runs => print!("{}", compare_runs(runs)?),
    }
    Ok(())
}

fn run_sweep(args: &SweepArgs) -> Result<()> {
    let plan = args.plan()?;
    print!("{}", plan.describe());
    let Some(tally) = args.run_here(&plan)? else {
        return Ok(());
    };
    let (done, skipped, failed) = (tally.done, tally.skipped, tally.failed.len());
    println!("{done} run, {skipped} already complete, {failed} failed");
    for (job, why) in &tally.failed {
        eprintln!("failed: {job}: {why}");
    }
    if failed == 0 {
        return Ok(());
    }
    let total = plan.manifest.jobs.len();
    Err(Error::invalid(format!(
        "{failed} of {total} jobs failed (listed above)"
    )))
}

/// A refused flag value as one `error:` line like every other error here, e.g.
/// ``unknown --str-g `tanh` (expected one of: sigmoid, exp)``; `None` for other clap errors.
fn one_line(e: &clap::Error) -> Option<String> {
    if e.kind() != ErrorKind::InvalidValue {
        return None;
    }
    let flag = match e.get(ContextKind::InvalidArg)? {
        ContextValue::String(s) => s.split_whitespace().next()?.to_string(),
        _ => return None,
    };
    let value = match e.get(ContextKind::InvalidValue)? {
        ContextValue::String(s) => s.clone(),
        _ => return None,
    };
    let expected = match e.get(ContextKind::ValidValue) {
        Some(ContextValue::Strings(v)) => format!(" (expected one of: {})", v.join(", ")),
        _ => String::new(),
    };
    Some(format!("unknown {flag} `{value}`{expected}"))
}

fn main() -> ExitCode {
    interrupt::restore_default_sigpipe();
    sparsegrad::alloc::tune_allocator();
    let matches = match Cli::command().try_get_matches() {
        Ok(m) => m,
        Err(e) => match one_line(&e) {
            Some(line) => {
                eprintln!("error: {line}");
                return ExitCode::FAILURE;
            }
            None => e.exit(),
        },
    };
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let sub = |name: &str| {
        matches
            .subcommand_matches(name)
            .expect("the parsed subcommand")
    };
    let result = match &cli.command {
        Command::Train(args) => run_train(args, sub("train")),
        Command::Eval(args) => run_eval(args),
        Command::Report(args) => run_report(args),
        Command::Posttrain(args) => run_posttrain(args, sub("posttrain")),
        Command::Sweep(args) => run_sweep(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
