//! STR: soft threshold reparameterization (Kusupati et al., ICML 2020), `--method str`.
//!
//! Every sparsified weight computes with W_eff = sign(W) relu(|W| - g(s)) (`SoftThreshold`), s
//! learnable, one per layer (the paper's experiments), per output channel, per weight, or one
//! global s; weight decay on W and s (same lambda by default, as in the paper) drives the
//! thresholds up and the weights below them. There is no target in the paper: sparsity results
//! from (s_init, lambda, lr x steps).
//!
//! Our additions, off unless asked:
//! - a target controller (`--target-sparsity S`): the FCPTS control loss (Gong et al. 2024,
//!   eq. 3) lambda_c |f(S_now) - f(S)|, with S_now = sum_l n_l r_l / N over all prunable weights
//!   and r_l = `sparsity_rate(W_l, g(s_l))` (eq. 10, differentiable in s through the KDE bridge,
//!   eq. 11), on the log-density scale f(S) = -ln(1 - S) by default and with a ramped target
//!   (see [`Controller::loss`]), so the thresholds are pulled to the requested global sparsity;
//! - a warning when the thresholds stay ~0 and will not prune anything in this run;
//! - structured STR (`--str-granularity rank`): group soft thresholds on the rank-1 components
//!   of low-rank factorised weights (FastGRNN's W = W2 W1), which lowers their rank.
//!
//! `docs/methods.md` ("STR") has the equations, defaults and how each was verified.

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::methods::options::{TrainContext, clap_defaults};
use crate::methods::plugin::{Method, MethodState, Plugin, StepInfo};
use crate::methods::prune::{prunable_weights, uniform_prune_counts};
use crate::nn::{Module, Weight};
use crate::ops::sparsity::{Density, ThresholdFn};
use crate::optim::{ParamGroup, ParamMatch};
use crate::sparsity::{Granularity, GroupSoftThreshold, SoftThreshold};
use crate::tape::{Tape, Var};

pub use super::str_controller::{ControlScale, Controller, sparsity_on};
pub use super::str_watch::{NEGLIGIBLE_THRESHOLD, NoPruningWatch};

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
    /// STR: initial threshold parameter s (threshold g(s); -5 prunes from the start on MNIST-scale
    /// runs, the paper's ImageNet -3200 prunes nothing in a short run).
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
        if !(0.0..1.0).contains(&o.controller_ramp) {
            return Err(Error::invalid(format!(
                "--controller-ramp must be in [0, 1), got {}",
                o.controller_ramp
            )));
        }
        let shared = &context.shared;
        let controller = shared.target_sparsity.map(|target| Controller {
            target,
            weight: o.controller_weight,
            density: Density::paper(),
            scale: o.controller_loss,
            ramp: o.controller_ramp,
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
        })
    }
}

/// The STR method.
pub struct Str {
    config: StrConfig,
    /// Number of weights in all prunable layers (the controller's N).
    total_weights: usize,
    /// The no-pruning warning's watch (in checkpoints).
    watch: NoPruningWatch,
}

impl Str {
    pub fn new(config: StrConfig) -> Self {
        Str {
            config,
            total_weights: 0,
            watch: NoPruningWatch::default(),
        }
    }

    pub fn config(&self) -> &StrConfig {
        &self.config
    }
}

pub(super) fn soft_threshold(w: &Weight<f32>) -> Option<&SoftThreshold<f32>> {
    w.transform.as_ref()?.as_any().downcast_ref()
}

impl Plugin<TrainContext> for Str {
    type Options = StrOptions;
    const SHARED: &'static [&'static str] =
        &["target_sparsity", "first_layer_dense", "last_layer_dense"];

    fn build(options: &StrOptions, context: &TrainContext) -> Result<Self> {
        Ok(Str::new(StrConfig::new(options, context)?))
    }
}

impl Str {
    /// Refuses an `--s-init` whose threshold g(s_init) is at least every |w| of a sparsified
    /// layer: that layer would compute with all-zero weights from the first step (STR's gradient
    /// of a fully pruned layer is zero, so it never comes back), and the run would "succeed" with
    /// a dead model.
    fn refuse_empty_layers(&self, model: &dyn Module<f32>) -> Result<()> {
        let mut emptied: Option<String> = None;
        model.visit_weights("", &mut |name, w| {
            if emptied.is_none()
                && w.transform.is_some()
                && !w.raw.value().is_empty()
                && w.effective().iter().all(|v| *v == 0.0)
            {
                emptied = Some(name.to_string());
            }
        });
        match emptied {
            Some(name) => Err(Error::invalid(format!(
                "--s-init {}: its threshold g(s) = {} prunes every weight of {name} at the first \
                 step; choose a smaller --s-init (the default is {DEFAULT_S_INIT})",
                self.config.s_init,
                self.config.g.value(self.config.s_init)
            ))),
            None => Ok(()),
        }
    }
}

impl Method for Str {
    fn name(&self) -> &'static str {
        "str"
    }

    fn attach(&mut self, model: &mut dyn Module<f32>) -> Result<()> {
        let c = &self.config;
        let layers = prunable_weights(model, c.first_layer_dense, c.last_layer_dense)?;
        self.total_weights = layers.iter().map(|l| l.len()).sum();
        if let Some(controller) = &c.controller {
            // A target the sparsified layers cannot hold alone is refused now, rather than
            // pruning them all away while chasing it.
            uniform_prune_counts(&layers, controller.target, true)?;
        }
        if c.granularity == StrGranularity::Rank {
            let mut factors = Vec::new();
            model.visit_low_rank("", &mut |_, first, second| {
                factors.push((first.to_string(), 0));
                factors.push((second.to_string(), 1));
            });
            if factors.is_empty() {
                return Err(Error::invalid(
                    "--str-granularity rank needs a model with low-rank factorised weights (FastGRNN with a rank), and this one has none",
                ));
            }
            model.visit_weights_mut("", &mut |name, w| {
                if let Some((_, axis)) = factors.iter().find(|(n, _)| n == name) {
                    w.transform = Some(Box::new(GroupSoftThreshold::new(
                        *axis,
                        c.s_init,
                        c.g.clone(),
                    )));
                }
            });
            return Ok(());
        }
        let granularity = match c.granularity {
            StrGranularity::Channel => Granularity::Channel,
            StrGranularity::Weight => Granularity::Weight,
            _ => Granularity::Layer,
        };
        let mut shared = None;
        let mut i = 0;
        model.visit_weights_mut("", &mut |_, w| {
            let layer = &layers[i];
            i += 1;
            if !layer.sparsified {
                return;
            }
            let mut st = match &shared {
                Some(handle) => SoftThreshold::sharing(handle, c.g.clone()),
                None => SoftThreshold::new(&layer.shape, granularity, c.s_init, c.g.clone()),
            };
            if c.granularity == StrGranularity::Global && shared.is_none() {
                shared = Some(st.share());
            }
            w.transform = Some(Box::new(st));
        });
        self.refuse_empty_layers(model)
    }

    /// The thresholds in their own group, listed first: they are scalars, which the
    /// biases/batchnorm group (`--bias-decay`) would otherwise claim.
    fn param_groups(&self) -> Vec<ParamGroup> {
        vec![
            ParamGroup::new(ParamMatch::Suffix("_threshold".into()))
                .with_weight_decay(self.config.threshold_decay),
        ]
    }

    fn regulariser<'t>(
        &mut self,
        model: &dyn Module<f32>,
        tape: &'t Tape<f32>,
        info: &StepInfo,
    ) -> Option<Var<'t, f32>> {
        let controller = self.config.controller.as_ref()?;
        let now = sparsity_on(model, tape, &controller.density, self.total_weights)?;
        Some(controller.loss(now, info.step, info.total_steps))
    }

    fn after_step(&mut self, model: &mut dyn Module<f32>, info: &StepInfo) -> Result<()> {
        self.watch.observe(model, info.epoch);
        Ok(())
    }

    /// Warns when every threshold stayed ~0 all epoch and would still be ~0 at the end of the
    /// run ([`NoPruningWatch`]).
    fn after_epoch(&mut self, model: &mut dyn Module<f32>, epoch: usize) -> Result<Vec<String>> {
        let warning = self.watch.warning(model, epoch, self.config.epochs);
        Ok(warning.into_iter().collect())
    }

    /// The run's state: the no-pruning warning's watch and whether it was given.
    fn state(&self) -> MethodState {
        MethodState::of(&self.watch)
    }

    fn load_state(&mut self, state: &MethodState) -> Result<()> {
        self.watch = state.read("str")?;
        Ok(())
    }
}

/// The default `--s-init` (and the one the no-pruning warning suggests): g(s) = sigmoid(-5) =
/// 0.0067, which prunes from the first step on MNIST-scale runs without collapsing them (the
/// sweep behind it is in `docs/methods.md`, "STR": -3 prunes every weight of LeNet-300 at once,
/// -20 and below prune nothing in 20 epochs).
pub const DEFAULT_S_INIT: f64 = -5.0;
