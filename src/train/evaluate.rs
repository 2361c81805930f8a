//! Accuracy of a model on a data set, in evaluation mode and without recording gradients.

use crate::data::{Dataset, Normalize, gather};
use crate::metrics::correct;
use crate::nn::Module;
use crate::tape::Tape;

/// Images per evaluation batch (large: no gradients are kept).
const EVAL_BATCH: usize = 1000;

/// Fraction of `indices` of `data` the model classifies correctly (0 when `indices` is empty).
/// The model is put in evaluation mode and back in training mode afterwards.
pub fn accuracy(
    model: &mut dyn Module<f32>,
    data: &Dataset,
    indices: &[usize],
    norm: &Normalize,
) -> f64 {
    if indices.is_empty() {
        return 0.0;
    }
    model.set_training(false);
    let right: usize = indices
        .chunks(EVAL_BATCH)
        .map(|chunk| {
            let batch = gather::<f32>(data, chunk, norm);
            let tape = Tape::new();
            let _no_grad = tape.no_grad();
            correct(
                &model.forward(tape.constant(batch.images)).value(),
                &batch.labels,
            )
        })
        .sum();
    model.set_training(true);
    right as f64 / indices.len() as f64
}
