//! Training-time sparsification methods (`sparsegrad train --method`), one file each, and the
//! registry from `--method` names to [`Method`](crate::train::method::Method) implementations.
//!
//! | `--method` | file | what it does |
//! |---|---|---|
//! | `dense` | `train/method.rs` | nothing |
//! | `str` | [`str`](mod@str) | learnable soft thresholds (Kusupati et al. 2020), optional target controller |
//! | `gmp` | [`gmp`] | gradual magnitude pruning on the cubic schedule (Zhu & Gupta 2017) |
//! | `magnitude` | [`magnitude`] | train dense, prune once by magnitude, fine-tune |
//!
//! Helpers shared by the methods live here: which weights a method may sparsify (the
//! `--first-layer-dense` / `--last-layer-dense` flags), uniform per-layer prune counts, and
//! baking transforms into plain weights.

pub mod gmp;
pub mod magnitude;
pub mod str;

use crate::error::{Error, Result};
use crate::nn::Module;
use crate::sparsity::Mask;
use crate::sparsity::budget::{Budget, allocate};
use crate::tape::Tensor;
use crate::train::config::TrainConfig;
use crate::train::method::{Dense, Method};

pub use gmp::{Gmp, GmpSchedule};
pub use magnitude::Magnitude;
pub use str::{ControlScale, Controller, Str, StrConfig, StrGranularity};

/// The method a config asks for.
pub fn build(config: &TrainConfig) -> Result<Box<dyn Method>> {
    match config.method.as_str() {
        "dense" => Ok(Box::new(Dense)),
        "str" => Ok(Box::new(Str::new(StrConfig::from_train_config(config)?))),
        "gmp" => Ok(Box::new(Gmp::from_train_config(config)?)),
        "magnitude" => Ok(Box::new(Magnitude::from_train_config(config)?)),
        other => Err(Error::invalid(format!(
            "--method `{other}` is not available yet"
        ))),
    }
}

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

/// How many weights to prune in each layer so that the global sparsity over ALL prunable weights
/// (dense layers included) is `target`, with the same sparsity in every sparsified layer (the
/// dense layers' share is made up by the others).
///
/// `exact`: the counts sum to round(target N) (per-layer rates within one weight of uniform,
/// `budget::allocate`). Otherwise each layer prunes floor(n_l s_l): monotone in `target`, so a
/// schedule of growing targets never asks a layer to un-prune, and never more than the exact
/// counts of a larger target.
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
        let shapes: Vec<Tensor<f32>> = sparsified
            .iter()
            .map(|&i| Tensor::zeros(ndarray::IxDyn(&[layers[i].len()])))
            .collect();
        let named: Vec<(&str, &Tensor<f32>)> = sparsified
            .iter()
            .zip(&shapes)
            .map(|(&i, t)| (layers[i].name.as_str(), t))
            .collect();
        let share = goal as f64 / pruned_total as f64;
        let allocation = allocate(
            &Budget::Uniform {
                first_layer_dense: false,
            },
            &named,
            share,
        )?;
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

/// The start of every uniform masking method (GMP, magnitude): finds the prunable weights, checks
/// that `target` can be met with the dense layers kept dense (so the run fails now, not at its
/// first pruning step), and attaches an all-ones `Mask` to every sparsified weight, so that a
/// checkpoint holds the same tensors before and after pruning.
pub fn attach_uniform_masks(
    model: &mut dyn Module<f32>,
    first_layer_dense: bool,
    last_layer_dense: bool,
    target: f64,
) -> Result<Vec<Prunable>> {
    let layers = prunable_weights(model, first_layer_dense, last_layer_dense)?;
    uniform_prune_counts(&layers, target, true)?;
    let mut i = 0;
    model.visit_weights_mut("", &mut |_, w| {
        if layers[i].sparsified {
            w.transform = Some(Box::new(Mask::<f32>::ones(w.raw.shape())));
        }
        i += 1;
    });
    Ok(layers)
}

/// The pruning step of the uniform masking methods: for every sparsified weight (the ones with a
/// `Mask`), `update(name, mask, raw weight, keep)` rewrites the mask to keep `keep` = n_l -
/// `counts[l]` entries, and the pruned weights are zeroed at once. Every layer is visited; an
/// error (the last, if several) is returned after the walk.
pub fn update_masks(
    model: &mut dyn Module<f32>,
    layers: &[Prunable],
    counts: &[usize],
    mut update: impl FnMut(&str, &mut Mask<f32>, &Tensor<f32>, usize) -> Result<()>,
) -> Result<()> {
    let mut result = Ok(());
    let mut i = 0;
    model.visit_weights_mut("", &mut |name, w| {
        let keep = layers[i].len() - counts[i];
        i += 1;
        let Some(mask) = w
            .transform
            .as_mut()
            .and_then(|t| t.as_any_mut().downcast_mut::<Mask<f32>>())
        else {
            return;
        };
        if let Err(e) = update(name, mask, w.raw.value(), keep) {
            result = Err(e);
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
