//! Mini-batches: seeded shuffling and conversion of byte images to normalised float tensors.
//!
//! The order of epoch `e` is a pure function of `(seed, e)`, so a run resumed at epoch `e` sees
//! exactly the batches an uninterrupted run would.

use ndarray::{Array4, Axis, IxDyn};
use rand::seq::SliceRandom;

use crate::data::dataset::Dataset;
use crate::float::Float;
use crate::rng::derived;
use crate::tape::Tensor;

/// Stream id of the shuffling RNG (see [`crate::rng::derived`]).
const SHUFFLE_STREAM: u64 = 0x5348_5546;

/// Per-channel normalisation (x / 255 - mean) / std.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalize {
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

impl Normalize {
    /// Statistics of a (training) data set.
    pub fn fit(data: &Dataset) -> Self {
        let (mean, std) = data.channel_stats();
        let std = std.into_iter().map(|s| if s > 0.0 { s } else { 1.0 }).collect();
        Normalize { mean, std }
    }
}

/// A batch: images `[B, C, H, W]` and labels.
pub struct Batch<F: Float> {
    pub images: Tensor<F>,
    pub labels: Vec<usize>,
}

/// `indices` shuffled for `epoch` (Fisher-Yates with an RNG derived from the seed and epoch).
pub fn epoch_order(indices: &[usize], seed: u64, epoch: usize) -> Vec<usize> {
    let mut order = indices.to_vec();
    let mut rng = derived(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15), SHUFFLE_STREAM);
    order.shuffle(&mut rng);
    order
}

/// The images and labels at `indices`, normalised.
pub fn gather<F: Float>(data: &Dataset, indices: &[usize], norm: &Normalize) -> Batch<F> {
    let (c, h, w) = data.image_shape();
    let mut images = Array4::<F>::zeros((indices.len(), c, h, w));
    for (mut dst, &i) in images.outer_iter_mut().zip(indices) {
        for (ch, (mut dst, src)) in dst.outer_iter_mut().zip(data.images.index_axis(Axis(0), i).outer_iter()).enumerate() {
            let (m, s) = (norm.mean[ch], norm.std[ch]);
            ndarray::Zip::from(&mut dst).and(&src).for_each(|d, &p| *d = F::c((p as f64 / 255.0 - m) / s));
        }
    }
    let images = images.into_dyn().into_shape_with_order(IxDyn(&[indices.len(), c, h, w])).expect("same shape");
    Batch {
        images,
        labels: indices.iter().map(|&i| data.labels[i] as usize).collect(),
    }
}

/// Consecutive batches of `order` (the last may be smaller).
pub fn batches<'a, F: Float>(
    data: &'a Dataset,
    order: &'a [usize],
    batch_size: usize,
    norm: &'a Normalize,
) -> impl Iterator<Item = Batch<F>> + 'a {
    assert!(batch_size > 0, "batch size must be positive");
    order.chunks(batch_size).map(move |idx| gather(data, idx, norm))
}
