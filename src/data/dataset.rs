//! In-memory image classification data sets and the MNIST-style directory loader.

use std::path::{Path, PathBuf};

use ndarray::Array4;

use crate::data::idx::read_idx;
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
        if let Some((i, &l)) = labels.iter().enumerate().find(|&(_, &l)| l as usize >= classes) {
            return Err(Error::format(source, format!("label {l} at index {i} is out of range for {classes} classes")));
        }
        Ok(Dataset { images, labels, classes })
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

/// Training and test sets of one directory.
#[derive(Clone, Debug)]
pub struct TrainTest {
    pub train: Dataset,
    pub test: Dataset,
    pub source: PathBuf,
}

/// `name` or `name.gz` inside `dir`.
fn find(dir: &Path, name: &str) -> Result<PathBuf> {
    for candidate in [dir.join(name), dir.join(format!("{name}.gz"))] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(Error::format(dir, format!("no {name} or {name}.gz in this directory")))
}

fn load_split(dir: &Path, images: &str, labels: &str, classes: usize) -> Result<Dataset> {
    let image_path = find(dir, images)?;
    let label_path = find(dir, labels)?;
    let x = read_idx(&image_path)?;
    let y = read_idx(&label_path)?;
    if x.dims.len() != 3 {
        return Err(Error::format(&image_path, format!("expected images [N, H, W], got dimensions {:?}", x.dims)));
    }
    if y.dims.len() != 1 {
        return Err(Error::format(&label_path, format!("expected labels [N], got dimensions {:?}", y.dims)));
    }
    if x.dims[0] != y.dims[0] {
        return Err(Error::format(
            &label_path,
            format!("{} labels for {} images in {}", y.dims[0], x.dims[0], image_path.display()),
        ));
    }
    let images = Array4::from_shape_vec((x.dims[0], 1, x.dims[1], x.dims[2]), x.data).expect("size validated");
    Dataset::new(images, y.data, classes, &label_path)
}

/// An MNIST-format directory (MNIST, Fashion-MNIST, the bundled MNIST-10k): the four standard
/// IDX files, raw or gzip-compressed, 10 classes.
pub fn load_mnist_dir(dir: &Path) -> Result<TrainTest> {
    if !dir.is_dir() {
        return Err(Error::format(dir, "data directory does not exist"));
    }
    Ok(TrainTest {
        train: load_split(dir, "train-images-idx3-ubyte", "train-labels-idx1-ubyte", 10)?,
        test: load_split(dir, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10)?,
        source: dir.to_path_buf(),
    })
}
