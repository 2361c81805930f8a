//! Classification metrics on plain arrays.

use ndarray::Axis;

use crate::float::Float;
use crate::tape::Tensor;

/// Number of rows of `logits` `[N, C]` whose arg-max equals the label.
pub fn correct<F: Float>(logits: &Tensor<F>, labels: &[usize]) -> usize {
    logits
        .axis_iter(Axis(0))
        .zip(labels)
        .filter(|(row, label)| {
            let best = row
                .iter()
                .enumerate()
                .fold((0, F::neg_infinity()), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
            best.0 == **label
        })
        .count()
}
