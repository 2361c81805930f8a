//! STR's options (`--s-init`, `--str-granularity`, ..., the controller's and the finish's flags)
//! and [`StrConfig`], the settings resolved and checked against the run
//! ([`StrConfig::new`]; every message names its flag). Split from `str.rs` to keep both short.

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::methods::fcpts::DensityName;
use crate::methods::options::{TrainContext, clap_defaults};
use crate::ops::sparsity::{Density, ThresholdFn};

use super::str_controller::{ControlScale, Controller};

/// Shape of the learnable thresholds (`--str-granularity`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StrGranularity {
    /// One s per layer (the paper's experiments).
    Layer,
    /// One s per output channel (dimension 0 of the weight).
    Channel,
    /// One s shared by every sparsified layer.
    Global,
    /// One s per weight entry.
    Weight,
    /// Structured: one s per low-rank factor, thresholding the norms of its rank-1 components
    /// (rows of W1, columns of W2).
    Rank,
}

/// The threshold function g (`--str-g`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StrG {
    /// g = sigmoid (the paper's unstructured experiments).
    Sigmoid,
    /// g = exp (the paper's structured, low-rank experiments).
    Exp,
}

impl StrG {
    pub fn function(self) -> ThresholdFn {
        match self {
            StrG::Sigmoid => ThresholdFn::Sigmoid,
            StrG::Exp => ThresholdFn::Exp,
        }
    }
}

/// STR's flags.
#[derive(Args, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[group(skip)]
#[serde(default)]
pub struct StrOptions {
    /// STR: initial threshold parameter s (threshold g(s)). The default -5 (g = 0.0067) prunes
    /// before the first step about 17.8% of LeNet-300's weights, 18.5% of LeNet-5's, 8.0% of
    /// ResNet-20's, 16.6% of MobileNet's and 5.5% of FastGRNN's (seed 0); the paper starts near 0
    /// (ImageNet: s = -3200), which prunes nothing in a run of a few epochs (docs/methods.md).
    #[arg(long, default_value_t = DEFAULT_S_INIT)]
    pub s_init: f64,
    /// STR: shape of the learnable thresholds (rank: low-rank factors, structured).
    #[arg(long, value_enum, default_value_t = StrGranularity::Layer)]
    pub str_granularity: StrGranularity,
    /// STR: the threshold function g.
    #[arg(long, value_enum, default_value_t = StrG::Sigmoid)]
    pub str_g: StrG,
    /// STR: weight decay of the thresholds (default: --weight-decay, as in the paper).
    #[arg(long)]
    pub threshold_decay: Option<f64>,
    /// STR with --target-sparsity: weight of the control loss |S_now - S|.
    #[arg(long, default_value_t = 1.0)]
    pub controller_weight: f64,
    /// STR with --target-sparsity: fraction of the run over which the target ramps up (0: none).
    #[arg(long, default_value_t = 0.5)]
    pub controller_ramp: f64,
    /// STR with --target-sparsity: log (|ln(1-S_now) - ln(1-S)|) | linear (|S_now - S|).
    #[arg(long, value_enum, default_value_t = ControlScale::LogDensity)]
    pub controller_loss: ControlScale,
    /// STR with --target-sparsity: density estimate of the bridge's dr/dt: histogram (100 bins,
    /// resolves the few weights near a high threshold) | kde (FCPTS eq. 12, 100 samples).
    /// Configs saved without it read as kde.
    #[arg(long, value_enum, default_value_t = DensityName::Histogram)]
    #[serde(default = "legacy_density")]
    pub controller_density: DensityName,
    /// STR with --target-sparsity: step of the Lagrange multiplier per optimiser step per unit
    /// of gap (dual ascent; 0: no multiplier). Configs saved without it read as 0.
    #[arg(long, default_value_t = DEFAULT_DUAL_LR)]
    #[serde(default = "legacy_dual_lr")]
    pub controller_dual_lr: f64,
    /// STR with --target-sparsity: exact (fix the last weights up to the exact count, warn when
    /// it moves more than 1% of the weights the target keeps) | strict (fail instead of warning)
    /// | learned (no fix-up; configs saved without it read as this).
    #[arg(long, value_enum, default_value_t = StrFinish::Exact)]
    #[serde(default = "legacy_finish")]
    pub str_finish: StrFinish,
    /// STR with --target-sparsity: fail instead of warning when the exact finish moves more than
    /// 1% of the weights the target keeps (the same as --str-finish strict).
    #[arg(long)]
    pub strict_target: bool,
}

/// How an STR run with a target ends (`--str-finish`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StrFinish {
    /// Magnitude fix-up to the exact count; warns above 1% of the kept weights moved.
    Exact,
    /// The same fix-up, but fails instead of warning (the same as `--strict-target`).
    Strict,
    /// The learned thresholds as they are (STR before the fix-up existed).
    Learned,
}

/// The default `--controller-dual-lr` (`docs/methods.md`, "Target controller", has the runs).
pub const DEFAULT_DUAL_LR: f64 = 0.01;

/// Configs saved before the multiplier existed ran without it.
fn legacy_dual_lr() -> f64 {
    0.0
}

/// Configs saved before `--controller-density` existed used the KDE.
fn legacy_density() -> DensityName {
    DensityName::Kde
}

/// Configs saved before the fix-up existed ended with the learned thresholds.
fn legacy_finish() -> StrFinish {
    StrFinish::Learned
}

impl Default for StrOptions {
    fn default() -> Self {
        clap_defaults()
    }
}

/// STR's settings, resolved from its options and the run ([`StrConfig::new`]).
#[derive(Clone, Debug)]
pub struct StrConfig {
    pub granularity: StrGranularity,
    /// g: `Sigmoid` (paper, unstructured) or `Exp` (paper, structured).
    pub g: ThresholdFn,
    pub s_init: f64,
    pub first_layer_dense: bool,
    pub last_layer_dense: bool,
    /// Weight decay of the thresholds (the paper: the weights' weight decay).
    pub threshold_decay: f64,
    pub controller: Option<Controller>,
    /// Epochs of the run (the no-pruning warning extrapolates to the last one).
    pub epochs: usize,
    /// How a run with a target ends (`--str-finish`).
    pub finish: StrFinish,
}

impl StrConfig {
    /// Checks and resolves STR's options in the run's context; messages name the flag.
    pub fn new(o: &StrOptions, context: &TrainContext) -> Result<Self> {
        if !o.s_init.is_finite() {
            return Err(Error::invalid(format!(
                "--s-init must be a finite number, got {}",
                o.s_init
            )));
        }
        if let Some(d) = o.threshold_decay
            && !(d >= 0.0 && d.is_finite())
        {
            return Err(Error::invalid(format!(
                "--threshold-decay must be a non-negative number, got {d}"
            )));
        }
        if !(o.controller_weight > 0.0 && o.controller_weight.is_finite()) {
            return Err(Error::invalid(format!(
                "--controller-weight must be a positive number, got {}",
                o.controller_weight
            )));
        }
        if !(o.controller_dual_lr >= 0.0 && o.controller_dual_lr.is_finite()) {
            return Err(Error::invalid(format!(
                "--controller-dual-lr must be a non-negative number, got {}",
                o.controller_dual_lr
            )));
        }
        if !(0.0..1.0).contains(&o.controller_ramp) {
            return Err(Error::invalid(format!(
                "--controller-ramp must be in [0, 1), got {}",
                o.controller_ramp
            )));
        }
        let finish = match (o.strict_target, o.str_finish) {
            (false, finish) => finish,
            (true, StrFinish::Learned) => {
                return Err(Error::invalid(
                    "--strict-target needs the exact finish, and --str-finish learned turns it off",
                ));
            }
            (true, _) => StrFinish::Strict,
        };
        let shared = &context.shared;
        if finish == StrFinish::Strict && shared.target_sparsity.is_none() {
            return Err(Error::invalid(
                "--strict-target and --str-finish strict need --target-sparsity",
            ));
        }
        let controller = shared.target_sparsity.map(|target| Controller {
            target,
            weight: o.controller_weight,
            density: match o.controller_density {
                DensityName::Kde => Density::paper(),
                DensityName::Histogram => Density::authors_code(),
            },
            scale: o.controller_loss,
            ramp: o.controller_ramp,
            dual_lr: o.controller_dual_lr,
        });
        if controller.is_some()
            && matches!(
                o.str_granularity,
                StrGranularity::Weight | StrGranularity::Rank
            )
        {
            return Err(Error::invalid(format!(
                "--target-sparsity needs --str-granularity layer, channel or global (with `{}` no threshold is shared by enough weights for the control loss to have a gradient)",
                serde_json::to_value(o.str_granularity)
                    .expect("serialises")
                    .as_str()
                    .unwrap_or("")
            )));
        }
        Ok(StrConfig {
            granularity: o.str_granularity,
            g: o.str_g.function(),
            s_init: o.s_init,
            first_layer_dense: shared.first_layer_dense,
            last_layer_dense: shared.last_layer_dense,
            threshold_decay: o.threshold_decay.unwrap_or(context.weight_decay),
            controller,
            epochs: context.epochs,
            finish,
        })
    }
}

/// The default `--s-init` (and the one the no-pruning warning suggests): g(s) = sigmoid(-5) =
/// 0.0067, which prunes from the first step on MNIST-scale runs without collapsing them (the
/// sweep behind it is in `docs/methods.md`, "STR": -3 prunes every weight of LeNet-300 at once,
/// -20 and below prune nothing in 20 epochs).
pub const DEFAULT_S_INIT: f64 = -5.0;
