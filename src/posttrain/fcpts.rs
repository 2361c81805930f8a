//! FCPTS (Gong et al., AAAI 2024) as a post-training driver: per-layer learnable thresholds
//! initialised from an ERK allocation, the control loss L_c (eq. 3) through the KDE / histogram
//! sparsity bridge (eqs. 10-12), and the final exact fix-up that makes the global sparsity equal
//! round(r0 N) to the weight.
//!
//! The pieces are the gradient-checked primitives of `crate::sparsity`: [`ThresholdMask`] (t =
//! sigmoid(score), mask M = 1[|W| > t], eqs. 1-2 and 14) and its `sparsity_rate` bridge.

use crate::error::{Error, Result};
use crate::nn::Module;
use crate::ops::sparsity::Surrogate;
use crate::posttrain::baselines::allocation;
use crate::posttrain::config::PosttrainConfig;
use crate::sparsity::budget::{Allocation, Budget};
use crate::sparsity::{Density, FcptsVariant, ThresholdMask};
use crate::tape::{Tape, Var};
use crate::train::config::one_of;

/// The FCPTS flags, parsed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FcptsOptions {
    /// Whether the reconstruction loss reaches the thresholds (paper) or not (released code).
    pub variant: FcptsVariant,
    /// The density estimate of the sparsity bridge's derivative dr/dt = p(t) + p(-t).
    pub density: Density,
}

impl FcptsOptions {
    /// `--variant paper` = eq. 14 through the `clipped` surrogate (the authors' `BinActive`) with
    /// the paper's KDE (n = 100, h = 0.5 std); `--variant code` = no reconstruction gradient to t
    /// and the released code's 100-bin histogram. `--surrogate` and `--density` override.
    pub fn from_config(config: &PosttrainConfig) -> Result<Self> {
        let variant = config.variant.as_deref().unwrap_or("paper");
        one_of("--variant", variant, &["paper", "code"])?;
        let density = match config.density.as_deref() {
            None if variant == "paper" => Density::paper(),
            None => Density::authors_code(),
            Some("kde") => Density::paper(),
            Some("histogram") => Density::authors_code(),
            Some(other) => {
                return Err(Error::invalid(format!(
                    "unknown --density `{other}` (expected one of: kde, histogram)"
                )));
            }
        };
        let variant = match (variant, config.surrogate.as_deref()) {
            ("code", None) => FcptsVariant::Code,
            ("code", Some(_)) => {
                return Err(Error::invalid(
                    "--surrogate has no effect with --variant code (its mask sends no gradient to the thresholds)",
                ));
            }
            (_, surrogate) => FcptsVariant::Paper(parse_surrogate(surrogate.unwrap_or("clipped"))?),
        };
        Ok(FcptsOptions { variant, density })
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

/// Puts a [`ThresholdMask`] on every prunable weight, each pruning exactly its count of the ERK
/// allocation of `r0` (the authors' `get_sparsities_sparse_table_using_erk` +
/// `update_score_str_per_layer_v1_using_table`); returns that allocation.
pub fn prepare(model: &mut dyn Module<f32>, r0: f64, options: &FcptsOptions) -> Result<Allocation> {
    let alloc = allocation(model, &Budget::Erk { power_scale: 1.0 }, r0)?;
    let mut layers = alloc.layers.iter();
    model.visit_weights_mut("", &mut |_, w| {
        let k = layers.next().expect("one budget per prunable weight").prune;
        w.transform = Some(Box::new(ThresholdMask::for_prune_count(
            w.raw.value(),
            k,
            options.variant,
        )));
    });
    Ok(alloc)
}

/// The layer's FCPTS transform (panics if [`prepare`] has not run: a programming error).
fn threshold_mask(w: &crate::nn::Weight<f32>) -> &ThresholdMask<f32> {
    w.transform
        .as_ref()
        .and_then(|t| t.as_any().downcast_ref::<ThresholdMask<f32>>())
        .expect("fcpts::prepare puts a ThresholdMask on every prunable weight")
}

/// The control loss L_c = |sum_l r_l n_l / sum_l n_l - r0| (eq. 3), differentiable in every
/// layer's score through the bridge dr_l/dt_l = p(t_l) + p(-t_l) (eqs. 8, 11, 13).
pub fn control_loss<'t>(
    model: &dyn Module<f32>,
    tape: &'t Tape<f32>,
    r0: f64,
    density: &Density,
) -> Var<'t, f32> {
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
    weighted
        .expect("the model has prunable weights")
        .mul_scalar(1.0 / total as f64)
        .add_scalar(-r0)
        .abs()
}

/// One thresholded layer as the fix-up sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ThresholdedLayer {
    /// |w| in ascending order.
    pub sorted_abs: Vec<f64>,
    /// The layer's threshold t (weights with |w| <= t are pruned).
    pub threshold: f64,
    /// #{|w| <= t}.
    pub pruned: usize,
}

/// Per-layer prune counts totalling `goal` (when the unlocked layers can supply it), reached by
/// multiplying every unlocked threshold by one common factor: to prune d more weights, the d kept
/// weights with the smallest |w| / t_l go; to restore d, the d pruned weights with the largest
/// |w| / t_l come back. Ratios, not differences, so layers of different weight scales are treated
/// alike; ties go to the earlier layer. Within a layer this always moves the threshold past a
/// prefix of the sorted magnitudes, so every layer stays a threshold mask.
pub fn fixup_counts(layers: &[ThresholdedLayer], locked: &[bool], goal: usize) -> Vec<usize> {
    let mut counts: Vec<usize> = layers.iter().map(|l| l.pruned).collect();
    let current: usize = counts.iter().sum();
    let ratio = |a: f64, layer: &ThresholdedLayer| a / layer.threshold.max(f64::MIN_POSITIVE);
    let open = || {
        layers
            .iter()
            .enumerate()
            .filter(|(l, _)| !locked.get(*l).copied().unwrap_or(false))
    };
    let mut candidates: Vec<(f64, usize)> = Vec::new();
    if current < goal {
        let need = goal - current;
        for (l, layer) in open() {
            let kept = &layer.sorted_abs[layer.pruned..];
            candidates.extend(kept.iter().take(need).map(|&a| (ratio(a, layer), l)));
        }
        candidates.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
        for &(_, l) in candidates.iter().take(need) {
            counts[l] += 1;
        }
    } else if current > goal {
        let excess = current - goal;
        for (l, layer) in open() {
            let pruned = &layer.sorted_abs[..layer.pruned];
            candidates.extend(
                pruned
                    .iter()
                    .rev()
                    .take(excess)
                    .map(|&a| (ratio(a, layer), l)),
            );
        }
        candidates.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
        for &(_, l) in candidates.iter().take(excess) {
            counts[l] -= 1;
        }
    }
    counts
}

/// What the final fix-up did.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FixUp {
    /// round(r0 N): the weights the result prunes.
    pub goal: usize,
    /// Weights the learned thresholds pruned before the fix-up.
    pub pruned_before: usize,
    /// Weights pruned after it (= `goal` unless tied magnitudes made it impossible).
    pub pruned_after: usize,
    /// Weights whose mask the fix-up changed (pruned or restored): sum_l |k_l - c_l|.
    pub changed: usize,
    /// Per-layer sparsity and threshold learned by the optimisation, before the fix-up (in the
    /// summary's per-layer table, not repeated here).
    #[serde(skip)]
    pub learned_sparsity: Vec<f64>,
    #[serde(skip)]
    pub learned_threshold: Vec<f64>,
}

fn layer_states(model: &dyn Module<f32>) -> Vec<ThresholdedLayer> {
    let mut states = Vec::new();
    model.visit_weights("", &mut |_, w| {
        let t = threshold_mask(w).threshold();
        let mut sorted_abs: Vec<f64> = w.raw.value().iter().map(|v| v.abs() as f64).collect();
        sorted_abs.sort_unstable_by(f64::total_cmp);
        // Widening f32 to f64 is exact, so this is the forward pass's `|w| <= t` count.
        let pruned = sorted_abs.partition_point(|&a| a <= t as f64);
        states.push(ThresholdedLayer {
            sorted_abs,
            threshold: t as f64,
            pruned,
        });
    });
    states
}

/// Moves the learned thresholds so exactly round(r0 N) weights are pruned ([`fixup_counts`]);
/// each changed layer gets the threshold [`ThresholdMask::for_prune_count`] finds for its new
/// count. A layer whose count no threshold can hit (|w| ties straddling it, or |w| >= 1 beyond
/// sigmoid's range) keeps the nearest count and the others absorb the rest, at most one round per
/// layer.
pub fn fix_up(model: &mut dyn Module<f32>, r0: f64) -> FixUp {
    let before = layer_states(model);
    let total: usize = before.iter().map(|l| l.sorted_abs.len()).sum();
    let goal = (r0 * total as f64).round() as usize;
    let mut locked = vec![false; before.len()];
    let mut states = before.clone();
    for _ in 0..=before.len() {
        if states.iter().map(|l| l.pruned).sum::<usize>() == goal {
            break;
        }
        let counts = fixup_counts(&states, &locked, goal);
        let mut layer = 0;
        model.visit_weights_mut("", &mut |_, w| {
            if counts[layer] != states[layer].pruned {
                let variant = threshold_mask(w).variant;
                w.transform = Some(Box::new(ThresholdMask::for_prune_count(
                    w.raw.value(),
                    counts[layer],
                    variant,
                )));
            }
            layer += 1;
        });
        states = layer_states(model);
        let mut newly_locked = false;
        for (l, state) in states.iter().enumerate() {
            if state.pruned != counts[l] && !locked[l] {
                locked[l] = true;
                newly_locked = true;
            }
        }
        if !newly_locked {
            break;
        }
    }
    FixUp {
        goal,
        pruned_before: before.iter().map(|l| l.pruned).sum(),
        pruned_after: states.iter().map(|l| l.pruned).sum(),
        changed: before
            .iter()
            .zip(&states)
            .map(|(b, a)| b.pruned.abs_diff(a.pruned))
            .sum(),
        learned_sparsity: before
            .iter()
            .map(|l| l.pruned as f64 / l.sorted_abs.len().max(1) as f64)
            .collect(),
        learned_threshold: before.iter().map(|l| l.threshold).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(abs: &[f64], threshold: f64) -> ThresholdedLayer {
        let mut sorted_abs = abs.to_vec();
        sorted_abs.sort_by(f64::total_cmp);
        let pruned = sorted_abs.partition_point(|&a| a <= threshold);
        ThresholdedLayer {
            sorted_abs,
            threshold,
            pruned,
        }
    }

    #[test]
    fn prunes_the_smallest_ratios_to_the_threshold() {
        // Layer 0 (t = 1): kept 1.5, 3; layer 1 (t = 10): kept 12, 40. Ratios: 1.5, 3 | 1.2, 4.
        let layers = [
            layer(&[0.5, 1.5, 3.0], 1.0),
            layer(&[5.0, 12.0, 40.0], 10.0),
        ];
        assert_eq!(fixup_counts(&layers, &[false, false], 2), vec![1, 1]);
        assert_eq!(fixup_counts(&layers, &[false, false], 3), vec![1, 2]);
        assert_eq!(fixup_counts(&layers, &[false, false], 4), vec![2, 2]);
        assert_eq!(fixup_counts(&layers, &[false, true], 4), vec![3, 1]);
    }

    #[test]
    fn restores_the_largest_ratios_to_the_threshold() {
        // Pruned: layer 0 (t = 1): 0.2, 0.9 (ratios .2, .9); layer 1 (t = 10): 5, 8 (ratios .5, .8).
        let layers = [layer(&[0.2, 0.9, 3.0], 1.0), layer(&[5.0, 8.0, 40.0], 10.0)];
        assert_eq!(fixup_counts(&layers, &[false, false], 3), vec![1, 2]);
        assert_eq!(fixup_counts(&layers, &[false, false], 2), vec![1, 1]);
        assert_eq!(fixup_counts(&layers, &[false, false], 0), vec![0, 0]);
        assert_eq!(fixup_counts(&layers, &[false, false], 4), vec![2, 2]);
    }

    #[test]
    fn equal_ratios_go_to_the_earlier_layer() {
        let layers = [layer(&[0.5, 2.0], 1.0), layer(&[5.0, 20.0], 10.0)];
        assert_eq!(fixup_counts(&layers, &[false, false], 3), vec![2, 1]);
    }

    #[test]
    fn surrogate_and_density_flags_parse() {
        let config = |variant: Option<&str>, surrogate: Option<&str>, density: Option<&str>| {
            PosttrainConfig {
                variant: variant.map(String::from),
                surrogate: surrogate.map(String::from),
                density: density.map(String::from),
                ..PosttrainConfig::default()
            }
        };
        let paper = FcptsOptions::from_config(&config(None, None, None)).unwrap();
        assert_eq!(
            paper.variant,
            FcptsVariant::Paper(Surrogate::ClippedIdentity)
        );
        assert_eq!(paper.density, Density::paper());
        let code = FcptsOptions::from_config(&config(Some("code"), None, None)).unwrap();
        assert_eq!(code.variant, FcptsVariant::Code);
        assert_eq!(code.density, Density::authors_code());
        let mixed =
            FcptsOptions::from_config(&config(None, Some("sigmoid:0.01"), Some("histogram")))
                .unwrap();
        assert_eq!(
            mixed.variant,
            FcptsVariant::Paper(Surrogate::Sigmoid { temperature: 0.01 })
        );
        assert_eq!(mixed.surrogate_name().as_deref(), Some("sigmoid:0.01"));
        assert_eq!(mixed.density_name(), "histogram");
        for (v, s, d, message) in [
            (
                Some("magic"),
                None,
                None,
                "unknown --variant `magic` (expected one of: paper, code)",
            ),
            (
                None,
                Some("sigmoid:0"),
                None,
                "unknown --surrogate `sigmoid:0` (expected clipped or sigmoid:T with T > 0)",
            ),
            (
                None,
                None,
                Some("gauss"),
                "unknown --density `gauss` (expected one of: kde, histogram)",
            ),
            (
                Some("code"),
                Some("clipped"),
                None,
                "--surrogate has no effect with --variant code (its mask sends no gradient to the thresholds)",
            ),
        ] {
            let err = FcptsOptions::from_config(&config(v, s, d)).unwrap_err();
            assert_eq!(err.to_string(), message);
        }
    }
}
