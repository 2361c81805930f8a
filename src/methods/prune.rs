//! Pruning as three orthogonal parts (JaxPruner's split), shared by every mask-based method:
//!
//! - a **score** per weight, higher = more worth keeping ([`Score`]: magnitude, random; the
//!   gradient-based scores of SNIP, GraSP and Wanda are computed by their methods);
//! - a **distribution** of the global target over the layers (`sparsity::budget::Distribution`:
//!   uniform with optional dense first / last layer, ERK, ER, global, LAMP);
//! - a **schedule** of when to prune and to what sparsity (`methods::schedule`).
//!
//! This module holds what joins them: which weights may be pruned ([`prunable_weights`]), the
//! all-ones masks put on them ([`attach_masks`]), per-layer prune counts for a target
//! ([`prune_counts`]), the mask update that never revives a pruned weight ([`shrink_masks`]),
//! baking masks into plain weights ([`bake`]), and the shared settings of a method pruning to a
//! global target ([`PruneTarget`]).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::methods::options::TrainContext;
use crate::nn::{Module, Weight};
use crate::rng::{Rng, uniform};
use crate::sparsity::Mask;
use crate::sparsity::budget::{Distribution, ScoredLayer, allocate_scores};
use crate::tape::Tensor;

/// One prunable weight of a model, in `visit_weights` order (forward order: first = input
/// layer, last = classifier).
#[derive(Clone, Debug, PartialEq)]
pub struct Prunable {
    pub name: String,
    pub shape: Vec<usize>,
    /// Whether the method sparsifies it (false for a layer kept dense by a flag).
    pub sparsified: bool,
}

impl Prunable {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The model's prunable weights, the first and/or last marked dense when asked. Fails when the
/// model has none, or when the flags leave nothing to sparsify.
pub fn prunable_weights(
    model: &dyn Module<f32>,
    first_layer_dense: bool,
    last_layer_dense: bool,
) -> Result<Vec<Prunable>> {
    let mut out = Vec::new();
    model.visit_weights("", &mut |name, w| {
        out.push(Prunable {
            name: name.to_string(),
            shape: w.raw.shape().to_vec(),
            sparsified: true,
        })
    });
    if out.is_empty() {
        return Err(Error::invalid("the model has no prunable weights"));
    }
    let last = out.len() - 1;
    out[0].sparsified &= !first_layer_dense;
    out[last].sparsified &= !last_layer_dense;
    if out.iter().all(|p| !p.sparsified) {
        return Err(Error::invalid(
            "--first-layer-dense and --last-layer-dense leave no layer to sparsify",
        ));
    }
    Ok(out)
}

/// What a weight is scored by when a mask is chosen (higher = kept).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Score {
    /// |w| of the effective weight.
    Magnitude,
    /// A uniform draw per weight (random pruning, the control of SNIP and lottery tickets).
    Random,
}

/// Per-layer scores of the model's prunable weights (row-major, in `visit_weights` order);
/// `rng` is drawn from for `Random` only.
pub fn scores(model: &dyn Module<f32>, score: Score, rng: &mut Rng) -> Vec<Vec<f64>> {
    let mut out = Vec::new();
    model.visit_weights("", &mut |_, w| {
        let effective = w.effective();
        out.push(match score {
            Score::Magnitude => effective.iter().map(|v| v.abs() as f64).collect(),
            Score::Random => effective.iter().map(|_| uniform(rng, 0.0, 1.0)).collect(),
        });
    });
    out
}

/// How many weights of each layer to prune so that the global sparsity over ALL prunable weights
/// (dense layers included) is `target`, spread by `distribution` (ranking `scores` for the global
/// ones). `exact`: the counts sum to round(target N). Otherwise (the intermediate steps of a
/// gradual schedule) each sparsified layer prunes floor of its real-valued share: monotone in
/// `target`, so growing targets never ask a layer to un-prune. Global rankings are always exact.
///
/// `pruned` (one flag per weight, or empty) marks weights already pruned: the global rankings
/// count them first, so their counts never fall below what is pruned.
pub fn prune_counts(
    layers: &[Prunable],
    distribution: Distribution,
    scores: &[Vec<f64>],
    pruned: &[Vec<bool>],
    target: f64,
    exact: bool,
) -> Result<Vec<usize>> {
    if distribution == Distribution::Uniform {
        return uniform_prune_counts(layers, target, exact);
    }
    let scored: Vec<ScoredLayer> = layers
        .iter()
        .enumerate()
        .map(|(l, layer)| ScoredLayer {
            name: &layer.name,
            shape: &layer.shape,
            scores: &scores[l],
            pruned: pruned.get(l).map_or(&[], |p| p.as_slice()),
            dense: !layer.sparsified,
        })
        .collect();
    let allocation = allocate_scores(&distribution.budget(), &scored, target)?;
    let counts: Vec<usize> = allocation.layers.iter().map(|l| l.prune).collect();
    if exact || distribution.ranks_scores() {
        return Ok(counts);
    }
    // ERK / ER: the floor of each layer's real-valued count, from the densities.
    let shapes: Vec<&[usize]> = layers.iter().map(|l| l.shape.as_slice()).collect();
    let dense: Vec<bool> = layers.iter().map(|l| !l.sparsified).collect();
    let kernel = distribution == Distribution::Erk;
    let densities =
        crate::sparsity::budget::erdos_renyi_densities_with(&shapes, target, 1.0, kernel, &dense);
    Ok(layers
        .iter()
        .zip(densities)
        .map(|(l, d)| ((l.len() as f64 * (1.0 - d.clamp(0.0, 1.0))).floor() as usize).min(l.len()))
        .collect())
}

/// [`prune_counts`] for the uniform distribution: the same sparsity in every sparsified layer
/// (the dense layers' share made up by the others). `exact`: the counts sum to round(target N)
/// (per-layer rates within one weight of uniform, `budget::allocate_scores`); otherwise each
/// layer prunes floor(n_l s_l).
pub fn uniform_prune_counts(layers: &[Prunable], target: f64, exact: bool) -> Result<Vec<usize>> {
    let total: usize = layers.iter().map(Prunable::len).sum();
    let pruned_total: usize = layers
        .iter()
        .filter(|l| l.sparsified)
        .map(Prunable::len)
        .sum();
    let goal = (target * total as f64).round() as usize;
    if goal > pruned_total {
        return Err(Error::invalid(format!(
            "--target-sparsity {target} cannot be met with the dense layers kept dense (the other layers hold {:.1}% of the weights)",
            100.0 * pruned_total as f64 / total as f64
        )));
    }
    let mut counts = vec![0; layers.len()];
    let sparsified: Vec<usize> = (0..layers.len())
        .filter(|&i| layers[i].sparsified)
        .collect();
    if exact {
        // The sparsified layers alone, at the share goal / pruned_total of their weights.
        let share = goal as f64 / pruned_total as f64;
        let flat: Vec<Vec<usize>> = sparsified.iter().map(|&i| vec![layers[i].len()]).collect();
        let scored: Vec<ScoredLayer> = sparsified
            .iter()
            .zip(&flat)
            .map(|(&i, shape)| ScoredLayer {
                name: &layers[i].name,
                shape,
                scores: &[],
                pruned: &[],
                dense: false,
            })
            .collect();
        let allocation = allocate_scores(&Distribution::Uniform.budget(), &scored, share)?;
        for (&i, budget) in sparsified.iter().zip(&allocation.layers) {
            counts[i] = budget.prune;
        }
    } else {
        let share = target * total as f64 / pruned_total as f64;
        for &i in &sparsified {
            counts[i] = ((layers[i].len() as f64 * share).floor() as usize).min(layers[i].len());
        }
    }
    Ok(counts)
}

/// The start of every mask-based method: finds the prunable weights and attaches an all-ones
/// `Mask` to every sparsified one, so that a checkpoint holds the same tensors before and after
/// pruning. With a `target`, checks now that it can be met with the dense layers kept dense (so
/// the run fails before it starts, not at its first pruning step).
pub fn attach_masks(
    model: &mut dyn Module<f32>,
    first_layer_dense: bool,
    last_layer_dense: bool,
    target: Option<f64>,
) -> Result<Vec<Prunable>> {
    let layers = prunable_weights(model, first_layer_dense, last_layer_dense)?;
    if let Some(target) = target {
        uniform_prune_counts(&layers, target, true)?;
    }
    let mut i = 0;
    model.visit_weights_mut("", &mut |_, w| {
        if layers[i].sparsified {
            w.transform = Some(Box::new(Mask::<f32>::ones(w.raw.shape())));
        }
        i += 1;
    });
    Ok(layers)
}

/// What a method pruning to a global target reads of the shared settings: how much
/// (`--target-sparsity`), how it is spread over the layers (`--distribution`), and which layers
/// stay dense.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PruneTarget {
    pub sparsity: f64,
    pub distribution: Distribution,
    pub first_layer_dense: bool,
    pub last_layer_dense: bool,
}

impl PruneTarget {
    /// The shared settings it reads (the `Plugin::SHARED` of a method built on it).
    pub const SETTINGS: &'static [&'static str] = &[
        "target_sparsity",
        "distribution",
        "first_layer_dense",
        "last_layer_dense",
    ];

    /// The run's shared settings; `method` cannot run without `--target-sparsity`.
    pub fn required(context: &TrainContext, method: &str) -> Result<Self> {
        let shared = &context.shared;
        let sparsity = shared
            .target_sparsity
            .ok_or_else(|| Error::invalid(format!("--method {method} needs --target-sparsity")))?;
        Ok(PruneTarget {
            sparsity,
            distribution: shared.distribution,
            first_layer_dense: shared.first_layer_dense,
            last_layer_dense: shared.last_layer_dense,
        })
    }

    /// [`attach_masks`] on the layers this target sparsifies, checking that it can be met.
    pub fn attach_masks(&self, model: &mut dyn Module<f32>) -> Result<Vec<Prunable>> {
        attach_masks(
            model,
            self.first_layer_dense,
            self.last_layer_dense,
            Some(self.sparsity),
        )
    }

    /// The exact per-layer prune counts of the target ([`prune_counts`]).
    pub fn counts(
        &self,
        layers: &[Prunable],
        scores: &[Vec<f64>],
        pruned: &[Vec<bool>],
    ) -> Result<Vec<usize>> {
        prune_counts(
            layers,
            self.distribution,
            scores,
            pruned,
            self.sparsity,
            true,
        )
    }

    /// Prunes to the target at once: the lowest `scores` go, as many per layer as
    /// [`PruneTarget::counts`] says.
    pub fn prune(
        &self,
        model: &mut dyn Module<f32>,
        layers: &[Prunable],
        scores: &[Vec<f64>],
        pruned: &[Vec<bool>],
    ) -> Result<()> {
        let counts = self.counts(layers, scores, pruned)?;
        shrink_masks(model, layers, scores, &counts)
    }
}

/// The `Mask` on a weight, if it has one.
pub fn mask_of(w: &mut Weight<f32>) -> Option<&mut Mask<f32>> {
    w.transform
        .as_mut()
        .and_then(|t| t.as_any_mut().downcast_mut::<Mask<f32>>())
}

/// Shrinks every sparsified layer's mask to prune `counts[l]` weights, pruning the lowest
/// `scores` among those still kept (a pruned weight stays pruned: a mask only loses entries; a
/// count below the pruned count keeps the mask), and zeroes the pruned weights at once.
pub fn shrink_masks(
    model: &mut dyn Module<f32>,
    layers: &[Prunable],
    scores: &[Vec<f64>],
    counts: &[usize],
) -> Result<()> {
    let mut result = Ok(());
    let mut i = 0;
    model.visit_weights_mut("", &mut |name, w| {
        let keep = layers[i].len() - counts[i];
        let layer_scores = &scores[i];
        i += 1;
        let Some(mask) = mask_of(w) else { return };
        if let Err(e) = mask.shrink_to_top_scores(layer_scores, keep) {
            result = Err(Error::invalid(format!("{name}: {e}")));
        }
        w.reapply_mask();
    });
    result
}

/// Replaces every transformed weight by its effective weight and removes the transforms, so the
/// model is plain weights (what `finish` does for every method here).
pub fn bake(model: &mut dyn Module<f32>) {
    model.visit_weights_mut("", &mut |_, w| {
        if w.transform.is_some() {
            let effective = w.effective();
            w.raw.set_value(effective);
            w.transform = None;
        }
    });
}

/// Per layer, which weights the layer's mask prunes (all false for a weight without a mask).
pub fn masked_out(model: &dyn Module<f32>) -> Vec<Vec<bool>> {
    let mut out = Vec::new();
    model.visit_weights("", &mut |_, w| {
        out.push(match w.transform.as_ref().and_then(|t| t.mask()) {
            Some(mask) => mask.iter().map(|&m| m == 0.0).collect(),
            None => vec![false; w.raw.len()],
        })
    });
    out
}

/// Per-layer kept fractions of the effective weights (reports of iterative methods).
pub fn kept_fractions(model: &dyn Module<f32>) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    model.visit_weights("", &mut |name, w| {
        let e: Tensor<f32> = w.effective();
        let kept = e.iter().filter(|v| **v != 0.0).count();
        out.push((name.to_string(), kept as f64 / e.len().max(1) as f64));
    });
    out
}
