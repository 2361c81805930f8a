//! Layers. Every weight-bearing layer holds its weight in a [`Weight`], whose optional
//! [`WeightTransform`] is where sparsification methods plug in.

pub mod batchnorm;
pub mod conv2d;
pub mod dropout;
pub mod fastgrnn;
pub mod gru;
pub mod init;
pub mod input_norms;
pub mod linear;
pub mod module;
pub mod pool;
pub mod recurrent;
pub mod sparse;
pub mod weight;

pub use batchnorm::{BatchNorm, BatchNormKind};
pub use conv2d::Conv2d;
pub use dropout::Dropout;
pub use fastgrnn::{FastGrnnCell, FastGrnnConfig};
pub use gru::GruCell;
pub use linear::Linear;
pub use module::{Module, count_trainable, join, named_params};
pub use pool::{AvgPool2d, GlobalAvgPool2d, MaxPool2d, PoolWindow};
pub use recurrent::{RecurrentCell, Unrolled, split_steps, unroll, unroll_on, unroll_sequence};
pub use sparse::{SparseKernels, set_sparse_kernels, sparse_layers};
pub use weight::{Weight, WeightTransform, zero_pruned};
