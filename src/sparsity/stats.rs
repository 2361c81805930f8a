//! Exact sparsity figures of plain arrays: the numbers every report, log line and test quotes.
//!
//! A weight counts as pruned only if it is exactly zero (no tolerance): a method that leaves
//! 1e-12 where it meant 0 has not pruned anything, and a report must say so.

use crate::float::Float;
use crate::nn::Module;
use crate::tape::Tensor;

/// Number of entries that are exactly zero (`-0.0` included; NaN is not zero).
pub fn count_zeros<F: Float>(t: &Tensor<F>) -> usize {
    t.iter().filter(|&&x| x == F::zero()).count()
}

/// Fraction of entries that are exactly zero; 0 for an empty array (nothing was pruned).
pub fn sparsity<F: Float>(t: &Tensor<F>) -> f64 {
    if t.is_empty() {
        return 0.0;
    }
    count_zeros(t) as f64 / t.len() as f64
}

/// The sparsity of one prunable weight, measured on its effective value (after its transform).
#[derive(Clone, Debug, PartialEq)]
pub struct LayerSparsity {
    /// The raw weight's full parameter name (`fc1.weight`).
    pub name: String,
    /// Number of entries.
    pub params: usize,
    /// Entries that are exactly zero.
    pub zeros: usize,
}

impl LayerSparsity {
    /// zeros / params (0 for an empty weight).
    pub fn sparsity(&self) -> f64 {
        if self.params == 0 {
            0.0
        } else {
            self.zeros as f64 / self.params as f64
        }
    }
}

/// Per-layer sparsity of every prunable weight of `model` (its `visit_weights` order), measured on
/// the effective weights the layers compute with.
pub fn layer_sparsities<F: Float, M: Module<F> + ?Sized>(model: &M) -> Vec<LayerSparsity> {
    let mut out = Vec::new();
    model.visit_weights("", &mut |name, w| {
        let eff = w.effective();
        out.push(LayerSparsity {
            name: name.to_string(),
            params: eff.len(),
            zeros: count_zeros(&eff),
        });
    });
    out
}

/// Global sparsity S = sum_l zeros_l / sum_l n_l (0 when there are no weights).
pub fn global_sparsity(layers: &[LayerSparsity]) -> f64 {
    let params: usize = layers.iter().map(|l| l.params).sum();
    let zeros: usize = layers.iter().map(|l| l.zeros).sum();
    if params == 0 {
        0.0
    } else {
        zeros as f64 / params as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn counts_exact_zeros_only() {
        let t = array![0.0f32, -0.0, 1e-30, f32::NAN, 2.0].into_dyn();
        assert_eq!(count_zeros(&t), 2);
        assert_eq!(sparsity(&t), 0.4);
        assert_eq!(sparsity(&Tensor::<f64>::zeros(ndarray::IxDyn(&[0]))), 0.0);
    }

    #[test]
    fn global_sparsity_weights_layers_by_size() {
        let layers = [
            LayerSparsity {
                name: "a".into(),
                params: 100,
                zeros: 90,
            },
            LayerSparsity {
                name: "b".into(),
                params: 900,
                zeros: 0,
            },
        ];
        assert_eq!(layers[0].sparsity(), 0.9);
        assert_eq!(global_sparsity(&layers), 0.09);
        assert_eq!(global_sparsity(&[]), 0.0);
    }
}
