//! Sensitivity-driven regularisation (Tartaglione, Lepsøy, Fiandrotti & Francini, NeurIPS 2018),
//! `--method sensitivity`.
//!
//! Every step, after the optimiser's update, each weight is shrunk in proportion to its
//! insensitivity: w ← w − η ∂L/∂w − λ w max(0, 1 − S) (the optimiser does the first part; the
//! method the second, with the pre-step w), S = Σ_k α_k |∂y_k/∂w| the sensitivity of the network
//! output y to w. `unspecified` (the default): α_k = 1 for every class k, one backward pass per
//! class; `specified`: the output of each example's true class only, one backward pass. y is the
//! softmax output (the network's output as the paper defines it) or, as an option, the logits;
//! the derivative is that of the batch mean of y_k. A weight that changes the output little is
//! driven to zero, a sensitive one (S >= 1) is left alone. After every epoch of the
//! sparsification phase (after `--sensitivity-warmup` epochs of plain training, the paper's
//! performance-reaching phase), the weights with |w| < T are pruned (`--sensitivity-threshold`)
//! and stay pruned (fixed masks).
//!
//! The sensitivity passes run on the step's batch (`Method::before_step`) in the model's mode;
//! the model's buffers (batchnorm running statistics) are restored after them, so only the
//! training pass updates them. `docs/methods.md` ("Sensitivity") has the choices and tests.

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::data::Batch;
use crate::error::{Error, Result};
use crate::methods::options::{TrainContext, clap_defaults};
use crate::methods::plugin::{Method, Plugin, StepInfo};
use crate::methods::prune::{Prunable, attach_masks, kept_fractions, mask_of};
use crate::nn::Module;
use crate::tape::{Tape, Tensor};

/// `--sensitivity-variant`: which outputs the sensitivity sums over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SensitivityVariant {
    /// S = sum over every class k of |d y_k / d w| (the paper's unspecified sensitivity).
    Unspecified,
    /// S = |d y_t / d w| with t each example's label (the paper's specified variant).
    Specified,
}

/// `--sensitivity-output`: the outputs y differentiated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SensitivityOutput {
    /// The softmax probabilities (the network's output).
    Softmax,
    /// The logits before the softmax.
    Logits,
}

/// Sensitivity's flags.
#[derive(Args, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[group(skip)]
#[serde(default)]
pub struct SensitivityOptions {
    /// Sensitivity: lambda of the per-step decay w <- w - lambda w max(0, 1 - S).
    #[arg(long, default_value_t = 1e-3)]
    pub sensitivity_lambda: f64,
    /// Sensitivity: weights with |w| below this are pruned after every epoch of the
    /// sparsification phase.
    #[arg(long, default_value_t = 1e-3)]
    pub sensitivity_threshold: f64,
    /// Sensitivity: unspecified (every class's output) | specified (each example's class).
    #[arg(long, value_enum, default_value_t = SensitivityVariant::Unspecified)]
    pub sensitivity_variant: SensitivityVariant,
    /// Sensitivity: the outputs y of S = |dy/dw|, softmax | logits.
    #[arg(long, value_enum, default_value_t = SensitivityOutput::Softmax)]
    pub sensitivity_output: SensitivityOutput,
    /// Sensitivity: epochs of plain training before the regularisation and pruning start.
    #[arg(long, default_value_t = 0)]
    pub sensitivity_warmup: usize,
}

impl Default for SensitivityOptions {
    fn default() -> Self {
        clap_defaults()
    }
}

/// The sensitivity method.
pub struct Sensitivity {
    options: SensitivityOptions,
    first_layer_dense: bool,
    last_layer_dense: bool,
    epochs: usize,
    layers: Vec<Prunable>,
    /// Per prunable layer, the weight before the step and its insensitivity max(0, 1 - S)
    /// (`None`: kept dense, or no regularisation this step).
    pending: Vec<Option<(Tensor<f32>, Tensor<f32>)>>,
}

impl Plugin<TrainContext> for Sensitivity {
    type Options = SensitivityOptions;
    const SHARED: &'static [&'static str] = &["first_layer_dense", "last_layer_dense"];

    fn build(o: &SensitivityOptions, context: &TrainContext) -> Result<Self> {
        if !(o.sensitivity_lambda >= 0.0 && o.sensitivity_lambda < 1.0) {
            return Err(Error::invalid(format!(
                "--sensitivity-lambda must be in [0, 1), got {}",
                o.sensitivity_lambda
            )));
        }
        if !(o.sensitivity_threshold >= 0.0 && o.sensitivity_threshold.is_finite()) {
            return Err(Error::invalid(format!(
                "--sensitivity-threshold must be a non-negative number, got {}",
                o.sensitivity_threshold
            )));
        }
        if o.sensitivity_warmup >= context.epochs {
            return Err(Error::invalid(format!(
                "--sensitivity-warmup ({} epochs) must be shorter than --epochs ({})",
                o.sensitivity_warmup, context.epochs
            )));
        }
        Ok(Sensitivity {
            options: o.clone(),
            first_layer_dense: context.shared.first_layer_dense,
            last_layer_dense: context.shared.last_layer_dense,
            epochs: context.epochs,
            layers: Vec::new(),
            pending: Vec::new(),
        })
    }
}

/// Per prunable weight of `model`, S = Σ_k α_k |d mean_n(y_nk) / dW| on `batch` (the raw
/// weights' gradients: zero at pruned entries). One forward and backward pass per class for the
/// unspecified variant, one for the specified.
pub fn sensitivities(
    model: &mut dyn Module<f32>,
    batch: &Batch<f32>,
    variant: SensitivityVariant,
    output: SensitivityOutput,
) -> Vec<Tensor<f32>> {
    let mut total: Vec<Tensor<f32>> = Vec::new();
    model.visit_weights("", &mut |_, w| {
        total.push(Tensor::zeros(w.raw.value().raw_dim()))
    });
    let n = batch.labels.len().max(1) as f32;
    let mut pass = |class: Option<usize>, model: &mut dyn Module<f32>| -> usize {
        let tape = Tape::new();
        let logits = model.forward(tape.constant(batch.images.clone()));
        let classes = logits.shape()[1];
        let y = match output {
            SensitivityOutput::Softmax => logits.softmax(1),
            SensitivityOutput::Logits => logits,
        };
        let mut seed = Tensor::zeros(y.value().raw_dim());
        for (i, &label) in batch.labels.iter().enumerate() {
            seed[[i, class.unwrap_or(label)]] = 1.0 / n;
        }
        let grads = y.backward_with(seed);
        let mut l = 0;
        model.visit_weights("", &mut |_, w| {
            if let Some(g) = grads.of(&w.raw) {
                total[l].zip_mut_with(g, |s, &g| *s += g.abs());
            }
            l += 1;
        });
        classes
    };
    match variant {
        SensitivityVariant::Specified => {
            pass(None, model);
        }
        SensitivityVariant::Unspecified => {
            let classes = pass(Some(0), model);
            for k in 1..classes {
                pass(Some(k), model);
            }
        }
    }
    total
}

/// Every non-trainable buffer of `model` (batchnorm running statistics, masks), by name.
fn buffers(model: &dyn Module<f32>) -> Vec<(String, Tensor<f32>)> {
    let mut out = Vec::new();
    model.visit("", &mut |name, p| {
        if !p.trainable() {
            out.push((name.to_string(), p.value().clone()));
        }
    });
    out
}

impl Method for Sensitivity {
    fn name(&self) -> &'static str {
        "sensitivity"
    }

    /// All-ones masks on the sparsified weights (thresholding prunes into them).
    fn attach(&mut self, model: &mut dyn Module<f32>) -> Result<()> {
        self.layers = attach_masks(model, self.first_layer_dense, self.last_layer_dense, None)?;
        Ok(())
    }

    /// S on this step's batch at the current weights, kept with the weights for `after_step`.
    fn before_step(
        &mut self,
        model: &mut dyn Module<f32>,
        batch: &Batch<f32>,
        info: &StepInfo,
    ) -> Result<()> {
        self.pending.clear();
        if info.epoch < self.options.sensitivity_warmup || self.options.sensitivity_lambda == 0.0 {
            return Ok(());
        }
        let saved = buffers(model);
        let s = sensitivities(
            model,
            batch,
            self.options.sensitivity_variant,
            self.options.sensitivity_output,
        );
        model.visit_mut("", &mut |name, p| {
            if let Some((_, v)) = saved.iter().find(|(n, _)| n == name) {
                p.set_value(v.clone());
            }
        });
        let mut l = 0;
        let layers = &self.layers;
        let pending = &mut self.pending;
        model.visit_weights("", &mut |_, w| {
            pending.push(
                layers[l]
                    .sparsified
                    .then(|| (w.raw.value().clone(), s[l].mapv(|s| (1.0 - s).max(0.0)))),
            );
            l += 1;
        });
        Ok(())
    }

    /// The insensitivity decay: w ← w − λ w_t max(0, 1 − S) with w_t the weight before the step.
    fn after_step(&mut self, model: &mut dyn Module<f32>, _info: &StepInfo) -> Result<()> {
        let lambda = self.options.sensitivity_lambda as f32;
        let pending = std::mem::take(&mut self.pending);
        let mut l = 0;
        model.visit_weights_mut("", &mut |_, w| {
            if let Some(Some((before, insensitivity))) = pending.get(l) {
                ndarray::Zip::from(w.raw.value_mut())
                    .and(before)
                    .and(insensitivity)
                    .for_each(|v, &b, &i| *v -= lambda * b * i);
                w.reapply_mask();
            }
            l += 1;
        });
        Ok(())
    }

    /// In the sparsification phase: prunes every weight with |w| < T (pruned ones stay pruned).
    fn after_epoch(&mut self, model: &mut dyn Module<f32>, epoch: usize) -> Result<Vec<String>> {
        if epoch < self.options.sensitivity_warmup {
            return Ok(Vec::new());
        }
        let threshold = self.options.sensitivity_threshold as f32;
        let mut result = Ok(());
        model.visit_weights_mut("", &mut |name, w| {
            let raw = w.raw.value().clone();
            let Some(mask) = mask_of(w) else { return };
            let mut keep = mask.values().clone();
            keep.zip_mut_with(&raw, |m, &v| {
                if v.abs() < threshold {
                    *m = 0.0;
                }
            });
            if let Err(e) = mask.set(keep) {
                result = Err(Error::invalid(format!("{name}: {e}")));
            }
            w.reapply_mask();
        });
        result.map(|_| Vec::new())
    }

    fn summary(&self, model: &dyn Module<f32>) -> serde_json::Value {
        serde_json::json!({
            "variant": self.options.sensitivity_variant,
            "output": self.options.sensitivity_output,
            "lambda": self.options.sensitivity_lambda,
            "threshold": self.options.sensitivity_threshold,
            "sparsification_epochs": self.epochs - self.options.sensitivity_warmup,
            "kept": kept_fractions(model),
        })
    }
}
