//! Exact sparsity figures of plain arrays: the numbers every log line and test quotes (per-model
//! tables with parameters and FLOPs are in [`report`](crate::sparsity::report)).
//!
//! A weight counts as pruned only if it is exactly zero (no tolerance): a method that leaves
//! 1e-12 where it meant 0 has not pruned anything, and a report must say so.

use crate::float::Float;
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
}
