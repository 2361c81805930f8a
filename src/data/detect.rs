//! Recognising a data directory by the files it holds, so `--data DIR` needs no format flag.

use std::path::{Path, PathBuf};

use crate::data::cifar::{
    Cifar100Labels, find_cifar10_files, find_cifar100_files, load_cifar10_dir, load_cifar100_dir,
};
use crate::data::dataset::{DataKind, IDX_FILES, TrainTest, load_mnist_dir};
use crate::error::{Error, Result};

/// The name that means the MNIST subset bundled with the crate (`data/mnist-10k`).
pub const BUNDLED_MNIST: &str = "mnist-10k";

/// Choices `load_dir` cannot infer from the files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Fine (100) or coarse (20) classes for CIFAR-100.
    pub cifar100_labels: Cifar100Labels,
}

/// `path` itself, except that the bare name `mnist-10k` means the bundled data: `data/mnist-10k`
/// under the current directory if it exists there, else in the crate's source tree (so the name
/// works from any directory on the machine the crate was built on).
pub fn resolve_data_path(path: &Path) -> Result<PathBuf> {
    if path.as_os_str() != BUNDLED_MNIST {
        return Ok(path.to_path_buf());
    }
    let local = Path::new("data").join(BUNDLED_MNIST);
    let built = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(BUNDLED_MNIST);
    [local, built.clone()]
        .into_iter()
        .find(|p| p.is_dir())
        .ok_or_else(|| {
            Error::format(
                path,
                format!(
                    "the bundled data set is in neither ./data/{BUNDLED_MNIST} nor {}",
                    built.display()
                ),
            )
        })
}

/// The format of the data directory `dir`, from the files present.
/// `--data` as a run saves it: the bundled name as is (it is found wherever the run is), any
/// other existing path made absolute, so `eval` and `posttrain` find it from any directory. A
/// path that does not resolve (missing, or not UTF-8) is kept as typed for the loader to refuse.
pub fn resolved_data_name(name: &str) -> String {
    if name == BUNDLED_MNIST {
        return name.to_string();
    }
    std::fs::canonicalize(name)
        .ok()
        .and_then(|p| p.to_str().map(str::to_string))
        .unwrap_or_else(|| name.to_string())
}

pub fn detect_kind(dir: &Path) -> Result<DataKind> {
    if !dir.is_dir() {
        return Err(Error::format(dir, "data directory does not exist"));
    }
    let idx = IDX_FILES
        .iter()
        .any(|f| dir.join(f).is_file() || dir.join(format!("{f}.gz")).is_file());
    let found: Vec<DataKind> = [
        (DataKind::Idx, idx),
        (DataKind::Cifar10, find_cifar10_files(dir).is_some()),
        (DataKind::Cifar100, find_cifar100_files(dir).is_some()),
    ]
    .into_iter()
    .filter_map(|(kind, present)| present.then_some(kind))
    .collect();
    match found.as_slice() {
        [kind] => Ok(*kind),
        [] => Err(Error::format(
            dir,
            "not a recognised data directory: expected MNIST-style IDX files \
             (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, \
             t10k-labels-idx1-ubyte, each optionally .gz), CIFAR-10 binary batches \
             (data_batch_1.bin .. data_batch_5.bin and test_batch.bin, here or in cifar-10-batches-bin/) \
             or CIFAR-100 binary files (train.bin and test.bin, here or in cifar-100-binary/)",
        )),
        several => Err(Error::format(
            dir,
            format!(
                "holds files of more than one data set ({}); point at a directory with only one",
                several
                    .iter()
                    .map(|k| k.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// Loads the data directory `path` (or the bundled `mnist-10k`), whatever its format.
pub fn load_dir(path: &Path) -> Result<TrainTest> {
    load_dir_with(path, &LoadOptions::default())
}

/// [`load_dir`] with explicit options.
pub fn load_dir_with(path: &Path, options: &LoadOptions) -> Result<TrainTest> {
    let dir = resolve_data_path(path)?;
    match detect_kind(&dir)? {
        DataKind::Idx => load_mnist_dir(&dir),
        DataKind::Cifar10 => load_cifar10_dir(&dir),
        DataKind::Cifar100 => load_cifar100_dir(&dir, options.cifar100_labels),
    }
}
