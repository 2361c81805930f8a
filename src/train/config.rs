//! What a training run is asked to do: every command-line setting, validated once, saved to the
//! run's `config.json` and to checkpoint metadata (so `--resume` and `eval` rebuild the same run).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Model names `train` accepts.
pub const MODELS: &[&str] = &[
    "lenet300",
    "lenet5",
    "resnet20",
    "resnet32",
    "resnet56",
    "mobilenet",
    "fastgrnn",
];
/// Methods `train` accepts.
pub const METHODS: &[&str] = &["dense", "str", "gmp", "magnitude"];
/// Optimisers `train` accepts.
pub const OPTIMIZERS: &[&str] = &["sgd", "adam", "adamw"];

/// Settings of the sparsification methods (each method reads the ones it needs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SparsityConfig {
    /// Global sparsity to reach (STR's controller, GMP's final sparsity, one-shot magnitude).
    pub target_sparsity: Option<f64>,
    pub first_layer_dense: bool,
    pub last_layer_dense: bool,
    /// STR: initial threshold parameter s (g(s) is the initial threshold); default -5, see
    /// `methods::str::DEFAULT_S_INIT`.
    pub s_init: f64,
    /// STR: layer | channel | global | weight | rank (structured: low-rank factors).
    pub str_granularity: String,
    /// STR: sigmoid | exp.
    pub str_g: String,
    /// STR: weight decay of the thresholds (default: the weights' weight decay, as in the paper).
    pub threshold_decay: Option<f64>,
    /// STR with --target-sparsity: weight lambda_c of the control loss lambda_c |S_now - S|.
    pub controller_weight: f64,
    /// STR with --target-sparsity: fraction of the run over which the controller's target ramps
    /// up (0: the full target from the first step).
    pub controller_ramp: f64,
    /// STR with --target-sparsity: `log` (|ln(1 - S_now) - ln(1 - S)|) or `linear` (|S_now - S|).
    pub controller_loss: String,
    /// GMP: first, last optimiser step of the pruning schedule, and steps between prunings.
    pub prune_start: Option<usize>,
    pub prune_end: Option<usize>,
    pub prune_every: usize,
    /// One-shot magnitude pruning: the epoch after which to prune (then fine-tune).
    pub prune_epoch: Option<usize>,
}

impl Default for SparsityConfig {
    fn default() -> Self {
        SparsityConfig {
            target_sparsity: None,
            first_layer_dense: false,
            last_layer_dense: false,
            s_init: crate::methods::str::DEFAULT_S_INIT,
            str_granularity: "layer".into(),
            str_g: "sigmoid".into(),
            threshold_decay: None,
            controller_weight: 1.0,
            controller_ramp: 0.5,
            controller_loss: "log".into(),
            prune_start: None,
            prune_end: None,
            prune_every: 100,
            prune_epoch: None,
        }
    }
}

/// A training run's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub model: String,
    /// Channel-width multiplier of the model (MobileNet's alpha; 1 elsewhere).
    pub width: f64,
    /// `mnist-10k` (the bundled set) or a directory of IDX or CIFAR files.
    pub data: String,
    pub method: String,
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: String,
    pub lr: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    /// Weight decay of biases and batchnorm parameters (default: same as the weights).
    pub bias_decay: Option<f64>,
    /// `constant`, `step:N:G`, `multistep:M1,M2:G`, `cosine`, `cosine:ETA_MIN`.
    pub schedule: String,
    /// Linear warm-up length (in schedule units) and optional start factor, e.g. `5` or `5:0.1`.
    pub warmup: Option<String>,
    /// Whether the schedule advances per epoch (`epoch`) or per optimiser step (`step`).
    pub schedule_unit: String,
    pub label_smoothing: f64,
    /// Fraction of the training set held out for validation.
    pub val_split: f64,
    pub seed: u64,
    /// Rayon threads (results are bit-identical whatever the count).
    pub threads: Option<usize>,
    pub out: PathBuf,
    pub sparsity: SparsityConfig,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            model: "lenet300".into(),
            width: 1.0,
            data: "mnist-10k".into(),
            method: "dense".into(),
            epochs: 10,
            batch_size: 64,
            optimizer: "sgd".into(),
            lr: 0.05,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 5e-4,
            bias_decay: None,
            schedule: "cosine".into(),
            warmup: None,
            schedule_unit: "epoch".into(),
            label_smoothing: 0.0,
            val_split: 0.1,
            seed: 0,
            threads: None,
            out: PathBuf::from("runs/lenet300-dense"),
            sparsity: SparsityConfig::default(),
        }
    }
}

pub(crate) fn one_of(flag: &str, value: &str, allowed: &[&str]) -> Result<()> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "unknown {flag} `{value}` (expected one of: {})",
            allowed.join(", ")
        )))
    }
}

pub(crate) fn fraction(flag: &str, value: f64, lo_open: bool) -> Result<()> {
    let ok = if lo_open {
        value > 0.0 && value < 1.0
    } else {
        (0.0..1.0).contains(&value)
    };
    if ok {
        Ok(())
    } else {
        let range = if lo_open { "(0, 1)" } else { "[0, 1)" };
        Err(Error::invalid(format!(
            "{flag} must be in {range}, got {value}"
        )))
    }
}

pub(crate) fn non_negative(flag: &str, value: f64) -> Result<()> {
    if value >= 0.0 && value.is_finite() {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{flag} must be a non-negative number, got {value}"
        )))
    }
}

impl TrainConfig {
    /// Checks every setting; messages name the flag and what was wrong.
    pub fn validate(&self) -> Result<()> {
        one_of("--model", &self.model, MODELS)?;
        if !(self.width > 0.0 && self.width.is_finite()) {
            return Err(Error::invalid(format!(
                "--width must be a positive number, got {}",
                self.width
            )));
        }
        one_of("--method", &self.method, METHODS)?;
        one_of("--optimizer", &self.optimizer, OPTIMIZERS)?;
        one_of("--schedule-unit", &self.schedule_unit, &["epoch", "step"])?;
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
        non_negative("--momentum", self.momentum)?;
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
        if self.threads == Some(0) {
            return Err(Error::invalid("--threads must be at least 1"));
        }
        if self.nesterov && (self.optimizer != "sgd" || self.momentum == 0.0) {
            return Err(Error::invalid(
                "--nesterov needs --optimizer sgd and a non-zero --momentum",
            ));
        }
        let s = &self.sparsity;
        if let Some(t) = s.target_sparsity {
            fraction("--target-sparsity", t, true)?;
        }
        one_of(
            "--str-granularity",
            &s.str_granularity,
            &["layer", "channel", "global", "weight", "rank"],
        )?;
        one_of("--str-g", &s.str_g, &["sigmoid", "exp"])?;
        if let Some(d) = s.threshold_decay {
            non_negative("--threshold-decay", d)?;
        }
        if !(s.controller_weight > 0.0 && s.controller_weight.is_finite()) {
            return Err(Error::invalid(format!(
                "--controller-weight must be a positive number, got {}",
                s.controller_weight
            )));
        }
        fraction("--controller-ramp", s.controller_ramp, false)?;
        one_of("--controller-loss", &s.controller_loss, &["log", "linear"])?;
        if !s.s_init.is_finite() {
            return Err(Error::invalid(format!(
                "--s-init must be a finite number, got {}",
                s.s_init
            )));
        }
        if self.method == "str" {
            // STR's own combinations of settings (one place: the method's config).
            crate::methods::str::StrConfig::from_train_config(self)?;
        }
        if s.prune_every == 0 {
            return Err(Error::invalid("--prune-every must be at least 1"));
        }
        if matches!(self.method.as_str(), "gmp" | "magnitude") && s.target_sparsity.is_none() {
            return Err(Error::invalid(format!(
                "--method {} needs --target-sparsity",
                self.method
            )));
        }
        if let (Some(a), Some(b)) = (s.prune_start, s.prune_end)
            && a >= b
        {
            return Err(Error::invalid(format!(
                "--prune-start ({a}) must be before --prune-end ({b})"
            )));
        }
        if s.prune_epoch == Some(0) {
            return Err(Error::invalid(
                "--prune-epoch must be at least 1 (the epochs trained dense before pruning)",
            ));
        }
        if self.method == "magnitude" && self.epochs < 2 {
            return Err(Error::invalid(format!(
                "--method magnitude needs --epochs 2 or more (dense training, then fine-tuning), got {}",
                self.epochs
            )));
        }
        if let Some(e) = s.prune_epoch
            && e >= self.epochs
        {
            return Err(Error::invalid(format!(
                "--prune-epoch ({e}) must be before the last epoch (--epochs {})",
                self.epochs
            )));
        }
        Ok(())
    }
}
