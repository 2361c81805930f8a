//! Data: file readers and batching.

pub mod dataset;
pub mod idx;
pub mod loader;

pub use dataset::{Dataset, TrainTest, load_mnist_dir};
pub use loader::{Batch, Normalize, batches, epoch_order, gather};
pub mod augment;
pub mod cifar;
pub mod detect;

pub use augment::{Augment, CropFlip};
pub use cifar::{
    Cifar100Labels, load_cifar10_dir, load_cifar100_dir, read_cifar10_file, read_cifar100_file,
};
pub use dataset::DataKind;
pub use detect::{LoadOptions, detect_kind, load_dir, load_dir_with};
pub use loader::{augmented_batches, gather_augmented, split_train_val};
