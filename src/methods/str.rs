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

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::methods::fixup::{FIXUP_WARN_SHARE, FixUp};
use crate::methods::options::TrainContext;
use crate::methods::plugin::{Method, MethodState, Plugin, StepInfo};
use crate::methods::prune::{prunable_weights, uniform_prune_counts};
use crate::nn::{Module, Weight};
use crate::optim::{ParamGroup, ParamMatch};
use crate::sparsity::{Granularity, GroupSoftThreshold, SoftThreshold};
use crate::tape::{Tape, Var};

pub use super::str_controller::{ControlScale, Controller, sparsity_on};
pub use super::str_options::{
    DEFAULT_DUAL_LR, DEFAULT_S_INIT, StrConfig, StrFinish, StrG, StrGranularity, StrOptions,
};
pub use super::str_watch::{NEGLIGIBLE_THRESHOLD, NoPruningWatch};

/// The STR method.
pub struct Str {
    config: StrConfig,
    /// Number of weights in all prunable layers (the controller's N).
    total_weights: usize,
    /// What a checkpoint holds: the no-pruning watch and the controller's multiplier.
    state: StrState,
    /// The gap measured by this step's regulariser, applied to the multiplier in `after_step`.
    pending_gap: Option<(f64, usize, usize)>,
}

/// STR's state in a checkpoint. The multiplier is stored by its bits too, so a resumed run
/// continues with exactly the same f64 (JSON numbers need not read back bit-exactly);
/// checkpoints written before it existed read as mu = 0.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
struct StrState {
    #[serde(flatten)]
    watch: NoPruningWatch,
    /// mu, for reading.
    multiplier: f64,
    /// mu's bits (what is restored).
    multiplier_bits: u64,
}

impl Str {
    pub fn new(config: StrConfig) -> Self {
        Str {
            config,
            total_weights: 0,
            state: StrState::default(),
            pending_gap: None,
        }
    }

    /// The controller's Lagrange multiplier mu (0 without a target).
    pub fn multiplier(&self) -> f64 {
        self.state.multiplier
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
        let (t, total) = (info.step, info.total_steps);
        self.pending_gap = Some((controller.gap(now.item() as f64, t, total), t, total));
        Some(controller.loss(now, t, total, self.state.multiplier))
    }

    fn after_step(&mut self, model: &mut dyn Module<f32>, info: &StepInfo) -> Result<()> {
        self.state.watch.observe(model, info.epoch);
        if let (Some(controller), Some((gap, t, total))) =
            (&self.config.controller, self.pending_gap.take())
        {
            let mu = controller.next_multiplier(self.state.multiplier, gap, t, total);
            self.state.multiplier = mu;
            self.state.multiplier_bits = mu.to_bits();
        }
        Ok(())
    }

    /// Warns when every threshold stayed ~0 all epoch and would still be ~0 at the end of the
    /// run ([`NoPruningWatch`]).
    fn after_epoch(&mut self, model: &mut dyn Module<f32>, epoch: usize) -> Result<Vec<String>> {
        let warning = self.state.watch.warning(model, epoch, self.config.epochs);
        Ok(warning.into_iter().collect())
    }

    /// With a target and `--str-finish exact|strict`: the exact fix-up
    /// ([`super::str_fixup::plan`] then `Plan::apply`, which also bakes); otherwise the bake alone.
    fn finish(&mut self, model: &mut dyn Module<f32>) -> Result<Option<FixUp>> {
        let Some(controller) = &self.config.controller else {
            crate::methods::bake(model);
            return Ok(None);
        };
        if self.config.finish == StrFinish::Learned {
            crate::methods::bake(model);
            return Ok(None);
        }
        let plan = super::str_fixup::plan(model, controller.target);
        if self.config.finish == StrFinish::Strict && plan.share_moved() > FIXUP_WARN_SHARE {
            return Err(Error::invalid(format!(
                "--strict-target (--str-finish strict): {}; the run's last checkpoint is kept",
                plan.summary().describe()
            )));
        }
        Ok(Some(plan.apply(model)))
    }

    /// The controller's final multiplier mu.
    fn summary(&self, model: &dyn Module<f32>) -> serde_json::Value {
        let _ = model;
        match self.config.controller {
            Some(_) => serde_json::json!({ "multiplier": self.state.multiplier }),
            None => serde_json::Value::Null,
        }
    }

    /// The run's state: the no-pruning warning's watch, whether it was given, and mu.
    fn state(&self) -> MethodState {
        MethodState::of(&self.state)
    }

    fn load_state(&mut self, state: &MethodState) -> Result<()> {
        let mut read: StrState = state.read("str")?;
        read.multiplier = f64::from_bits(read.multiplier_bits);
        self.state = read;
        Ok(())
    }
}
