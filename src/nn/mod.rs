//! Layers. Every weight-bearing layer holds its weight in a [`Weight`], whose optional
//! [`WeightTransform`] is where sparsification methods plug in.

pub mod batchnorm;
pub mod dropout;
pub mod init;
pub mod linear;
pub mod module;
pub mod pool;
pub mod weight;

pub use batchnorm::{BatchNorm, BatchNormKind};
pub use dropout::Dropout;
pub use linear::Linear;
pub use module::{Module, count_trainable, join, named_params};
pub use pool::{AvgPool2d, GlobalAvgPool2d, MaxPool2d, PoolWindow};
pub use weight::{Weight, WeightTransform};
