//! Running masked layers on the sparse kernels.
//!
//! A [`Weight`] whose transform is a fixed mask ([`WeightTransform::mask_shared`](crate::nn::WeightTransform::mask_shared)) can compute its
//! layer with `sparse_linear` / `sparse_conv2d` instead of multiplying a dense weight by the mask.
//! [`set_sparse_kernels`] turns this on for every weight of a model ([`SparseKernels::On`]), or
//! lets the calibrated rule `kernels::sparse_select::prefer_sparse` decide per layer and batch
//! ([`SparseKernels::Auto`]). The two paths give the same values and gradients to rounding (the
//! gradient of pruned raw entries is +0.0 on the sparse path), so optimisers and mask hygiene work
//! unchanged.
//!
//! **The pattern is rebuilt only when the mask changes.** The cache keeps a clone of the mask's
//! `Arc` buffer; a mask is only ever replaced (`Mask::set`, checkpoint loading) or copied on write
//! while shared, so "same `Arc` pointer" means "same mask" and costs nothing to check.

use std::sync::Arc;

use crate::float::Float;
use crate::kernels::sparse_pattern::SparsePattern;
use crate::kernels::sparse_select::{SparseLayer, prefer_sparse};
use crate::nn::{Module, Weight};
use crate::ops::sparse::KeptWeight;
use crate::param::ParamId;
use crate::tape::Tensor;

/// Whether masked layers use the sparse kernels (`--sparse-kernels`).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum SparseKernels {
    /// Always the dense masked path (the library default: nothing changes unless asked; runs
    /// saved before the flag existed read as `off`, so they resume to the same bytes).
    #[default]
    Off,
    /// The sparse kernels for every masked layer.
    On,
    /// The sparse kernels where `prefer_sparse` picks them (layer shape, batch, density): the
    /// command line's default.
    Auto,
}

impl std::fmt::Display for SparseKernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SparseKernels::Off => "off",
            SparseKernels::On => "on",
            SparseKernels::Auto => "auto",
        })
    }
}

/// A weight's sparse-kernel setting, its cached pattern and what its last forward pass did.
#[derive(Default)]
pub struct SparseState<F: Float> {
    mode: SparseKernels,
    /// The mask buffer the pattern was built from, and the pattern.
    cache: Option<(Arc<Tensor<F>>, Arc<SparsePattern>)>,
    /// The raw weight's values at the pattern, and the raw value (id, version) they came from.
    kept: Option<(ParamId, u64, KeptWeight<F>)>,
    ran_sparse: bool,
    builds: usize,
}

impl<F: Float> Weight<F> {
    /// Sets whether this weight's layer may use the sparse kernels.
    pub fn set_sparse_kernels(&mut self, mode: SparseKernels) {
        self.sparse.mode = mode;
        if mode == SparseKernels::Off {
            self.sparse.cache = None;
            self.sparse.kept = None;
        }
    }

    pub fn sparse_kernels(&self) -> SparseKernels {
        self.sparse.mode
    }

    /// Whether the last forward pass of this weight's layer ran on the sparse kernels.
    pub fn ran_sparse(&self) -> bool {
        self.sparse.ran_sparse
    }

    /// How many times the sparse pattern has been built (once per distinct mask).
    pub fn sparse_pattern_builds(&self) -> usize {
        self.sparse.builds
    }

    /// The pattern the layer should run on for `layer` (its shape and batch), or `None` for the
    /// dense path: no fixed mask, sparse kernels off, or `Auto` and the rule says dense. Records
    /// the decision for [`Weight::ran_sparse`].
    pub fn sparse_pattern(&mut self, layer: &SparseLayer) -> Option<Arc<SparsePattern>> {
        let chosen = self.choose_pattern(layer);
        self.sparse.ran_sparse = chosen.is_some();
        chosen
    }

    /// [`Weight::sparse_pattern`] with the raw weight's values at the pattern, for
    /// `Var::sparse_linear_kept` and `Var::sparse_conv2d_kept`. They are gathered again only
    /// when the raw value (its `Param` id and version) or the pattern changes: once per step in
    /// training, once in all for inference.
    pub fn sparse_kept(&mut self, layer: &SparseLayer) -> Option<KeptWeight<F>> {
        let pattern = self.sparse_pattern(layer)?;
        let (id, version) = (self.raw.id(), self.raw.version());
        match &self.sparse.kept {
            Some((i, v, kept))
                if *i == id && *v == version && Arc::ptr_eq(&kept.pattern, &pattern) =>
            {
                Some(kept.clone())
            }
            _ => {
                let kept = KeptWeight::gather(&pattern, self.raw.value());
                self.sparse.kept = Some((id, version, kept.clone()));
                Some(kept)
            }
        }
    }

    fn choose_pattern(&mut self, layer: &SparseLayer) -> Option<Arc<SparsePattern>> {
        // A method that asked for the dense gradient of the effective weight (RigL's growth
        // step) gets the dense path: the sparse kernels compute the gradient at the pattern only.
        if self.sparse.mode == SparseKernels::Off || self.retain_effective_grad {
            return None;
        }
        let mask = self.transform.as_ref()?.mask_shared()?;
        let fresh = match &self.sparse.cache {
            Some((cached, pattern)) if Arc::ptr_eq(cached, &mask) => Arc::clone(pattern),
            _ => {
                let shape = mask.shape();
                let rows = shape.first().copied().unwrap_or(1);
                let cols = shape.iter().skip(1).product();
                let values = mask.as_standard_layout();
                let pattern = Arc::new(SparsePattern::from_mask(
                    rows,
                    cols,
                    values.as_slice().expect("standard layout"),
                ));
                self.sparse.cache = Some((mask, Arc::clone(&pattern)));
                self.sparse.builds += 1;
                pattern
            }
        };
        match self.sparse.mode {
            SparseKernels::Auto if !prefer_sparse(layer, fresh.density()) => None,
            _ => Some(fresh),
        }
    }
}

/// Sets the sparse-kernel mode of every weight of `model` (weights without a fixed mask stay
/// dense whatever the mode).
pub fn set_sparse_kernels<F: Float>(model: &mut dyn Module<F>, mode: SparseKernels) {
    model.visit_weights_mut("", &mut |_, w| w.set_sparse_kernels(mode));
}

/// Names of the weights whose last forward pass ran on the sparse kernels, in visiting order.
pub fn sparse_layers<F: Float>(model: &dyn Module<F>) -> Vec<String> {
    let mut names = Vec::new();
    model.visit_weights("", &mut |name, w| {
        if w.ran_sparse() {
            names.push(name.to_string());
        }
    });
    names
}
