//! What `sparsegrad posttrain` is asked to do: every command-line setting, typed at the boundary
//! (the clap derive is on this struct), validated once and saved to the run's `config.json` and
//! to the export's metadata.
//!
//! Defaults are the authors' FCPTS code (ModelTC/FCPTS `run.sh` and `main.py`): SGD with
//! momentum 0.9, one learning rate for weights and threshold scores alike, weight decay 3e-4 on
//! every model parameter and 0 on the scores (`st_decay 0.0`), a one-epoch linear warm-up from 0
//! then cosine decay per iteration, KL distillation at temperature 4 scaled by T², control-loss
//! weight 1. The learning rate 0.01 is theirs too: `main.py` scales `run.sh`'s 0.04 by
//! batch / 256 (0.04 x 64 / 256 = 0.01). So is the calibration set: their data builder always
//! draws 16 batches of 64 = 1,024 training images, for 1,600 iterations (100 passes).

use std::path::PathBuf;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::methods::options::{clap_defaults, refuse_unused, settings_of};
use crate::methods::{Method, PosttrainContext, PosttrainMethod, PosttrainMethodOptions};
use crate::nn::SparseKernels;
use crate::run::flags::{at_least_one, fraction, non_negative, positive, threads, utf8_path};

/// A post-training sparsification run's settings.
#[derive(Args, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PosttrainConfig {
    /// A `model.safetensors` or `checkpoint.safetensors` written by `sparsegrad train`.
    #[arg(long, required = true)]
    pub checkpoint: Option<PathBuf>,
    /// Data directory (default: the data the checkpoint was trained on).
    #[arg(long)]
    pub data: Option<String>,
    /// The post-training method.
    #[arg(long, value_enum, default_value_t = PosttrainMethod::Fcpts)]
    pub method: PosttrainMethod,
    /// Global sparsity r0 of the prunable weights, in (0, 1).
    #[arg(long, required = true)]
    pub target_sparsity: Option<f64>,
    /// Calibration images drawn from the run's training split.
    #[arg(long, default_value_t = 1024)]
    pub calib: usize,
    /// Optimisation iterations (one batch each).
    #[arg(long, default_value_t = 1600)]
    pub iters: usize,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Learning rate of the model's parameters.
    #[arg(long, default_value_t = 0.01)]
    pub lr: f64,
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// Weight decay of the model's parameters (threshold scores get none).
    #[arg(long, default_value_t = 3e-4)]
    pub weight_decay: f64,
    /// Linear warm-up from 0, in iterations.
    #[arg(long, default_value_t = 16)]
    pub warmup: usize,
    /// Distillation temperature T of the reconstruction loss.
    #[arg(long, default_value_t = 4.0)]
    pub temperature: f64,
    /// Baselines: prune only, no reconstruction fine-tuning.
    #[arg(long)]
    pub no_finetune: bool,
    /// Iterations between lines of posttrain.jsonl.
    #[arg(long, default_value_t = 16)]
    pub log_every: usize,
    /// Seed of the calibration draw and batch order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Worker threads (results are identical for any count).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Run masked layers on the sparse kernels: `auto` where the calibrated rule (layer shape,
    /// batch, mask density; never timings) says they are faster, `on` always, `off` never.
    #[arg(long, value_enum, default_value_t = SparseKernels::Auto)]
    pub sparse_kernels: SparseKernels,
    /// Run directory (default runs/posttrain-METHOD-R0).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    #[serde(flatten)]
    pub methods: PosttrainMethodOptions,
}

impl Default for PosttrainConfig {
    fn default() -> Self {
        clap_defaults()
    }
}

impl PosttrainConfig {
    /// r0 (0 before `--target-sparsity` is set; `validate` refuses that).
    pub fn r0(&self) -> f64 {
        self.target_sparsity.unwrap_or(0.0)
    }

    /// The input checkpoint (empty before `--checkpoint` is set; `validate` refuses that).
    pub fn checkpoint(&self) -> PathBuf {
        self.checkpoint.clone().unwrap_or_default()
    }

    /// The run directory: `--out`, or `runs/posttrain-METHOD-R0`.
    pub fn out_dir(&self) -> PathBuf {
        self.out.clone().unwrap_or_else(|| {
            PathBuf::from(format!("runs/posttrain-{}-{}", self.method, self.r0()))
        })
    }

    pub fn finetune(&self) -> bool {
        !self.no_finetune
    }

    /// What the method may read of the run besides its options.
    pub fn method_context(&self) -> PosttrainContext {
        PosttrainContext {
            target_sparsity: self.r0(),
            lr: self.lr,
            finetune: self.finetune(),
            seed: self.seed,
        }
    }

    /// The method this config asks for, built from its options (which checks them).
    pub fn build_method(&self) -> Result<Box<dyn Method>> {
        self.method.build(&self.methods, &self.method_context())
    }

    /// Checks every setting that needs no file; messages name the flag and what was wrong.
    pub fn validate(&self) -> Result<()> {
        if self.checkpoint.is_none() {
            return Err(Error::invalid("--checkpoint is required"));
        }
        let r0 = self
            .target_sparsity
            .ok_or_else(|| Error::invalid("--target-sparsity is required"))?;
        if !(r0 > 0.0 && r0 < 1.0) {
            return Err(Error::invalid(format!(
                "--target-sparsity must be in (0, 1), got {r0}"
            )));
        }
        at_least_one("--calib", self.calib)?;
        at_least_one("--iters", self.iters)?;
        at_least_one("--batch-size", self.batch_size)?;
        at_least_one("--log-every", self.log_every)?;
        positive("--lr", self.lr)?;
        fraction("--momentum", self.momentum, false)?;
        non_negative("--weight-decay", self.weight_decay)?;
        positive("--temperature", self.temperature)?;
        if self.warmup >= self.iters {
            return Err(Error::invalid(format!(
                "--warmup ({} iterations) must be shorter than --iters ({})",
                self.warmup, self.iters
            )));
        }
        threads(self.threads)?;
        utf8_path("--out", self.out.as_deref())?;
        utf8_path("--checkpoint", self.checkpoint.as_deref())?;
        self.refuse_unused_settings(&|_| false)?;
        self.build_method().map(|_| ())
    }

    /// Refuses a method setting the chosen method does not read: one set to a non-default
    /// value, or one given on the command line at all (`given`: whether a setting was).
    pub fn refuse_unused_settings(&self, given: &dyn Fn(&str) -> bool) -> Result<()> {
        let mut universe = settings_of::<PosttrainMethodOptions>();
        universe.push("no_finetune".into());
        let as_map = |c: &PosttrainConfig| match serde_json::to_value(c) {
            Ok(serde_json::Value::Object(map)) => map
                .into_iter()
                .filter(|(k, _)| universe.contains(k))
                .collect::<serde_json::Map<_, _>>(),
            _ => unreachable!("a struct serialises to an object"),
        };
        refuse_unused(
            &as_map(self),
            &as_map(&PosttrainConfig::default()),
            &self.method.settings(),
            given,
            self.method.as_str(),
        )
    }
}
