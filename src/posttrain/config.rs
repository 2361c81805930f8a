//! What `sparsegrad posttrain` is asked to do: every command-line setting, validated once and
//! saved to the run's `config.json` and to the export's metadata.
//!
//! Defaults follow the authors' FCPTS code (ModelTC/FCPTS `run.sh` and `main.py`): SGD with
//! momentum 0.9, one learning rate for weights and threshold scores alike, weight decay 3e-4 on
//! every model parameter and 0 on the scores (`st_decay 0.0`), a one-epoch linear warm-up from 0
//! then cosine decay per iteration, KL distillation at temperature 4 scaled by T², control-loss
//! weight 1. The calibration set is 1,024 training images in batches of 64 for 1,600 iterations
//! (100 passes); `run.sh` itself uses 10,240 images (`--sub_data_size`, the paper's "10k").
//! One departure: the learning rate is 0.01, not `run.sh`'s 0.04 (tuned for batchnorm ResNets
//! on ImageNet), which makes LeNet-5 (no batchnorm) diverge within 40 iterations.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::train::config::{non_negative, one_of};

/// Methods `posttrain` accepts: FCPTS and the one-shot magnitude baselines.
pub const METHODS: &[&str] = &[
    "fcpts",
    "magnitude-uniform",
    "magnitude-erk",
    "magnitude-global",
    "magnitude-l2norm",
    "lamp",
];

/// A post-training sparsification run's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PosttrainConfig {
    /// A `model.safetensors` or `checkpoint.safetensors` written by `sparsegrad train`.
    pub checkpoint: PathBuf,
    /// Data directory (default: the data the checkpoint was trained on).
    pub data: Option<String>,
    pub method: String,
    /// Global sparsity r0 of the prunable weights, in (0, 1).
    pub target_sparsity: f64,
    /// FCPTS: `paper` (default) or `code`.
    pub variant: Option<String>,
    /// FCPTS paper variant: `clipped` (default) or `sigmoid:T`.
    pub surrogate: Option<String>,
    /// FCPTS: `kde` (paper variant default) or `histogram` (code variant default).
    pub density: Option<String>,
    /// Calibration images drawn from the run's training split.
    pub calib: usize,
    /// Optimisation iterations (one batch each).
    pub iters: usize,
    pub batch_size: usize,
    /// Learning rate of the model's parameters.
    pub lr: f64,
    /// Learning rate of FCPTS's threshold scores (default: `lr`).
    pub score_lr: Option<f64>,
    pub momentum: f64,
    /// Weight decay of the model's parameters (scores get none).
    pub weight_decay: f64,
    /// Linear warm-up from 0, in iterations (before the cosine decay).
    pub warmup: usize,
    /// Distillation temperature T of L_rec.
    pub temperature: f64,
    /// Weight of the control loss L_c (the authors' `sparsity_lambda`).
    pub control_weight: f64,
    /// Baselines: fine-tune the surviving weights (false: one-shot pruning only).
    pub finetune: bool,
    /// Iterations between lines of `posttrain.jsonl`.
    pub log_every: usize,
    /// Seed of the calibration draw and its batch order.
    pub seed: u64,
    /// Rayon threads (results are identical for any count).
    pub threads: Option<usize>,
    pub out: PathBuf,
}

impl Default for PosttrainConfig {
    fn default() -> Self {
        PosttrainConfig {
            checkpoint: PathBuf::new(),
            data: None,
            method: "fcpts".into(),
            target_sparsity: 0.9,
            variant: None,
            surrogate: None,
            density: None,
            calib: 1024,
            iters: 1600,
            batch_size: 64,
            lr: 0.01,
            score_lr: None,
            momentum: 0.9,
            weight_decay: 3e-4,
            warmup: 16,
            temperature: 4.0,
            control_weight: 1.0,
            finetune: true,
            log_every: 16,
            seed: 0,
            threads: None,
            out: PathBuf::from("runs/posttrain"),
        }
    }
}

fn positive(flag: &str, value: f64) -> Result<()> {
    if value > 0.0 && value.is_finite() {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{flag} must be a positive number, got {value}"
        )))
    }
}

fn at_least_one(flag: &str, value: usize) -> Result<()> {
    if value >= 1 {
        Ok(())
    } else {
        Err(Error::invalid(format!("{flag} must be at least 1")))
    }
}

impl PosttrainConfig {
    pub fn is_fcpts(&self) -> bool {
        self.method == "fcpts"
    }

    /// The learning rate of the threshold scores.
    pub fn score_lr(&self) -> f64 {
        self.score_lr.unwrap_or(self.lr)
    }

    /// Checks every setting that needs no file; messages name the flag and what was wrong.
    pub fn validate(&self) -> Result<()> {
        one_of("--method", &self.method, METHODS)?;
        let r0 = self.target_sparsity;
        if !(r0 > 0.0 && r0 < 1.0) {
            return Err(Error::invalid(format!(
                "--target-sparsity must be in (0, 1), got {r0}"
            )));
        }
        if self.is_fcpts() {
            // Parsing is the validation of the FCPTS flags.
            crate::posttrain::fcpts::FcptsOptions::from_config(self)?;
            if !self.finetune {
                return Err(Error::invalid(
                    "--no-finetune applies only to the magnitude baselines (FCPTS learns its thresholds while fine-tuning)",
                ));
            }
        } else {
            for (flag, given) in [
                ("--variant", self.variant.is_some()),
                ("--surrogate", self.surrogate.is_some()),
                ("--density", self.density.is_some()),
                ("--score-lr", self.score_lr.is_some()),
            ] {
                if given {
                    return Err(Error::invalid(format!(
                        "{flag} applies only to --method fcpts"
                    )));
                }
            }
        }
        at_least_one("--calib", self.calib)?;
        at_least_one("--iters", self.iters)?;
        at_least_one("--batch-size", self.batch_size)?;
        at_least_one("--log-every", self.log_every)?;
        positive("--lr", self.lr)?;
        if let Some(lr) = self.score_lr {
            positive("--score-lr", lr)?;
        }
        non_negative("--momentum", self.momentum)?;
        non_negative("--weight-decay", self.weight_decay)?;
        positive("--temperature", self.temperature)?;
        non_negative("--control-weight", self.control_weight)?;
        if self.warmup >= self.iters {
            return Err(Error::invalid(format!(
                "--warmup ({} iterations) must be shorter than --iters ({})",
                self.warmup, self.iters
            )));
        }
        if self.threads == Some(0) {
            return Err(Error::invalid("--threads must be at least 1"));
        }
        Ok(())
    }
}
