//! Layers. Every weight-bearing layer holds its weight in a [`Weight`], whose optional
//! [`WeightTransform`] is where sparsification methods plug in.

pub mod conv2d;
pub mod init;
pub mod linear;
pub mod module;
pub mod weight;

pub use conv2d::Conv2d;
pub use linear::Linear;
pub use module::{Module, count_trainable, join, named_params};
pub use weight::{Weight, WeightTransform};
