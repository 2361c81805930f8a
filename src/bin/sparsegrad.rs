//! The `sparsegrad` command line: train, eval, report, posttrain.
//!
//! Every failure prints one line `error: ...` naming the flag or file and exits non-zero.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use sparsegrad::data::detect::load_dir;
use sparsegrad::error::{Error, Result};
use sparsegrad::io::compare::{ComparisonRow, markdown_table};
use sparsegrad::posttrain::{self, PosttrainConfig};
use sparsegrad::sparsity::report::{SparsityReport, format_table, sparsity_report};
use sparsegrad::train::evaluate::accuracy;
use sparsegrad::train::trainer::{load_model, read_summary};
use sparsegrad::train::{Outcome, Progress, RunOptions, SparsityConfig, TrainConfig, train};

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
    /// FLOPs, threshold.
    Report(ReportArgs),
    /// Sparsify a trained model with a small calibration set (FCPTS or a magnitude baseline).
    Posttrain(Box<PosttrainArgs>),
}

#[derive(Args)]
#[command(allow_negative_numbers = true)]
struct TrainArgs {
    /// lenet300 | lenet5 | resnet20 | resnet32 | resnet56 | mobilenet | fastgrnn
    #[arg(long, default_value = "lenet300")]
    model: String,
    /// Channel-width multiplier (MobileNet's alpha).
    #[arg(long, default_value_t = 1.0)]
    width: f64,
    /// `mnist-10k` (bundled) or a directory of MNIST-format IDX files or CIFAR-10/100 binaries.
    #[arg(long, default_value = "mnist-10k")]
    data: String,
    /// dense | str | gmp | magnitude
    #[arg(long, default_value = "dense")]
    method: String,
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// sgd | adam | adamw
    #[arg(long, default_value = "sgd")]
    optimizer: String,
    #[arg(long, default_value_t = 0.05)]
    lr: f64,
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    /// Nesterov momentum (SGD).
    #[arg(long)]
    nesterov: bool,
    #[arg(long, default_value_t = 5e-4)]
    weight_decay: f64,
    /// Weight decay of biases and batchnorm parameters (default: --weight-decay).
    #[arg(long)]
    bias_decay: Option<f64>,
    /// constant | step:N:GAMMA | multistep:M1,M2:GAMMA | cosine | cosine:ETA_MIN
    #[arg(long, default_value = "cosine")]
    schedule: String,
    /// Linear warm-up: LENGTH or LENGTH:START_FACTOR, in schedule units.
    #[arg(long)]
    warmup: Option<String>,
    /// epoch | step: what the schedule counts.
    #[arg(long, default_value = "epoch")]
    schedule_unit: String,
    #[arg(long, default_value_t = 0.0)]
    label_smoothing: f64,
    /// Fraction of the training set held out for validation.
    #[arg(long, default_value_t = 0.1)]
    val_split: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Worker threads (results are identical for any count).
    #[arg(long)]
    threads: Option<usize>,
    /// Run directory (default runs/MODEL-METHOD).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    resume: bool,
    /// Overwrite a run already in --out.
    #[arg(long)]
    force: bool,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    sparsity: SparsityArgs,
}

#[derive(Args)]
struct SparsityArgs {
    /// Global sparsity to reach (STR controller, GMP, magnitude).
    #[arg(long)]
    target_sparsity: Option<f64>,
    /// Keep the first layer dense.
    #[arg(long)]
    first_layer_dense: bool,
    /// Keep the last layer dense.
    #[arg(long)]
    last_layer_dense: bool,
    /// STR: initial threshold parameter s (threshold g(s); -5 prunes from the start on MNIST-scale
    /// runs, the paper's ImageNet -3200 prunes nothing in a short run).
    #[arg(long, default_value_t = SparsityConfig::default().s_init)]
    s_init: f64,
    /// STR: layer | channel | global | weight | rank (low-rank factors, structured).
    #[arg(long, default_value = "layer")]
    str_granularity: String,
    /// STR: sigmoid | exp.
    #[arg(long, default_value = "sigmoid")]
    str_g: String,
    /// STR: weight decay of the thresholds (default: --weight-decay).
    #[arg(long)]
    threshold_decay: Option<f64>,
    /// STR with --target-sparsity: weight of the control loss |S_now - S|.
    #[arg(long, default_value_t = SparsityConfig::default().controller_weight)]
    controller_weight: f64,
    /// STR with --target-sparsity: fraction of the run over which the target ramps up (0: none).
    #[arg(long, default_value_t = SparsityConfig::default().controller_ramp)]
    controller_ramp: f64,
    /// STR with --target-sparsity: log (|ln(1-S_now) - ln(1-S)|) | linear (|S_now - S|).
    #[arg(long, default_value = "log")]
    controller_loss: String,
    /// GMP: first optimiser step of the pruning schedule.
    #[arg(long)]
    prune_start: Option<usize>,
    /// GMP: last optimiser step of the pruning schedule.
    #[arg(long)]
    prune_end: Option<usize>,
    /// GMP: optimiser steps between prunings.
    #[arg(long, default_value_t = 100)]
    prune_every: usize,
    /// Magnitude: prune after this many epochs, then fine-tune.
    #[arg(long)]
    prune_epoch: Option<usize>,
}

impl TrainArgs {
    fn config(&self) -> TrainConfig {
        let s = &self.sparsity;
        TrainConfig {
            model: self.model.clone(),
            width: self.width,
            data: self.data.clone(),
            method: self.method.clone(),
            epochs: self.epochs,
            batch_size: self.batch_size,
            optimizer: self.optimizer.clone(),
            lr: self.lr,
            momentum: self.momentum,
            nesterov: self.nesterov,
            weight_decay: self.weight_decay,
            bias_decay: self.bias_decay,
            schedule: self.schedule.clone(),
            warmup: self.warmup.clone(),
            schedule_unit: self.schedule_unit.clone(),
            label_smoothing: self.label_smoothing,
            val_split: self.val_split,
            seed: self.seed,
            threads: self.threads,
            out: self
                .out
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("runs/{}-{}", self.model, self.method))),
            sparsity: SparsityConfig {
                target_sparsity: s.target_sparsity,
                first_layer_dense: s.first_layer_dense,
                last_layer_dense: s.last_layer_dense,
                s_init: s.s_init,
                str_granularity: s.str_granularity.clone(),
                str_g: s.str_g.clone(),
                threshold_decay: s.threshold_decay,
                controller_weight: s.controller_weight,
                controller_ramp: s.controller_ramp,
                controller_loss: s.controller_loss.clone(),
                prune_start: s.prune_start,
                prune_end: s.prune_end,
                prune_every: s.prune_every,
                prune_epoch: s.prune_epoch,
            },
        }
    }
}

#[derive(Args)]
struct EvalArgs {
    /// A `model.safetensors` or `checkpoint.safetensors` written by `sparsegrad train`.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Data to evaluate on (default: the data the model was trained on).
    #[arg(long)]
    data: Option<String>,
}

#[derive(Args)]
#[command(allow_negative_numbers = true)]
struct PosttrainArgs {
    /// A `model.safetensors` or `checkpoint.safetensors` written by `sparsegrad train`.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Global sparsity r0 of the prunable weights, in (0, 1).
    #[arg(long)]
    target_sparsity: f64,
    /// fcpts | magnitude-uniform | magnitude-erk | magnitude-global | magnitude-l2norm | lamp
    #[arg(long, default_value = "fcpts")]
    method: String,
    /// FCPTS: paper (reconstruction gradient reaches the thresholds, KDE density) | code (the
    /// released code: thresholds moved by the control loss only, histogram density). Default paper.
    #[arg(long)]
    variant: Option<String>,
    /// FCPTS paper variant: dM/dt surrogate, clipped (default) | sigmoid:T.
    #[arg(long)]
    surrogate: Option<String>,
    /// FCPTS: density of the sparsity bridge, kde | histogram (default: the variant's).
    #[arg(long)]
    density: Option<String>,
    /// Calibration images drawn from the run's training split.
    #[arg(long, default_value_t = PosttrainConfig::default().calib)]
    calib: usize,
    /// Optimisation iterations (one batch each).
    #[arg(long, default_value_t = PosttrainConfig::default().iters)]
    iters: usize,
    #[arg(long, default_value_t = PosttrainConfig::default().batch_size)]
    batch_size: usize,
    /// Learning rate of the model's parameters.
    #[arg(long, default_value_t = PosttrainConfig::default().lr)]
    lr: f64,
    /// FCPTS: learning rate of the threshold scores (default: --lr).
    #[arg(long)]
    score_lr: Option<f64>,
    #[arg(long, default_value_t = PosttrainConfig::default().momentum)]
    momentum: f64,
    /// Weight decay of the model's parameters (threshold scores get none).
    #[arg(long, default_value_t = PosttrainConfig::default().weight_decay)]
    weight_decay: f64,
    /// Linear warm-up from 0, in iterations.
    #[arg(long, default_value_t = PosttrainConfig::default().warmup)]
    warmup: usize,
    /// Distillation temperature of the reconstruction loss.
    #[arg(long, default_value_t = PosttrainConfig::default().temperature)]
    temperature: f64,
    /// FCPTS: weight of the control loss.
    #[arg(long, default_value_t = PosttrainConfig::default().control_weight)]
    control_weight: f64,
    /// Baselines: prune only, no reconstruction fine-tuning.
    #[arg(long)]
    no_finetune: bool,
    /// Iterations between lines of posttrain.jsonl.
    #[arg(long, default_value_t = PosttrainConfig::default().log_every)]
    log_every: usize,
    /// Data directory (default: the data the checkpoint was trained on).
    #[arg(long)]
    data: Option<String>,
    /// Seed of the calibration draw and batch order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Worker threads (results are identical for any count).
    #[arg(long)]
    threads: Option<usize>,
    /// Run directory (default runs/MODEL-METHOD-R0).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Overwrite a run already in --out.
    #[arg(long)]
    force: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

impl PosttrainArgs {
    fn config(&self) -> PosttrainConfig {
        PosttrainConfig {
            checkpoint: self.checkpoint.clone(),
            data: self.data.clone(),
            method: self.method.clone(),
            target_sparsity: self.target_sparsity,
            variant: self.variant.clone(),
            surrogate: self.surrogate.clone(),
            density: self.density.clone(),
            calib: self.calib,
            iters: self.iters,
            batch_size: self.batch_size,
            lr: self.lr,
            score_lr: self.score_lr,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            warmup: self.warmup,
            temperature: self.temperature,
            control_weight: self.control_weight,
            finetune: !self.no_finetune,
            log_every: self.log_every,
            seed: self.seed,
            threads: self.threads,
            out: self.out.clone().unwrap_or_else(|| {
                PathBuf::from(format!(
                    "runs/posttrain-{}-{}",
                    self.method, self.target_sparsity
                ))
            }),
        }
    }
}

#[derive(Args)]
struct ReportArgs {
    /// Run directories written by `sparsegrad train` or `sparsegrad posttrain`: one gives its
    /// per-layer table, several a Markdown table comparing them.
    #[arg(required = true)]
    runs: Vec<PathBuf>,
}

fn set_threads(threads: Option<usize>) -> Result<()> {
    if let Some(n) = threads {
        if n == 0 {
            return Err(Error::invalid("--threads must be at least 1"));
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| Error::invalid(format!("--threads: {e}")))?;
    }
    Ok(())
}

fn run_train(args: &TrainArgs) -> Result<()> {
    let config = args.config();
    config.validate()?;
    set_threads(config.threads)?;
    let options = RunOptions {
        resume: args.resume,
        force: args.force,
        stop_after: None,
    };
    let Outcome::Finished(summary) = train(&config, options, &mut Progress::new(args.quiet))?
    else {
        unreachable!("train stops early only when asked to")
    };
    println!(
        "test_accuracy={:.4} best_test_accuracy={:.4} sparsity={:.4} params={}/{} flops={}/{} wall_seconds={:.1}",
        summary.test_accuracy,
        summary.best_test_accuracy,
        summary.overall_sparsity,
        summary.params_nonzero,
        summary.params_total,
        summary.flops_sparse,
        summary.flops_dense,
        summary.wall_seconds
    );
    println!("run written to {}", config.out.display());
    Ok(())
}

fn run_eval(args: &EvalArgs) -> Result<()> {
    let path = &args.checkpoint;
    let (mut model, meta) = load_model(path)?;
    let info = &meta.info;
    let data_name = args
        .data
        .clone()
        .unwrap_or_else(|| meta.config.data.clone());
    let data = load_dir(Path::new(&data_name))?;
    if data.test.image_shape() != info.input || data.test.classes != info.classes {
        return Err(Error::invalid(format!(
            "--data {data_name}: images {:?} in {} classes, but the model was trained on {:?} in {} classes",
            data.test.image_shape(),
            data.test.classes,
            info.input,
            info.classes
        )));
    }
    let indices: Vec<usize> = (0..data.test.len()).collect();
    let acc = accuracy(model.as_mut(), &data.test, &indices, &info.normalize());
    let report = sparsity_report(model.as_ref());
    println!(
        "{} ({} / {}) on {}: test_accuracy={acc:.4} sparsity={:.4} ({} test images)",
        path.display(),
        info.model,
        info.method,
        data.source.display(),
        report.overall_sparsity,
        data.test.len()
    );
    Ok(())
}

fn run_posttrain(args: &PosttrainArgs) -> Result<()> {
    let config = args.config();
    config.validate()?;
    set_threads(config.threads)?;
    let s = posttrain::run(&config, args.force, &mut Progress::new(args.quiet))?;
    let fixup = s
        .fixup
        .as_ref()
        .map(|f| format!(" fixup_weights={}", f.changed))
        .unwrap_or_default();
    println!(
        "test_accuracy={:.4} dense_test_accuracy={:.4} sparsity={:.4} target={} params={}/{}{fixup} optimise_seconds={:.1} evaluate_seconds={:.1}",
        s.test_accuracy,
        s.dense_test_accuracy,
        s.achieved_sparsity,
        s.target_sparsity,
        s.params_nonzero,
        s.params_total,
        s.optimise_seconds,
        s.evaluate_seconds
    );
    println!("run written to {}", config.out.display());
    Ok(())
}

/// `report` of a `posttrain` run directory.
fn report_posttrain(run: &Path) -> Result<()> {
    let s = posttrain::read_summary(run)?;
    let variant = [s.variant.clone(), s.surrogate.clone(), s.density.clone()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ");
    let variant = if variant.is_empty() {
        String::new()
    } else {
        format!(" ({variant})")
    };
    let fixup = s
        .fixup
        .as_ref()
        .map(|f| format!(", fix-up {} weights", f.changed))
        .unwrap_or_default();
    println!(
        "{}: {} / {}{variant}, target {:.2}%, {} iterations on {} images: test accuracy {:.2}% (dense {:.2}%){fixup}, optimise {:.1}s",
        run.display(),
        s.model,
        s.method,
        100.0 * s.target_sparsity,
        s.iterations,
        s.calibration_images,
        100.0 * s.test_accuracy,
        100.0 * s.dense_test_accuracy,
        s.optimise_seconds
    );
    let report = SparsityReport {
        layers: s.layers.iter().map(|l| l.report.clone()).collect(),
        params_total: s.params_total,
        params_nonzero: s.params_nonzero,
        overall_sparsity: s.achieved_sparsity,
        flops_dense: s.flops_dense,
        flops_sparse: s.flops_sparse,
        low_rank: Vec::new(),
    };
    print!("{}", format_table(&report));
    Ok(())
}

fn run_report(args: &ReportArgs) -> Result<()> {
    match args.runs.as_slice() {
        [run] => report_one(run),
        runs => {
            let rows = runs
                .iter()
                .map(|run| {
                    let name = run.display().to_string();
                    if run.join(posttrain::LOG_FILE).exists() {
                        Ok(posttrain::read_summary(run)?.comparison_row(&name))
                    } else {
                        Ok(ComparisonRow::from_summary(&name, &read_summary(run)?))
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            print!("{}", markdown_table(&rows));
            Ok(())
        }
    }
}

fn report_one(run: &Path) -> Result<()> {
    if run.join(posttrain::LOG_FILE).exists() {
        return report_posttrain(run);
    }
    let s = read_summary(run)?;
    println!(
        "{}: {} / {}, {} epochs, test accuracy {:.2}% (best {:.2}% at epoch {}), {:.1}s",
        run.display(),
        s.model,
        s.method,
        s.epochs,
        100.0 * s.test_accuracy,
        100.0 * s.best_test_accuracy,
        s.best_test_epoch,
        s.wall_seconds
    );
    let report = SparsityReport {
        layers: s.layers.clone(),
        params_total: s.params_total,
        params_nonzero: s.params_nonzero,
        overall_sparsity: s.overall_sparsity,
        flops_dense: s.flops_dense,
        flops_sparse: s.flops_sparse,
        low_rank: s.low_rank.clone(),
    };
    print!("{}", format_table(&report));
    Ok(())
}

/// Ends the process quietly when stdout is a closed pipe (`sparsegrad report ... | head`), as
/// Unix tools do. Rust ignores SIGPIPE, which would make `println!` panic instead.
fn restore_default_sigpipe() {
    #[cfg(unix)]
    {
        const SIGPIPE: i32 = 13;
        const SIG_DFL: usize = 0;
        unsafe extern "C" {
            fn signal(signum: i32, handler: usize) -> usize;
        }
        // SAFETY: resetting a signal to its default disposition has no preconditions.
        unsafe {
            signal(SIGPIPE, SIG_DFL);
        }
    }
}

fn main() -> ExitCode {
    restore_default_sigpipe();
    sparsegrad::alloc::tune_allocator();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Train(args) => run_train(args),
        Command::Eval(args) => run_eval(args),
        Command::Report(args) => run_report(args),
        Command::Posttrain(args) => run_posttrain(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
