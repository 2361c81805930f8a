//! In-memory image classification data sets and the MNIST-style directory loader.

use std::path::{Path, PathBuf};

use ndarray::Array4;

use crate::data::augment::Augment;
use crate::data::idx::{Expected, read_idx_expecting};
use crate::data::loader::Normalize;
use crate::error::{Error, Result};

/// Images as bytes `[N, C, H, W]` with one label each.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub images: Array4<u8>,
    pub labels: Vec<u8>,
    pub classes: usize,
}

impl Dataset {
    /// Checks shapes and label range; `source` names the data in messages.
    pub fn new(images: Array4<u8>, labels: Vec<u8>, classes: usize, source: &Path) -> Result<Self> {
        if images.shape()[0] != labels.len() {
            return Err(Error::format(
                source,
                format!("{} images but {} labels", images.shape()[0], labels.len()),
            ));
        }
        check_labels(source, &labels, classes, "label")?;
        Ok(Dataset {
            images,
            labels,
            classes,
        })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// (channels, height, width).
    pub fn image_shape(&self) -> (usize, usize, usize) {
        let s = self.images.shape();
        (s[1], s[2], s[3])
    }

    /// Per-channel mean and standard deviation of the pixels scaled to [0, 1].
    pub fn channel_stats(&self) -> (Vec<f64>, Vec<f64>) {
        let c = self.images.shape()[1];
        (0..c)
            .map(|ch| {
                let plane = self.images.index_axis(ndarray::Axis(1), ch);
                let n = plane.len() as f64;
                let (s, s2) = plane.iter().fold((0.0, 0.0), |(s, s2), &p| {
                    let v = p as f64 / 255.0;
                    (s + v, s2 + v * v)
                });
                let mean = s / n;
                (mean, (s2 / n - mean * mean).max(0.0).sqrt())
            })
            .unzip()
    }
}

/// Every label in `labels` is below `classes`; otherwise an error naming `source`, the label
/// (`what`, e.g. "fine label") and its record index.
pub(crate) fn check_labels(source: &Path, labels: &[u8], classes: usize, what: &str) -> Result<()> {
    match labels
        .iter()
        .enumerate()
        .find(|&(_, &l)| l as usize >= classes)
    {
        Some((i, &l)) => Err(Error::format(
            source,
            format!("{what} {l} of record {i} is out of range for {classes} classes"),
        )),
        None => Ok(()),
    }
}

/// Which file format a data set came from; it decides the standard preprocessing
/// ([`TrainTest::default_normalize`], [`DataKind::default_augment`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataKind {
    /// MNIST-style IDX files (MNIST, Fashion-MNIST, the bundled MNIST-10k).
    Idx,
    Cifar10,
    Cifar100,
}

impl DataKind {
    /// Short lowercase name for logs and run summaries.
    pub fn name(self) -> &'static str {
        match self {
            DataKind::Idx => "idx",
            DataKind::Cifar10 => "cifar10",
            DataKind::Cifar100 => "cifar100",
        }
    }

    /// The usual training augmentation: for CIFAR the pad-4 random crop and horizontal flip of
    /// He et al. (2016); none for the digit/clothing IDX sets, where flips change the class.
    pub fn default_augment(self, seed: u64) -> Option<Augment> {
        match self {
            DataKind::Idx => None,
            DataKind::Cifar10 | DataKind::Cifar100 => Some(Augment::cifar(seed)),
        }
    }
}

/// Training and test sets of one directory.
#[derive(Clone, Debug)]
pub struct TrainTest {
    pub train: Dataset,
    pub test: Dataset,
    /// The directory the files were read from.
    pub source: PathBuf,
    pub kind: DataKind,
}

impl TrainTest {
    /// The two splits of `source`, each with the file (or directory) its images came from,
    /// refused unless they agree: a model trained on one split is evaluated on the other, so
    /// their images must have one shape and their labels one set of classes. Without this check a
    /// mismatched test split would load and then fail inside the first evaluation, an epoch in.
    pub fn new(
        (train, train_images): (Dataset, &Path),
        (test, test_images): (Dataset, &Path),
        source: PathBuf,
        kind: DataKind,
    ) -> Result<Self> {
        let shape = |d: &Dataset| {
            let (c, h, w) = d.image_shape();
            format!("{c}x{h}x{w}")
        };
        if train.image_shape() != test.image_shape() {
            return Err(Error::format(
                test_images,
                format!(
                    "test images are {} (channels x height x width) but the training images in {} \
                     are {}; both splits must have the same shape",
                    shape(&test),
                    train_images.display(),
                    shape(&train)
                ),
            ));
        }
        if train.classes != test.classes {
            return Err(Error::format(
                test_images,
                format!(
                    "test labels have {} classes but the training labels of {} have {}",
                    test.classes,
                    train_images.display(),
                    train.classes
                ),
            ));
        }
        Ok(TrainTest {
            train,
            test,
            source,
            kind,
        })
    }

    /// The usual normalisation: the published CIFAR-10 training-set constants for CIFAR-10, the
    /// statistics of this training set otherwise (an IDX directory may be MNIST or
    /// Fashion-MNIST, whose constants differ; for full CIFAR-100 the fit is its standard values).
    pub fn default_normalize(&self) -> Normalize {
        match self.kind {
            DataKind::Cifar10 => Normalize::cifar10(),
            DataKind::Idx | DataKind::Cifar100 => Normalize::fit(&self.train),
        }
    }
}

/// `name` or `name.gz` inside `dir`.
fn find(dir: &Path, name: &str) -> Result<PathBuf> {
    for candidate in [dir.join(name), dir.join(format!("{name}.gz"))] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(Error::format(
        dir,
        format!("no {name} or {name}.gz in this directory"),
    ))
}

/// One split's images and labels, with the path of its images file (for messages comparing the
/// splits).
fn load_split(
    dir: &Path,
    images: &str,
    labels: &str,
    classes: usize,
) -> Result<(Dataset, PathBuf)> {
    let image_path = find(dir, images)?;
    let label_path = find(dir, labels)?;
    let x = read_idx_expecting(
        &image_path,
        Expected {
            rank: 3,
            layout: "images [N, H, W]",
        },
    )?;
    let y = read_idx_expecting(
        &label_path,
        Expected {
            rank: 1,
            layout: "labels [N]",
        },
    )?;
    if x.dims[0] != y.dims[0] {
        return Err(Error::format(
            &label_path,
            format!(
                "{} labels for {} images in {}",
                y.dims[0],
                x.dims[0],
                image_path.display()
            ),
        ));
    }
    let images = Array4::from_shape_vec((x.dims[0], 1, x.dims[1], x.dims[2]), x.data)
        .expect("size validated");
    Ok((
        Dataset::new(images, y.data, classes, &label_path)?,
        image_path,
    ))
}

/// The four files of an MNIST-format directory (each raw or with `.gz`): training images and
/// labels, test images and labels.
pub const IDX_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// An MNIST-format directory (MNIST, Fashion-MNIST, the bundled MNIST-10k): the four standard
/// IDX files, raw or gzip-compressed, 10 classes.
pub fn load_mnist_dir(dir: &Path) -> Result<TrainTest> {
    if !dir.is_dir() {
        return Err(Error::format(dir, "data directory does not exist"));
    }
    let (train, train_images) = load_split(dir, IDX_FILES[0], IDX_FILES[1], 10)?;
    let (test, test_images) = load_split(dir, IDX_FILES[2], IDX_FILES[3], 10)?;
    TrainTest::new(
        (train, &train_images),
        (test, &test_images),
        dir.to_path_buf(),
        DataKind::Idx,
    )
}
