//! Data: file readers and batching.

pub mod dataset;
pub mod idx;
pub mod loader;

pub use dataset::{Dataset, TrainTest, load_mnist_dir};
pub use loader::{Batch, Normalize, batches, epoch_order, gather};
