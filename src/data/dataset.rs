//! In-memory image classification data sets and the MNIST-style directory loader.

use std::path::{Path, PathBuf};

use ndarray::Array4;

use crate::data::augment::Augment;
use crate::data::idx::read_idx;
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

fn load_split(dir: &Path, images: &str, labels: &str, classes: usize) -> Result<Dataset> {
    let image_path = find(dir, images)?;
    let label_path = find(dir, labels)?;
    let x = read_idx(&image_path)?;
    let y = read_idx(&label_path)?;
    if x.dims.len() != 3 {
        return Err(Error::format(
            &image_path,
            format!("expected images [N, H, W], got dimensions {:?}", x.dims),
        ));
    }
    if y.dims.len() != 1 {
        return Err(Error::format(
            &label_path,
            format!("expected labels [N], got dimensions {:?}", y.dims),
        ));
    }
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
    Dataset::new(images, y.data, classes, &label_path)
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
    Ok(TrainTest {
        train: load_split(dir, IDX_FILES[0], IDX_FILES[1], 10)?,
        test: load_split(dir, IDX_FILES[2], IDX_FILES[3], 10)?,
        source: dir.to_path_buf(),
        kind: DataKind::Idx,
    })
}
