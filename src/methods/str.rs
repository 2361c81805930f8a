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

use crate::error::{Error, Result};
use crate::nn::{Module, Weight};
use crate::ops::sparsity::{Density, ThresholdFn};
use crate::optim::{ParamGroup, ParamMatch};
use crate::sparsity::{Granularity, GroupSoftThreshold, SoftThreshold};
use crate::tape::{Tape, Var};
use crate::train::config::TrainConfig;
use crate::train::method::{Method, StepInfo};

use super::{bake, prunable_weights, uniform_prune_counts};

/// Shape of the learnable thresholds (`--str-granularity`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

impl StrGranularity {
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "layer" => StrGranularity::Layer,
            "channel" => StrGranularity::Channel,
            "global" => StrGranularity::Global,
            "weight" => StrGranularity::Weight,
            "rank" => StrGranularity::Rank,
            other => {
                return Err(Error::invalid(format!(
                    "unknown --str-granularity `{other}` (expected one of: layer, channel, global, weight, rank)"
                )));
            }
        })
    }
}

/// The target controller: a control loss on the distance from S_now to the (ramped) target.
#[derive(Clone, Debug, PartialEq)]
pub struct Controller {
    /// Global sparsity S over all prunable weights (`--target-sparsity`).
    pub target: f64,
    /// lambda_c (`--controller-weight`).
    pub weight: f64,
    /// Density estimate of dr/dt (FCPTS eq. 12: `Density::paper()`).
    pub density: Density,
    /// The scale the error is measured on (`--controller-loss`).
    pub scale: ControlScale,
    /// Fraction of the run's steps over which the target ramps up (`--controller-ramp`; 0: the
    /// full target from the first step).
    pub ramp: f64,
}

/// The scale on which the controller measures the distance to the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlScale {
    /// FCPTS eq. 3 as written: |S_now - S|.
    Linear,
    /// |ln(1 - S_now) - ln(1 - S)|: the same on the log of the kept fraction. Its gradient is
    /// eq. 8's times 1 / (1 - S_now), a gain that grows as few weights remain, where the bridge's
    /// density (and so eq. 8) is small (default; `docs/methods.md` has the runs behind it).
    LogDensity,
}

impl ControlScale {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "linear" => Ok(ControlScale::Linear),
            "log" => Ok(ControlScale::LogDensity),
            other => Err(Error::invalid(format!(
                "unknown --controller-loss `{other}` (expected one of: log, linear)"
            ))),
        }
    }
}

impl Controller {
    /// The control loss at step `t` of `total` for the current sparsity `now` (see
    /// `docs/methods.md`), with f(S) = S (`Linear`) or -ln(1 - S) (`LogDensity`): during the
    /// ramp (t < ramp x total) lambda_c relu(f(S*(t)) - f(S_now)) with
    /// S*(t) = S (1 - (1 - t / t_ramp)^3), GMP's cubic schedule, which only pushes sparsity up
    /// to the schedule and leaves STR alone when it is ahead; from then on the two-sided
    /// lambda_c |f(S_now) - f(S)| (FCPTS eq. 3 on the chosen scale), which lands on S.
    pub fn loss<'t>(&self, now: Var<'t, f32>, t: usize, total: usize) -> Var<'t, f32> {
        let ramp_steps = self.ramp * total as f64;
        // The error e = f(S*) - f(S_now) with f = S (linear) or f = -ln(1 - S) (log density), so
        // e > 0 means too few weights are pruned.
        let at = |s: f64| match self.scale {
            ControlScale::Linear => s,
            ControlScale::LogDensity => -(1.0 - s).ln(),
        };
        let now = match self.scale {
            ControlScale::Linear => now,
            ControlScale::LogDensity => {
                // The kept fraction is 0 only when every weight is pruned; floored there so the
                // loss stays finite (and gives no gradient) instead of reading as a divergence.
                let floor = now.tape().constant(crate::tape::Tensor::from_elem(
                    ndarray::IxDyn(&[]),
                    KEPT_FLOOR,
                ));
                now.neg().add_scalar(1.0).maximum(floor).ln().neg()
            }
        };
        let gap = if (t as f64) < ramp_steps {
            let p = t as f64 / ramp_steps;
            let scheduled = self.target * (1.0 - (1.0 - p).powi(3));
            now.neg().add_scalar(at(scheduled)).relu()
        } else {
            now.add_scalar(-at(self.target)).abs()
        };
        gap.mul_scalar(self.weight)
    }
}

/// Smallest kept fraction the log-density control loss takes the logarithm of.
const KEPT_FLOOR: f32 = 1e-12;

/// STR's settings (see [`StrConfig::from_train_config`] for the command line's).
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
    /// The settings of `--method str` from the command line's config.
    pub fn from_train_config(config: &TrainConfig) -> Result<Self> {
        let s = &config.sparsity;
        let granularity = StrGranularity::parse(&s.str_granularity)?;
        let scale = ControlScale::parse(&s.controller_loss)?;
        let controller = s.target_sparsity.map(|target| Controller {
            target,
            weight: s.controller_weight,
            density: Density::paper(),
            scale,
            ramp: s.controller_ramp,
        });
        if controller.is_some()
            && matches!(granularity, StrGranularity::Weight | StrGranularity::Rank)
        {
            return Err(Error::invalid(format!(
                "--target-sparsity needs --str-granularity layer, channel or global (with `{}` no threshold is shared by enough weights for the control loss to have a gradient)",
                s.str_granularity
            )));
        }
        Ok(StrConfig {
            granularity,
            g: match s.str_g.as_str() {
                "sigmoid" => ThresholdFn::Sigmoid,
                "exp" => ThresholdFn::Exp,
                other => {
                    return Err(Error::invalid(format!(
                        "unknown --str-g `{other}` (expected one of: sigmoid, exp)"
                    )));
                }
            },
            s_init: s.s_init,
            first_layer_dense: s.first_layer_dense,
            last_layer_dense: s.last_layer_dense,
            threshold_decay: s.threshold_decay.unwrap_or(config.weight_decay),
            controller,
            epochs: config.epochs,
        })
    }
}

/// What the no-pruning warning has seen of the current epoch.
#[derive(Clone, Debug)]
struct Watch {
    epoch: usize,
    steps: usize,
    /// Per thresholded weight: the largest entry of s after the epoch's first step, and the
    /// largest seen since.
    s_first: Vec<f64>,
    s_max: Vec<f64>,
}

/// The STR method.
pub struct Str {
    config: StrConfig,
    /// Number of weights in all prunable layers (the controller's N).
    total_weights: usize,
    watch: Option<Watch>,
    /// The no-pruning warning is given once.
    warned: bool,
}

/// A threshold is "~0" when it is below this fraction of the weights' RMS magnitude (or of the
/// RMS group norm, for group thresholds): it then shrinks every weight by less than 0.1% of its
/// typical size, prunes about 0.1% of a Gaussian layer at most, and its gradient, proportional
/// to g'(s) <= g(s) for sigmoid and exp, is as small.
pub const NEGLIGIBLE_THRESHOLD: f64 = 1e-3;

impl Str {
    pub fn new(config: StrConfig) -> Self {
        Str {
            config,
            total_weights: 0,
            watch: None,
            warned: false,
        }
    }

    pub fn config(&self) -> &StrConfig {
        &self.config
    }

    /// The global sparsity the thresholds produce, S_now = sum_l n_l r_l / N, recorded on `tape`
    /// (differentiable in every s through the sparsity bridge). `None` if nothing is thresholded.
    pub fn sparsity_on<'t>(
        &self,
        model: &dyn Module<f32>,
        tape: &'t Tape<f32>,
        density: &Density,
    ) -> Option<Var<'t, f32>> {
        let mut pruned: Option<Var<'t, f32>> = None;
        let mut add = |v: Var<'t, f32>| pruned = Some(pruned.map_or(v, |p| p + v));
        model.visit_weights("", &mut |_, w| {
            let Some(st) = soft_threshold(w) else { return };
            let t = st.s_on(tape).threshold_fn(st.g());
            let raw = w.raw.value();
            if t.len() == 1 {
                // Per layer or global: r_l over the whole weight, times n_l.
                let r = tape.param(&w.raw).sparsity_rate(t, density);
                add(r.mul_scalar(raw.len() as f64));
            } else {
                // Per channel: r_c over row c with its own threshold. The value added is exactly
                // n_c r_c, but its gradient is that of n_l r_c: each channel threshold is pushed
                // as hard as its layer's threshold would be (with n_c it would move C times
                // slower than a per-layer one, against an unchanged weight decay).
                let ax = ndarray::Axis(0);
                let n_l = raw.len() as f64;
                for (c, row) in raw.axis_iter(ax).enumerate() {
                    let row = tape.constant(row.to_owned());
                    let r = row.sparsity_rate(t.narrow(0, c, 1), density);
                    let held = tape.constant((*r.value()).clone());
                    add(r.mul_scalar(n_l) - held.mul_scalar(n_l - row.len() as f64));
                }
            }
        });
        pruned.map(|p| p.mul_scalar(1.0 / self.total_weights as f64))
    }

    /// The largest entry of every threshold parameter s (a global one once, at its owner).
    fn largest_s(model: &dyn Module<f32>) -> Vec<f64> {
        let mut out = Vec::new();
        model.visit_weights("", &mut |_, w| {
            if let Some(st) = soft_threshold(w).filter(|st| st.owns_threshold()) {
                out.push(
                    st.s()
                        .iter()
                        .fold(f64::NEG_INFINITY, |m, s| m.max(*s as f64)),
                );
            } else if let Some(gt) = group_threshold(w) {
                out.push(gt.s() as f64);
            }
        });
        out
    }

    /// Per threshold parameter (in [`Str::largest_s`] order): the weight's name, its g, and the
    /// magnitude a threshold is compared with (RMS weight; RMS group norm for group thresholds).
    fn threshold_scales(model: &dyn Module<f32>) -> Vec<(String, ThresholdFn, f64)> {
        let mut out = Vec::new();
        model.visit_weights("", &mut |name, w| {
            let raw = w.raw.value();
            let sq: f64 = raw.iter().map(|v| (*v as f64).powi(2)).sum();
            if let Some(st) = soft_threshold(w).filter(|st| st.owns_threshold()) {
                let rms = (sq / raw.len().max(1) as f64).sqrt();
                out.push((name.to_string(), st.g().clone(), rms));
            } else if let Some(gt) = group_threshold(w) {
                let groups = raw.len_of(ndarray::Axis(gt.axis())).max(1);
                out.push((
                    name.to_string(),
                    gt.g().clone(),
                    (sq / groups as f64).sqrt(),
                ));
            }
        });
        out
    }
}

fn soft_threshold(w: &Weight<f32>) -> Option<&SoftThreshold<f32>> {
    w.transform.as_ref()?.as_any().downcast_ref()
}

fn group_threshold(w: &Weight<f32>) -> Option<&GroupSoftThreshold<f32>> {
    w.transform.as_ref()?.as_any().downcast_ref()
}

impl Method for Str {
    fn name(&self) -> &'static str {
        "str"
    }

    fn prepare(&mut self, model: &mut dyn Module<f32>) -> Result<()> {
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
        Ok(())
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
        let now = self.sparsity_on(model, tape, &controller.density)?;
        Some(controller.loss(now, info.step, info.total_steps))
    }

    fn after_step(&mut self, model: &mut dyn Module<f32>, info: &StepInfo) -> Result<()> {
        let s = Self::largest_s(model);
        match &mut self.watch {
            Some(w) if w.epoch == info.epoch => {
                w.steps += 1;
                for (m, v) in w.s_max.iter_mut().zip(&s) {
                    *m = m.max(*v);
                }
            }
            _ => {
                self.watch = Some(Watch {
                    epoch: info.epoch,
                    steps: 1,
                    s_first: s.clone(),
                    s_max: s,
                })
            }
        }
        Ok(())
    }

    /// Warns when every threshold stayed ~0 all epoch (g(s) below [`NEGLIGIBLE_THRESHOLD`] of the
    /// weights' RMS) and, moving as it did this epoch, would still be ~0 at the end of the run.
    fn after_epoch(&mut self, model: &mut dyn Module<f32>, epoch: usize) -> Vec<String> {
        let Some(watch) = self
            .watch
            .as_ref()
            .filter(|w| w.epoch == epoch && !self.warned)
        else {
            return Vec::new();
        };
        let s_now = Self::largest_s(model);
        let remaining = self.config.epochs.saturating_sub(epoch + 1) as f64;
        // The epoch's first step is not in s_first - s_end: scale to a whole epoch.
        let per_epoch = watch.steps as f64 / (watch.steps.max(2) - 1) as f64;
        let mut worst: Option<(String, f64, f64, f64)> = None; // name, s, g(s), g(s_final)
        for (k, (name, g, scale)) in Self::threshold_scales(model).iter().enumerate() {
            let (s_first, s_max, s_end) = (watch.s_first[k], watch.s_max[k], s_now[k]);
            let drift = ((s_end - s_first) * per_epoch).max(0.0);
            let s_final = s_end + drift * remaining;
            let limit = NEGLIGIBLE_THRESHOLD * scale;
            if g.value(s_max) >= limit || g.value(s_final) >= limit {
                return Vec::new();
            }
            if worst.as_ref().is_none_or(|w| s_max > w.1) {
                worst = Some((name.clone(), s_max, g.value(s_max), g.value(s_final)));
            }
        }
        let Some((name, s, gs, g_final)) = worst else {
            return Vec::new();
        };
        self.warned = true;
        vec![format!(
            "STR: every threshold g(s) stayed ~0 in epoch {} (largest: {name}, s = {s:.4}, g(s) = {gs:.3e}) and at its pace would still be ~0 ({g_final:.3e}) after the last epoch, with ~0 gradient: nothing will be pruned. Use a larger --s-init (e.g. {:.0}) or a larger --weight-decay",
            epoch + 1,
            DEFAULT_S_INIT
        )]
    }

    /// Bakes W := S_g(W, s) and drops the transforms: the model is plain (sparse) weights.
    fn finish(&mut self, model: &mut dyn Module<f32>) {
        bake(model);
    }
}

/// The default `--s-init` (and the one the no-pruning warning suggests): g(s) = sigmoid(-5) =
/// 0.0067, which prunes from the first step on MNIST-scale runs without collapsing them (the
/// sweep behind it is in `docs/methods.md`, "STR": -3 prunes every weight of LeNet-300 at once,
/// -20 and below prune nothing in 20 epochs).
pub const DEFAULT_S_INIT: f64 = -5.0;
