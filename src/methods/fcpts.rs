//! FCPTS (Gong et al., AAAI 2024), `sparsegrad posttrain --method fcpts`: per-layer learnable
//! thresholds initialised from an ERK allocation of r0, the control loss L_c (eq. 3) through the
//! KDE / histogram sparsity bridge (eqs. 10-12) as the method's regulariser, and the exact fix-up
//! (`methods::fixup`) that makes the global sparsity equal round(r0 N) to the weight.
//!
//! The pieces are the gradient-checked primitives of `crate::sparsity`: [`ThresholdMask`] (t =
//! sigmoid(score), mask M = 1[|W| > t], eqs. 1-2 and 14) and its `sparsity_rate` bridge. The
//! reconstruction loss and the loop are the post-training driver's (`posttrain`).

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::methods::fixup::{FixUp, fix_up};
use crate::methods::options::{PosttrainContext, clap_defaults};
use crate::methods::plugin::{Method, Plugin, StepInfo};
use crate::nn::{Module, Weight};
use crate::ops::sparsity::Surrogate;
use crate::optim::{ParamGroup, ParamMatch};
use crate::sparsity::budget::{Budget, allocate};
use crate::sparsity::{Density, FcptsVariant, ThresholdMask};
use crate::tape::{Tape, Tensor, Var};

/// `--variant`: where the thresholds' gradient comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum VariantName {
    /// The paper: the reconstruction gradient reaches the thresholds (eq. 14), KDE density.
    Paper,
    /// The released code: thresholds moved by the control loss only, histogram density.
    Code,
}

/// `--density`: the estimate of the sparsity bridge's derivative.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DensityName {
    /// Gaussian KDE on 100 samples, h = 0.5 std (the paper's eq. 12).
    Kde,
    /// The authors' code: a 100-bin histogram of all weights.
    Histogram,
}

/// FCPTS's flags.
#[derive(Args, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[group(skip)]
#[serde(default)]
pub struct FcptsOptions {
    /// FCPTS: paper | code (default paper).
    #[arg(long, value_enum)]
    pub variant: Option<VariantName>,
    /// FCPTS paper variant: the dM/dt surrogate, clipped (default) | sigmoid:T.
    #[arg(long)]
    pub surrogate: Option<String>,
    /// FCPTS: density of the sparsity bridge (default: the variant's).
    #[arg(long, value_enum)]
    pub density: Option<DensityName>,
    /// FCPTS: learning rate of the threshold scores (default: --lr).
    #[arg(long)]
    pub score_lr: Option<f64>,
    /// FCPTS: weight of the control loss.
    #[arg(long, default_value_t = 1.0)]
    pub control_weight: f64,
}

impl Default for FcptsOptions {
    fn default() -> Self {
        clap_defaults()
    }
}

/// FCPTS's settings, resolved.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FcptsSettings {
    /// Whether the reconstruction loss reaches the thresholds (paper) or not (released code).
    pub variant: FcptsVariant,
    /// The density estimate of the sparsity bridge's derivative dr/dt = p(t) + p(-t).
    pub density: Density,
}

impl FcptsSettings {
    /// `--variant paper` = eq. 14 through the `clipped` surrogate (the authors' `BinActive`) with
    /// the paper's KDE (n = 100, h = 0.5 std); `--variant code` = no reconstruction gradient to t
    /// and the released code's 100-bin histogram. `--surrogate` and `--density` override.
    pub fn new(o: &FcptsOptions) -> Result<Self> {
        let variant = o.variant.unwrap_or(VariantName::Paper);
        let density = match (o.density, variant) {
            (Some(DensityName::Kde), _) | (None, VariantName::Paper) => Density::paper(),
            (Some(DensityName::Histogram), _) | (None, VariantName::Code) => {
                Density::authors_code()
            }
        };
        let variant = match (variant, o.surrogate.as_deref()) {
            (VariantName::Code, None) => FcptsVariant::Code,
            (VariantName::Code, Some(_)) => {
                return Err(Error::invalid(
                    "--surrogate has no effect with --variant code (its mask sends no gradient to the thresholds)",
                ));
            }
            (VariantName::Paper, surrogate) => {
                FcptsVariant::Paper(parse_surrogate(surrogate.unwrap_or("clipped"))?)
            }
        };
        Ok(FcptsSettings { variant, density })
    }

    /// `paper` or `code`.
    pub fn variant_name(&self) -> &'static str {
        match self.variant {
            FcptsVariant::Paper(_) => "paper",
            FcptsVariant::Code => "code",
        }
    }

    /// `clipped`, `sigmoid:T`, or none for the code variant.
    pub fn surrogate_name(&self) -> Option<String> {
        match self.variant {
            FcptsVariant::Paper(Surrogate::ClippedIdentity) => Some("clipped".into()),
            FcptsVariant::Paper(Surrogate::Sigmoid { temperature }) => {
                Some(format!("sigmoid:{temperature}"))
            }
            FcptsVariant::Code => None,
        }
    }

    /// `kde` or `histogram`.
    pub fn density_name(&self) -> &'static str {
        match self.density {
            Density::Kde { .. } => "kde",
            Density::Histogram { .. } => "histogram",
        }
    }
}

/// `clipped` or `sigmoid:T` (T > 0, in raw weight units).
fn parse_surrogate(spec: &str) -> Result<Surrogate> {
    let bad = || {
        Error::invalid(format!(
            "unknown --surrogate `{spec}` (expected clipped or sigmoid:T with T > 0)"
        ))
    };
    match spec.split_once(':') {
        None if spec == "clipped" => Ok(Surrogate::ClippedIdentity),
        Some(("sigmoid", t)) => match t.parse::<f64>() {
            Ok(temperature) if temperature > 0.0 && temperature.is_finite() => {
                Ok(Surrogate::Sigmoid { temperature })
            }
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

/// The FCPTS method.
pub struct Fcpts {
    pub settings: FcptsSettings,
    r0: f64,
    control_weight: f64,
    /// Learning rate of the scores relative to the model's.
    score_lr_scale: f64,
}

impl Plugin<PosttrainContext> for Fcpts {
    type Options = FcptsOptions;
    const SHARED: &'static [&'static str] = &[];

    fn build(options: &FcptsOptions, context: &PosttrainContext) -> Result<Self> {
        let settings = FcptsSettings::new(options)?;
        if let Some(lr) = options.score_lr
            && !(lr > 0.0 && lr.is_finite())
        {
            return Err(Error::invalid(format!(
                "--score-lr must be a positive number, got {lr}"
            )));
        }
        if !(options.control_weight >= 0.0 && options.control_weight.is_finite()) {
            return Err(Error::invalid(format!(
                "--control-weight must be a non-negative number, got {}",
                options.control_weight
            )));
        }
        Ok(Fcpts {
            settings,
            r0: context.target_sparsity,
            control_weight: options.control_weight,
            score_lr_scale: options.score_lr.unwrap_or(context.lr) / context.lr,
        })
    }
}

/// Puts a [`ThresholdMask`] on every prunable weight, each pruning exactly its count of the ERK
/// allocation of `r0` (the authors' `get_sparsities_sparse_table_using_erk` +
/// `update_score_str_per_layer_v1_using_table`).
pub fn attach_thresholds(
    model: &mut dyn Module<f32>,
    r0: f64,
    variant: FcptsVariant,
) -> Result<()> {
    let mut weights: Vec<(String, Tensor<f32>)> = Vec::new();
    model.visit_weights("", &mut |name, w| {
        weights.push((name.to_string(), w.effective()))
    });
    let named: Vec<(&str, &Tensor<f32>)> = weights.iter().map(|(n, w)| (n.as_str(), w)).collect();
    let alloc = allocate(&Budget::Erk { power_scale: 1.0 }, &named, r0)?;
    let mut layers = alloc.layers.iter();
    model.visit_weights_mut("", &mut |_, w| {
        let k = layers.next().map_or(0, |l| l.prune);
        w.transform = Some(Box::new(ThresholdMask::for_prune_count(
            w.raw.value(),
            k,
            variant,
        )));
    });
    Ok(())
}

/// The layer's FCPTS transform (panics if [`attach_thresholds`] has not run: a programming
/// error).
pub(crate) fn threshold_mask(w: &Weight<f32>) -> &ThresholdMask<f32> {
    w.transform
        .as_ref()
        .and_then(|t| t.as_any().downcast_ref::<ThresholdMask<f32>>())
        .expect("FCPTS puts a ThresholdMask on every prunable weight")
}

/// The control loss L_c = |sum_l r_l n_l / sum_l n_l - r0| (eq. 3), differentiable in every
/// layer's score through the bridge dr_l/dt_l = p(t_l) + p(-t_l) (eqs. 8, 11, 13).
pub fn control_loss<'t>(
    model: &dyn Module<f32>,
    tape: &'t Tape<f32>,
    r0: f64,
    density: &Density,
) -> Option<Var<'t, f32>> {
    let mut weighted: Option<Var<'t, f32>> = None;
    let mut total = 0usize;
    model.visit_weights("", &mut |_, w| {
        let n = w.raw.len();
        let r = threshold_mask(w).sparsity_rate(tape.param(&w.raw), density);
        let term = r.mul_scalar(n as f64);
        weighted = Some(match weighted {
            None => term,
            Some(sum) => sum + term,
        });
        total += n;
    });
    Some(
        weighted?
            .mul_scalar(1.0 / total as f64)
            .add_scalar(-r0)
            .abs(),
    )
}

impl Method for Fcpts {
    fn name(&self) -> &'static str {
        "fcpts"
    }

    fn attach(&mut self, model: &mut dyn Module<f32>) -> Result<()> {
        attach_thresholds(model, self.r0, self.settings.variant)
    }

    /// The scores: `--score-lr`, no weight decay (the authors' `st_decay 0.0`).
    fn param_groups(&self) -> Vec<ParamGroup> {
        vec![
            ParamGroup::new(ParamMatch::Suffix("_score".into()))
                .with_weight_decay(0.0)
                .with_lr_scale(self.score_lr_scale),
        ]
    }

    /// lambda L_c (eq. 5 with the control weight lambda).
    fn regulariser<'t>(
        &mut self,
        model: &dyn Module<f32>,
        tape: &'t Tape<f32>,
        info: &StepInfo,
    ) -> Option<Var<'t, f32>> {
        let _ = info;
        control_loss(model, tape, self.r0, &self.settings.density)
            .map(|c| c.mul_scalar(self.control_weight))
    }

    /// The exact fix-up. The thresholds stay on the weights, so the summary reports the final
    /// t of every layer; the export holds the effective weights either way.
    fn finish(&mut self, model: &mut dyn Module<f32>) -> Result<Option<FixUp>> {
        Ok(Some(fix_up(model, self.r0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(
        variant: Option<VariantName>,
        surrogate: Option<&str>,
        density: Option<DensityName>,
    ) -> FcptsOptions {
        FcptsOptions {
            variant,
            surrogate: surrogate.map(String::from),
            density,
            ..FcptsOptions::default()
        }
    }

    #[test]
    fn surrogate_and_density_flags_parse() {
        let paper = FcptsSettings::new(&options(None, None, None)).unwrap();
        assert_eq!(
            paper.variant,
            FcptsVariant::Paper(Surrogate::ClippedIdentity)
        );
        assert_eq!(paper.density, Density::paper());
        let code = FcptsSettings::new(&options(Some(VariantName::Code), None, None)).unwrap();
        assert_eq!(code.variant, FcptsVariant::Code);
        assert_eq!(code.density, Density::authors_code());
        let mixed = FcptsSettings::new(&options(
            None,
            Some("sigmoid:0.01"),
            Some(DensityName::Histogram),
        ))
        .unwrap();
        assert_eq!(
            mixed.variant,
            FcptsVariant::Paper(Surrogate::Sigmoid { temperature: 0.01 })
        );
        assert_eq!(mixed.surrogate_name().as_deref(), Some("sigmoid:0.01"));
        assert_eq!(mixed.density_name(), "histogram");
        for (o, message) in [
            (
                options(None, Some("sigmoid:0"), None),
                "unknown --surrogate `sigmoid:0` (expected clipped or sigmoid:T with T > 0)",
            ),
            (
                options(Some(VariantName::Code), Some("clipped"), None),
                "--surrogate has no effect with --variant code (its mask sends no gradient to the thresholds)",
            ),
        ] {
            assert_eq!(FcptsSettings::new(&o).unwrap_err().to_string(), message);
        }
    }
}
