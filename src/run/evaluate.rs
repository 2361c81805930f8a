//! Accuracy of a model on a data set, in evaluation mode and without recording gradients.

use crate::data::{Dataset, Normalize, gather};
use crate::metrics::correct;
use crate::nn::{Module, SparseKernels, set_sparse_kernels, sparse_layers};
use crate::sparsity::mask::mask_exact_zeros;
use crate::tape::Tape;

/// Images per evaluation batch (large: no gradients are kept).
const EVAL_BATCH: usize = 1000;

/// Fraction of `indices` of `data` the model classifies correctly (0 when `indices` is empty).
/// The model is put in evaluation mode and back in the mode it was found in afterwards.
pub fn accuracy(
    model: &mut dyn Module<f32>,
    data: &Dataset,
    indices: &[usize],
    norm: &Normalize,
) -> f64 {
    if indices.is_empty() {
        return 0.0;
    }
    let was_training = model.is_training();
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
    model.set_training(was_training);
    right as f64 / indices.len() as f64
}

/// What `sparsegrad eval` measures of a checkpoint or export.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointEval {
    pub model: String,
    pub method: String,
    /// The data directory evaluated on.
    pub data: std::path::PathBuf,
    pub test_images: usize,
    pub test_accuracy: f64,
    pub sparsity: f64,
    /// Weights whose layers ran on the sparse kernels.
    pub sparse_layers: Vec<String>,
}

/// Test accuracy and sparsity of the model in `path` (a checkpoint, a dense or a sparse export)
/// on `data` (default: the data it was trained on), which must have the images and classes the
/// model was trained on. Plain weights with zeros get a mask of their nonzeros, so that
/// `sparse_kernels` can run their layers sparse.
pub fn evaluate_checkpoint(
    path: &std::path::Path,
    data: Option<&str>,
    sparse_kernels: SparseKernels,
) -> crate::error::Result<CheckpointEval> {
    let (mut model, meta) = crate::run::meta::load_model(path)?;
    mask_exact_zeros(model.as_mut());
    set_sparse_kernels(model.as_mut(), sparse_kernels);
    let info = &meta.info;
    let (data, data_name) = crate::run::meta::load_run_data(data, &meta, path)?;
    if data.test.image_shape() != info.input || data.test.classes != info.classes {
        return Err(crate::error::Error::invalid(format!(
            "--data {data_name}: images {:?} in {} classes, but the model was trained on {:?} in {} classes",
            data.test.image_shape(),
            data.test.classes,
            info.input,
            info.classes
        )));
    }
    let indices: Vec<usize> = (0..data.test.len()).collect();
    let test_accuracy = accuracy(model.as_mut(), &data.test, &indices, &info.normalize());
    Ok(CheckpointEval {
        model: info.model.to_string(),
        method: info.method.clone(),
        data: data.source.clone(),
        test_images: data.test.len(),
        test_accuracy,
        sparsity: crate::sparsity::report::sparsity_report(model.as_ref()).overall_sparsity,
        sparse_layers: sparse_layers(model.as_ref()),
    })
}
