//! The training loop behind `sparsegrad train`.
//!
//! Per step: forward, cross-entropy (+ the method's regulariser), a divergence check, backward,
//! `optim::step`, the method's `after_step`. Per epoch: validation and test accuracy, per-layer
//! sparsity, a `metrics.jsonl` line, and an atomic `checkpoint.safetensors` holding everything
//! needed to resume bit-identically (parameters, buffers, transform parameters, optimiser state,
//! and the loop's position). Every random draw is a function of (seed, epoch, step), so a resumed
//! run repeats exactly what an uninterrupted run does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::data::detect::load_dir;
use crate::data::{Normalize, TrainTest, augmented_batches, epoch_order, split_train_val};
use crate::error::{Error, Result};
use crate::io::checkpoint::{self, Checkpoint};
use crate::io::plot::{Curve, draw_curves, draw_sparsity_bars};
use crate::io::runlog::{EpochMetrics, LayerSparsity, MetricsLog, Summary, read_json, write_json};
use crate::methods;
use crate::metrics::correct;
use crate::models::{self, ModelSpec};
use crate::nn::Module;
use crate::optim::{
    self, Adam, AdamConfig, LrSchedule, Optimizer, ParamGroup, ParamMatch, Schedule, Sgd,
    SgdConfig, Warmup,
};
use crate::rng::derived;
use crate::sparsity::report::sparsity_report;
use crate::tape::Tape;
use crate::train::config::TrainConfig;
use crate::train::evaluate::accuracy;
use crate::train::method::{Method, StepInfo};
use crate::train::progress::Progress;

/// RNG stream of weight initialisation (see `rng::derived`).
pub const INIT_STREAM: u64 = 1;

/// File names inside a run directory.
pub const CONFIG_FILE: &str = "config.json";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const SUMMARY_FILE: &str = "summary.json";
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
pub const MODEL_FILE: &str = "model.safetensors";
pub const CURVES_FILE: &str = "curves.svg";
pub const SPARSITY_FILE: &str = "sparsity.svg";

/// How to treat an existing run directory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Continue the run in `--out` from its last checkpoint.
    pub resume: bool,
    /// Overwrite a finished or interrupted run in `--out`.
    pub force: bool,
    /// Stop once this many epochs are complete, as if interrupted (the run stays resumable;
    /// no export or summary is written). Used to test resumption and for time-boxed sessions.
    pub stop_after: Option<usize>,
}

/// What a model needs besides its weights to be rebuilt and fed data (stored in every checkpoint).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub model: String,
    pub width: f64,
    pub method: String,
    /// (channels, height, width) of one input image.
    pub input: (usize, usize, usize),
    pub classes: usize,
    pub data_kind: String,
    pub normalize_mean: Vec<f64>,
    pub normalize_std: Vec<f64>,
}

impl ModelInfo {
    /// What `models::build` needs to rebuild the architecture.
    pub fn spec(&self) -> ModelSpec {
        ModelSpec {
            name: self.model.clone(),
            input: self.input,
            classes: self.classes,
            width: self.width,
        }
    }

    pub fn normalize(&self) -> Normalize {
        Normalize {
            mean: self.normalize_mean.clone(),
            std: self.normalize_std.clone(),
        }
    }
}

/// The loop's position and history, saved in `checkpoint.safetensors` metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoopState {
    /// Epochs completed.
    pub epoch: usize,
    /// Optimiser steps taken.
    pub step: usize,
    pub best_test_acc: f64,
    pub best_test_epoch: usize,
    pub best_val_acc: Option<f64>,
    pub test_at_best_val: Option<f64>,
    /// Wall time spent before this checkpoint (all sessions).
    pub wall_seconds: f64,
}

/// JSON metadata of checkpoints and exports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub info: ModelInfo,
    pub config: TrainConfig,
    /// Absent in exports (`model.safetensors`), which are not resumable.
    pub state: Option<LoopState>,
}

impl CheckpointMeta {
    /// Metadata for `config`'s run, leaving out where it ran (`out`, `threads`): they do not
    /// change the result, and leaving them out makes the same model the same bytes wherever it
    /// was trained.
    pub fn new(info: &ModelInfo, config: &TrainConfig, state: Option<LoopState>) -> Self {
        let config = TrainConfig {
            out: PathBuf::new(),
            threads: None,
            ..config.clone()
        };
        CheckpointMeta {
            info: info.clone(),
            config,
            state,
        }
    }

    pub fn to_metadata(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(
            checkpoint::METADATA_KEY.to_string(),
            serde_json::to_string(self).expect("serialisable"),
        )])
    }

    /// Reads the metadata of a checkpoint or export written by `sparsegrad train`.
    pub fn from_checkpoint<F: crate::float::Float>(
        ckpt: &Checkpoint<F>,
        path: &Path,
    ) -> Result<Self> {
        let text = ckpt.metadata.get(checkpoint::METADATA_KEY).ok_or_else(|| {
            Error::format(
                path,
                "no sparsegrad metadata (not written by sparsegrad train)",
            )
        })?;
        serde_json::from_str(text)
            .map_err(|e| Error::format(path, format!("invalid sparsegrad metadata ({e})")))
    }
}

/// Rebuilds the model stored in a checkpoint or export written by `sparsegrad train` (or
/// `sparsegrad posttrain`): the architecture from the metadata, then the tensors. A training
/// checkpoint holds raw weights and its method's transform parameters, so the method's transforms
/// are put back first; an export holds the effective (baked) weights of a plain model.
pub fn load_model(path: &Path) -> Result<(Box<dyn Module<f32>>, CheckpointMeta)> {
    let ckpt: Checkpoint<f32> = checkpoint::load(path)?;
    let meta = CheckpointMeta::from_checkpoint(&ckpt, path)?;
    let mut model = models::build(
        &meta.info.spec(),
        &mut derived(meta.config.seed, INIT_STREAM),
    )?;
    let prefix = if meta.state.is_some() {
        methods::build(&meta.config)?.prepare(model.as_mut())?;
        "model."
    } else {
        ""
    };
    checkpoint::load_into(model.as_mut(), &ckpt, prefix, path)?;
    Ok((model, meta))
}

/// The optimiser named in the config, with the method's groups first, then the bias/batchnorm
/// weight-decay group when `--bias-decay` is set (public for programs that run their own loop).
pub fn build_optimizer(
    config: &TrainConfig,
    method: &dyn Method,
) -> Result<Box<dyn Optimizer<f32>>> {
    let mut groups: Vec<ParamGroup> = method.param_groups();
    if let Some(d) = config.bias_decay {
        groups.push(ParamGroup::new(ParamMatch::BiasesAndNorms).with_weight_decay(d));
    }
    let mut opt: Box<dyn Optimizer<f32>> = match config.optimizer.as_str() {
        "sgd" => Box::new(Sgd::try_new(SgdConfig {
            lr: config.lr,
            momentum: config.momentum,
            nesterov: config.nesterov,
            weight_decay: config.weight_decay,
            ..SgdConfig::default()
        })?),
        name => {
            let base = if name == "adamw" {
                AdamConfig::adamw()
            } else {
                AdamConfig::adam()
            };
            Box::new(Adam::try_new(AdamConfig {
                lr: config.lr,
                weight_decay: config.weight_decay,
                ..base
            })?)
        }
    };
    opt.set_groups(groups)?;
    Ok(opt)
}

/// The learning-rate schedule over `units` (epochs or steps) of the run.
fn build_schedule(config: &TrainConfig, units: usize) -> Result<LrSchedule> {
    let warmup = config.warmup.as_deref().map(Warmup::parse).transpose()?;
    let warm = warmup.as_ref().map_or(0, |w| w.units);
    if warm >= units {
        return Err(Error::invalid(format!(
            "--warmup ({warm} {}s) must be shorter than the run ({units} {}s)",
            config.schedule_unit, config.schedule_unit
        )));
    }
    Ok(LrSchedule::new(
        config.lr,
        warmup,
        Schedule::parse(&config.schedule, units - warm)?,
    ))
}

fn check_out_dir(config: &TrainConfig, options: RunOptions) -> Result<()> {
    let out = &config.out;
    let holds_run = [CONFIG_FILE, CHECKPOINT_FILE, MODEL_FILE]
        .iter()
        .any(|f| out.join(f).exists());
    if options.resume {
        return Ok(()); // checked by `train` before anything else
    }
    if holds_run && !options.force {
        return Err(Error::invalid(format!(
            "{} already holds a run; pass --force to overwrite it or --resume to continue it",
            out.display()
        )));
    }
    if holds_run {
        for f in [
            CONFIG_FILE,
            METRICS_FILE,
            SUMMARY_FILE,
            CHECKPOINT_FILE,
            MODEL_FILE,
            CURVES_FILE,
            SPARSITY_FILE,
        ] {
            let _ = std::fs::remove_file(out.join(f));
        }
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))
}

/// A config as `--flag -> value`, method settings lifted to the top level.
fn flags(config: &TrainConfig) -> BTreeMap<String, serde_json::Value> {
    let serde_json::Value::Object(top) = serde_json::to_value(config).expect("config serialises")
    else {
        unreachable!("a struct serialises to an object")
    };
    let mut out = BTreeMap::new();
    for (key, value) in top {
        match value {
            serde_json::Value::Object(nested) => {
                out.extend(nested.into_iter().map(|(k, v)| (k.replace('_', "-"), v)))
            }
            v => {
                out.insert(key.replace('_', "-"), v);
            }
        }
    }
    out
}

/// The settings in which a resumed run's config differs from the saved one (`--threads` and
/// `--out` may differ: results do not depend on them).
fn resume_conflicts(saved: &TrainConfig, asked: &TrainConfig) -> Vec<String> {
    let (saved, asked) = (flags(saved), flags(asked));
    saved
        .iter()
        .filter(|(flag, _)| !matches!(flag.as_str(), "threads" | "out"))
        .filter_map(|(flag, was)| {
            let now = asked.get(flag).unwrap_or(&serde_json::Value::Null);
            (was != now).then(|| format!("--{flag} was {was}, now {now}"))
        })
        .collect()
}

/// Everything a run needs, built from its config.
struct Setup {
    data: TrainTest,
    norm: Normalize,
    train_idx: Vec<usize>,
    val_idx: Vec<usize>,
    test_idx: Vec<usize>,
    model: Box<dyn Module<f32>>,
    method: Box<dyn Method>,
    opt: Box<dyn Optimizer<f32>>,
    info: ModelInfo,
}

fn setup(config: &TrainConfig) -> Result<Setup> {
    let data = load_dir(Path::new(&config.data))?;
    let norm = data.default_normalize();
    let (train_idx, val_idx) = split_train_val(data.train.len(), config.val_split, config.seed)
        .map_err(|e| Error::invalid(format!("--val-split: {e}")))?;
    let test_idx: Vec<usize> = (0..data.test.len()).collect();
    let input = data.train.image_shape();
    let classes = data.train.classes;
    let spec = ModelSpec {
        name: config.model.clone(),
        input,
        classes,
        width: config.width,
    };
    let mut model = models::build(&spec, &mut derived(config.seed, INIT_STREAM))?;
    let mut method = methods::build(config)?;
    method.prepare(model.as_mut())?;
    let opt = build_optimizer(config, method.as_ref())?;
    let info = ModelInfo {
        model: config.model.clone(),
        width: config.width,
        method: config.method.clone(),
        input,
        classes,
        data_kind: data.kind.name().to_string(),
        normalize_mean: norm.mean.clone(),
        normalize_std: norm.std.clone(),
    };
    Ok(Setup {
        data,
        norm,
        train_idx,
        val_idx,
        test_idx,
        model,
        method,
        opt,
        info,
    })
}

/// How a call to [`train`] ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// All epochs done; the run directory holds the export, summary and figures.
    Finished(Box<Summary>),
    /// Stopped early as asked by [`RunOptions::stop_after`]; resumable.
    Stopped { epochs_done: usize },
}

/// Trains as `config` says, writing the run directory `config.out`.
pub fn train(
    config: &TrainConfig,
    options: RunOptions,
    progress: &mut Progress,
) -> Result<Outcome> {
    config.validate()?;
    // Everything that can fail on bad input is checked before the run directory is touched, so
    // a mistake never costs an existing run.
    let out: PathBuf = config.out.clone();
    let resume_from = if options.resume {
        let path = out.join(CHECKPOINT_FILE);
        if !path.exists() {
            return Err(Error::invalid(format!(
                "--resume: {} holds no {CHECKPOINT_FILE} to resume from",
                out.display()
            )));
        }
        let ckpt: Checkpoint<f32> = checkpoint::load(&path)?;
        let meta = CheckpointMeta::from_checkpoint(&ckpt, &path)?;
        let conflicts = resume_conflicts(&meta.config, config);
        if !conflicts.is_empty() {
            return Err(Error::invalid(format!(
                "--resume: the run in {} was started with other settings: {}",
                out.display(),
                conflicts.join("; ")
            )));
        }
        let state = meta
            .state
            .ok_or_else(|| Error::format(&path, "an export, not a resumable checkpoint"))?;
        Some((ckpt, state, path))
    } else {
        None
    };
    let mut s = setup(config)?;
    let steps_per_epoch = s.train_idx.len().div_ceil(config.batch_size);
    let total_steps = steps_per_epoch * config.epochs;
    let units = if config.schedule_unit == "step" {
        total_steps
    } else {
        config.epochs
    };
    let schedule = build_schedule(config, units)?;
    s.method.check_run(steps_per_epoch, total_steps)?;
    let mut state = LoopState {
        epoch: 0,
        step: 0,
        best_test_acc: 0.0,
        best_test_epoch: 0,
        best_val_acc: None,
        test_at_best_val: None,
        wall_seconds: 0.0,
    };
    if let Some((ckpt, saved, path)) = resume_from {
        checkpoint::load_into(s.model.as_mut(), &ckpt, "model.", &path)?;
        optim::load_state(
            s.opt.as_mut(),
            s.model.as_ref(),
            &ckpt.with_prefix("optimizer."),
        )?;
        state = saved;
    }
    check_out_dir(config, options)?;
    write_json(&out.join(CONFIG_FILE), config)?;
    let mut log = MetricsLog::open(&out.join(METRICS_FILE), state.epoch)?;
    let augment = s.data.kind.default_augment(config.seed);
    let session_start = Instant::now();
    let wall_before = state.wall_seconds;

    let last_epoch = options
        .stop_after
        .map_or(config.epochs, |n| n.min(config.epochs));
    for epoch in state.epoch..last_epoch {
        let epoch_start = Instant::now();
        if config.schedule_unit == "epoch" {
            schedule.apply(s.opt.as_mut(), epoch);
        }
        progress.start_epoch(
            &format!("epoch {}/{}", epoch + 1, config.epochs),
            steps_per_epoch,
        );
        let order = epoch_order(&s.train_idx, config.seed, epoch);
        let (mut loss_sum, mut right, mut seen) = (0.0f64, 0usize, 0usize);
        for batch in augmented_batches::<f32>(
            &s.data.train,
            &order,
            config.batch_size,
            &s.norm,
            augment.as_ref(),
            epoch,
        ) {
            let info = StepInfo {
                epoch,
                step: state.step,
                steps_per_epoch,
                total_steps,
            };
            if config.schedule_unit == "step" {
                schedule.apply(s.opt.as_mut(), state.step);
            }
            let tape = Tape::new();
            let logits = s.model.forward(tape.constant(batch.images));
            let mut loss = logits.cross_entropy(&batch.labels, config.label_smoothing);
            if let Some(extra) = s.method.regulariser(s.model.as_ref(), &tape, &info) {
                loss = loss + extra;
            }
            let value = loss.item() as f64;
            if !value.is_finite() {
                return Err(diverged(
                    &out,
                    epoch,
                    state.step,
                    &format!("the loss became {value}"),
                ));
            }
            right += correct(&logits.value(), &batch.labels);
            seen += batch.labels.len();
            loss_sum += value * batch.labels.len() as f64;
            let grads = loss.backward();
            optim::step(s.opt.as_mut(), s.model.as_mut(), &grads);
            s.method.after_step(s.model.as_mut(), &info)?;
            state.step += 1;
            progress.step(batch.labels.len(), loss_sum / seen as f64);
        }
        if let Some(name) = first_non_finite(s.model.as_ref()) {
            return Err(diverged(
                &out,
                epoch,
                state.step,
                &format!("parameter {name} is no longer finite"),
            ));
        }
        for warning in s.method.after_epoch(s.model.as_mut(), epoch) {
            progress.note(&format!("warning: {warning}"));
        }
        let val_acc = (!s.val_idx.is_empty())
            .then(|| accuracy(s.model.as_mut(), &s.data.train, &s.val_idx, &s.norm));
        let test_acc = accuracy(s.model.as_mut(), &s.data.test, &s.test_idx, &s.norm);
        let report = sparsity_report(s.model.as_ref());
        state.epoch = epoch + 1;
        if test_acc > state.best_test_acc {
            (state.best_test_acc, state.best_test_epoch) = (test_acc, epoch + 1);
        }
        if let Some(v) = val_acc
            && state.best_val_acc.is_none_or(|b| v > b)
        {
            (state.best_val_acc, state.test_at_best_val) = (Some(v), Some(test_acc));
        }
        state.wall_seconds = wall_before + session_start.elapsed().as_secs_f64();
        let metrics = EpochMetrics {
            epoch: epoch + 1,
            lr: s.opt.lr(),
            train_loss: loss_sum / seen.max(1) as f64,
            train_acc: right as f64 / seen.max(1) as f64,
            val_acc,
            test_acc,
            sparsity: report.overall_sparsity,
            seconds: epoch_start.elapsed().as_secs_f64(),
            layers: report.layers.iter().map(LayerSparsity::from).collect(),
        };
        log.append(&metrics)?;
        save_checkpoint(
            &out,
            s.model.as_ref(),
            s.opt.as_ref(),
            &s.info,
            config,
            &state,
        )?;
        progress.finish_epoch(&epoch_line(&metrics, config.epochs));
    }

    if last_epoch < config.epochs {
        return Ok(Outcome::Stopped {
            epochs_done: last_epoch,
        });
    }
    // Thresholds as the transforms applied them: `finish` may bake the transforms away.
    let thresholds: BTreeMap<String, f64> = sparsity_report(s.model.as_ref())
        .layers
        .into_iter()
        .filter_map(|l| Some((l.name, l.threshold?)))
        .collect();
    s.method.finish(s.model.as_mut());
    let meta = CheckpointMeta::new(&s.info, config, None);
    checkpoint::save(
        &out.join(MODEL_FILE),
        &checkpoint::export_tensors(s.model.as_ref()),
        &meta.to_metadata(),
    )?;
    let final_test = accuracy(s.model.as_mut(), &s.data.test, &s.test_idx, &s.norm);
    let mut report = sparsity_report(s.model.as_ref());
    for layer in &mut report.layers {
        layer.threshold = layer.threshold.or(thresholds.get(&layer.name).copied());
    }
    let summary = Summary {
        model: config.model.clone(),
        method: config.method.clone(),
        epochs: config.epochs,
        test_accuracy: final_test,
        best_test_accuracy: state.best_test_acc.max(final_test),
        best_test_epoch: state.best_test_epoch,
        test_accuracy_at_best_val: state.test_at_best_val,
        overall_sparsity: report.overall_sparsity,
        params_total: report.params_total,
        params_nonzero: report.params_nonzero,
        flops_dense: report.flops_dense,
        flops_sparse: report.flops_sparse,
        layers: report.layers.clone(),
        low_rank: report.low_rank.clone(),
        wall_seconds: wall_before + session_start.elapsed().as_secs_f64(),
        config: serde_json::to_value(config).expect("config serialises"),
    };
    write_json(&out.join(SUMMARY_FILE), &summary)?;
    draw_run_figures(&out, &summary)?;
    Ok(Outcome::Finished(Box::new(summary)))
}

/// One log line per epoch (stdout).
fn epoch_line(m: &EpochMetrics, epochs: usize) -> String {
    let val = m
        .val_acc
        .map(|v| format!("  val {:.2}%", 100.0 * v))
        .unwrap_or_default();
    format!(
        "epoch {:>3}/{epochs}  lr {:.5}  loss {:.4}  train {:.2}%{val}  test {:.2}%  sparsity {:.2}%  {:.1}s",
        m.epoch,
        m.lr,
        m.train_loss,
        100.0 * m.train_acc,
        100.0 * m.test_acc,
        100.0 * m.sparsity,
        m.seconds
    )
}

fn save_checkpoint(
    out: &Path,
    model: &dyn Module<f32>,
    opt: &dyn Optimizer<f32>,
    info: &ModelInfo,
    config: &TrainConfig,
    state: &LoopState,
) -> Result<()> {
    let mut tensors: Vec<(String, crate::tape::Tensor<f32>)> = checkpoint::state_tensors(model)
        .into_iter()
        .map(|(n, t)| (format!("model.{n}"), t))
        .collect();
    tensors.extend(
        opt.state()
            .into_iter()
            .map(|(n, t)| (format!("optimizer.{n}"), t)),
    );
    let meta = CheckpointMeta::new(info, config, Some(state.clone()));
    checkpoint::save(&out.join(CHECKPOINT_FILE), &tensors, &meta.to_metadata())
}

fn first_non_finite(model: &dyn Module<f32>) -> Option<String> {
    let mut bad = None;
    model.visit("", &mut |name, p| {
        if bad.is_none() && p.value().iter().any(|v| !v.is_finite()) {
            bad = Some(name.to_string());
        }
    });
    bad
}

fn diverged(out: &Path, epoch: usize, step: usize, what: &str) -> Error {
    let kept = if out.join(CHECKPOINT_FILE).exists() {
        format!(
            "the last good checkpoint is {}",
            out.join(CHECKPOINT_FILE).display()
        )
    } else {
        "no checkpoint was written yet".to_string()
    };
    Error::Diverged(format!(
        "training diverged in epoch {} at step {}: {what}; {kept} (try a smaller --lr)",
        epoch + 1,
        step + 1
    ))
}

/// `curves.svg` and `sparsity.svg` of a finished run, from its metrics and summary.
pub fn draw_run_figures(out: &Path, summary: &Summary) -> Result<()> {
    let metrics = MetricsLog::read(&out.join(METRICS_FILE))?;
    let points = |f: &dyn Fn(&EpochMetrics) -> Option<f64>| -> Vec<(f64, f64)> {
        metrics
            .iter()
            .filter_map(|m| f(m).map(|v| (m.epoch as f64, v)))
            .collect()
    };
    let losses = [Curve {
        label: "train loss",
        points: points(&|m| Some(m.train_loss)),
    }];
    let mut accs = vec![
        Curve {
            label: "train",
            points: points(&|m| Some(m.train_acc)),
        },
        Curve {
            label: "test",
            points: points(&|m| Some(m.test_acc)),
        },
    ];
    if metrics.iter().any(|m| m.val_acc.is_some()) {
        accs.insert(
            1,
            Curve {
                label: "val",
                points: points(&|m| m.val_acc),
            },
        );
    }
    draw_curves(&out.join(CURVES_FILE), &losses, &accs)?;
    let title = format!(
        "{} / {}: {:.2}% sparse, test {:.2}%",
        summary.model,
        summary.method,
        100.0 * summary.overall_sparsity,
        100.0 * summary.test_accuracy
    );
    draw_sparsity_bars(&out.join(SPARSITY_FILE), &title, &summary.layers)
}

/// Reads a run directory's summary (for `report`).
pub fn read_summary(run: &Path) -> Result<Summary> {
    let path = run.join(SUMMARY_FILE);
    if !path.exists() {
        return Err(Error::invalid(format!(
            "{} holds no {SUMMARY_FILE} (not a finished sparsegrad run)",
            run.display()
        )));
    }
    read_json(&path)
}
