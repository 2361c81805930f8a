//! What a training run is asked to do: every command-line setting, typed at the boundary (the
//! clap derive is on this struct; `sparsegrad train` flattens it), validated once, saved to the
//! run's `config.json` and to checkpoint metadata (so `--resume` and `eval` rebuild the same run).
//!
//! Defaults are written once, in the `#[arg]` attributes; `Default` reads them back, and every
//! field missing from an older saved config reads as its default (`#[serde(default)]`).

use std::path::PathBuf;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::methods::options::{clap_defaults, refuse_unused};
use crate::methods::{Method, SharedOptions, TrainContext, TrainMethod, TrainMethodOptions};
use crate::models::ModelName;
use crate::nn::SparseKernels;
use crate::optim::{OptimizerKind, ScheduleUnit};
use crate::run::flags::{fraction, non_negative, threads, utf8_path};

/// The method settings of a run: the shared ones, then every method's own options (flattened:
/// in `config.json` they form one flat `sparsity` object, as they always have).
#[derive(Args, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[group(skip)]
#[serde(default)]
pub struct SparsityConfig {
    #[command(flatten)]
    #[serde(flatten)]
    pub shared: SharedOptions,
    #[command(flatten)]
    #[serde(flatten)]
    pub methods: TrainMethodOptions,
}

/// A training run's settings.
#[derive(Args, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// The model to train.
    #[arg(long, value_enum, default_value_t = ModelName::Lenet300)]
    pub model: ModelName,
    /// Channel-width multiplier (MobileNet's alpha; FastGRNN's hidden size is 32 x width).
    #[arg(long, default_value_t = 1.0)]
    pub width: f64,
    /// `mnist-10k` (bundled) or a directory of MNIST-format IDX files or CIFAR-10/100 binaries.
    #[arg(long, default_value = "mnist-10k")]
    pub data: String,
    /// The sparsification method.
    #[arg(long, value_enum, default_value_t = TrainMethod::Dense)]
    pub method: TrainMethod,
    /// Epochs (of each round, for iterative methods).
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    #[arg(long, value_enum, default_value_t = OptimizerKind::Sgd)]
    pub optimizer: OptimizerKind,
    #[arg(long, default_value_t = 0.05)]
    pub lr: f64,
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// Nesterov momentum (SGD).
    #[arg(long)]
    pub nesterov: bool,
    #[arg(long, default_value_t = 5e-4)]
    pub weight_decay: f64,
    /// Weight decay of biases and batchnorm parameters (default: --weight-decay).
    #[arg(long)]
    pub bias_decay: Option<f64>,
    /// constant | step:N:GAMMA | multistep:M1,M2:GAMMA | cosine | cosine:ETA_MIN
    #[arg(long, default_value = "cosine")]
    pub schedule: String,
    /// Linear warm-up: LENGTH or LENGTH:START_FACTOR, in schedule units.
    #[arg(long)]
    pub warmup: Option<String>,
    /// What the schedule counts.
    #[arg(long, value_enum, default_value_t = ScheduleUnit::Epoch)]
    pub schedule_unit: ScheduleUnit,
    #[arg(long, default_value_t = 0.0)]
    pub label_smoothing: f64,
    /// Fraction of the training set held out for validation.
    #[arg(long, default_value_t = 0.1)]
    pub val_split: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Worker threads (results are identical for any count). While the run works, the threads
    /// other than the main one wait for work by spinning, not sleeping (their cores show busy),
    /// and nap once idle for some milliseconds.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Run masked layers on the sparse kernels: `auto` where the calibrated rule (layer shape,
    /// batch, mask density; never timings) says they are faster, `on` always, `off` never.
    #[arg(long, value_enum, default_value_t = SparseKernels::Auto)]
    #[serde(default = "sparse_kernels_before_the_flag")]
    pub sparse_kernels: SparseKernels,
    /// Run directory (default runs/MODEL-METHOD).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub sparsity: SparsityConfig,
}

/// Runs saved before `--sparse-kernels` existed ran dense: they resume the same way.
fn sparse_kernels_before_the_flag() -> SparseKernels {
    SparseKernels::Off
}

impl Default for TrainConfig {
    fn default() -> Self {
        clap_defaults()
    }
}

impl TrainConfig {
    /// The run directory: `--out`, or `runs/MODEL-METHOD`.
    pub fn out_dir(&self) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("runs/{}-{}", self.model, self.method)))
    }

    /// What the method may read of the run besides its options.
    pub fn method_context(&self) -> TrainContext {
        TrainContext {
            shared: self.sparsity.shared.clone(),
            epochs: self.epochs,
            lr: self.lr,
            weight_decay: self.weight_decay,
            seed: self.seed,
        }
    }

    /// The method this config asks for, built from its options (which checks them).
    pub fn build_method(&self) -> Result<Box<dyn Method>> {
        self.method
            .build(&self.sparsity.methods, &self.method_context())
    }

    /// Checks every setting; messages name the flag and what was wrong.
    pub fn validate(&self) -> Result<()> {
        if !(self.width > 0.0 && self.width.is_finite()) {
            return Err(Error::invalid(format!(
                "--width must be a positive number, got {}",
                self.width
            )));
        }
        if self.epochs == 0 {
            return Err(Error::invalid("--epochs must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(Error::invalid("--batch-size must be at least 1"));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(Error::invalid(format!(
                "--lr must be a positive number, got {}",
                self.lr
            )));
        }
        fraction("--momentum", self.momentum, false)?;
        non_negative("--weight-decay", self.weight_decay)?;
        if let Some(d) = self.bias_decay {
            non_negative("--bias-decay", d)?;
        }
        if !(0.0..=1.0).contains(&self.label_smoothing) {
            return Err(Error::invalid(format!(
                "--label-smoothing must be in [0, 1], got {}",
                self.label_smoothing
            )));
        }
        fraction("--val-split", self.val_split, false)?;
        threads(self.threads)?;
        utf8_path("--out", self.out.as_deref())?;
        if self.nesterov && (self.optimizer != OptimizerKind::Sgd || self.momentum == 0.0) {
            return Err(Error::invalid(
                "--nesterov needs --optimizer sgd and a non-zero --momentum",
            ));
        }
        if let Some(t) = self.sparsity.shared.target_sparsity {
            fraction("--target-sparsity", t, true)?;
        }
        self.refuse_unused_settings(&|_| false)?;
        self.build_method().map(|_| ())
    }

    /// Refuses a method setting the chosen method does not read: one set to a non-default
    /// value, or one given on the command line at all (`given`: whether a setting was).
    pub fn refuse_unused_settings(&self, given: &dyn Fn(&str) -> bool) -> Result<()> {
        let as_map = |c: &SparsityConfig| match serde_json::to_value(c) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => unreachable!("a struct serialises to an object"),
        };
        refuse_unused(
            &as_map(&self.sparsity),
            &as_map(&SparsityConfig::default()),
            &self.method.settings(),
            given,
            self.method.as_str(),
        )
    }
}
