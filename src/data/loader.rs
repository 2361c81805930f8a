//! Mini-batches: seeded shuffling and conversion of byte images to normalised float tensors.
//!
//! The order of epoch `e` is a pure function of `(seed, e)`, so a run resumed at epoch `e` sees
//! exactly the batches an uninterrupted run would; augmentation (see [`crate::data::augment`]) is
//! a pure function of `(seed, epoch, sample index)` for the same reason.

use ndarray::{Array4, Axis, CowArray, IxDyn};
use rand::seq::SliceRandom;

use crate::data::augment::Augment;
use crate::data::dataset::Dataset;
use crate::error::{Error, Result};
use crate::float::Float;
use crate::rng::derived;
use crate::tape::Tensor;

/// Stream id of the shuffling RNG (see [`crate::rng::derived`]).
const SHUFFLE_STREAM: u64 = 0x5348_5546;
/// Stream id of the train/validation split.
const SPLIT_STREAM: u64 = 0x5350_4c54;

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
        let std = std
            .into_iter()
            .map(|s| if s > 0.0 { s } else { 1.0 })
            .collect();
        Normalize { mean, std }
    }

    /// The per-channel (R, G, B) mean and standard deviation of the 50 000 CIFAR-10 training
    /// images, the values most CIFAR code uses.
    pub fn cifar10() -> Self {
        Normalize {
            mean: vec![0.4914, 0.4822, 0.4465],
            std: vec![0.2470, 0.2435, 0.2616],
        }
    }

    /// The mean and standard deviation of the 60 000 MNIST training images (the PyTorch MNIST
    /// example's 0.1307 / 0.3081).
    pub fn mnist() -> Self {
        Normalize {
            mean: vec![0.1307],
            std: vec![0.3081],
        }
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
    let mut rng = derived(
        seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        SHUFFLE_STREAM,
    );
    order.shuffle(&mut rng);
    order
}

/// The images and labels at `indices`, normalised (no augmentation: evaluation batches).
pub fn gather<F: Float>(data: &Dataset, indices: &[usize], norm: &Normalize) -> Batch<F> {
    gather_augmented(data, indices, norm, None, 0)
}

/// The images and labels at `indices`, each image augmented (if `augment` is given) with the draw
/// of its data-set index in `epoch`, then normalised.
pub fn gather_augmented<F: Float>(
    data: &Dataset,
    indices: &[usize],
    norm: &Normalize,
    augment: Option<&Augment>,
    epoch: usize,
) -> Batch<F> {
    let (c, h, w) = data.image_shape();
    assert!(
        norm.mean.len() == c && norm.std.len() == c,
        "normalisation has {} means and {} stds but the images have {c} channels",
        norm.mean.len(),
        norm.std.len()
    );
    // A byte has 256 values: normalise each once per channel, then look pixels up.
    let tables: Vec<[F; 256]> = (0..c)
        .map(|ch| {
            let (m, s) = (norm.mean[ch], norm.std[ch]);
            std::array::from_fn(|p| F::c((p as f64 / 255.0 - m) / s))
        })
        .collect();
    let plane = h * w;
    let mut images = Array4::<F>::zeros((indices.len(), c, h, w));
    let out = images.as_slice_mut().expect("fresh arrays are contiguous");
    for (dst, &i) in out.chunks_exact_mut(c * plane).zip(indices) {
        let original = data.images.index_axis(Axis(0), i);
        let src = match augment {
            Some(a) => CowArray::from(a.draw(epoch, i).apply(original, a.pad)),
            None => original.as_standard_layout(),
        };
        let src = src.as_slice().expect("standard layout");
        for ((dst, src), table) in dst
            .chunks_exact_mut(plane)
            .zip(src.chunks_exact(plane))
            .zip(&tables)
        {
            for (d, &p) in dst.iter_mut().zip(src) {
                *d = table[p as usize];
            }
        }
    }
    let images = images
        .into_dyn()
        .into_shape_with_order(IxDyn(&[indices.len(), c, h, w]))
        .expect("same shape");
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
    augmented_batches(data, order, batch_size, norm, None, 0)
}

/// Consecutive batches of `order` for training in `epoch`, augmented if `augment` is given.
pub fn augmented_batches<'a, F: Float>(
    data: &'a Dataset,
    order: &'a [usize],
    batch_size: usize,
    norm: &'a Normalize,
    augment: Option<&'a Augment>,
    epoch: usize,
) -> impl Iterator<Item = Batch<F>> + 'a {
    assert!(batch_size > 0, "batch size must be positive");
    order
        .chunks(batch_size)
        .map(move |idx| gather_augmented(data, idx, norm, augment, epoch))
}

/// Splits the training indices `0..n` into (train, validation), each ascending: a seeded random
/// `floor(n * fraction)` of them is held out for validation. `fraction` 0 holds out nothing; it
/// must lie in [0, 1) so that some training data is left.
pub fn split_train_val(n: usize, fraction: f64, seed: u64) -> Result<(Vec<usize>, Vec<usize>)> {
    if !(0.0..1.0).contains(&fraction) {
        return Err(Error::invalid(format!(
            "validation fraction {fraction} is outside [0, 1)"
        )));
    }
    let n_val = ((n as f64 * fraction).floor() as usize).min(n);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut derived(seed, SPLIT_STREAM));
    let mut val = order.split_off(n - n_val);
    order.sort_unstable();
    val.sort_unstable();
    Ok((order, val))
}
