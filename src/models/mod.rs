//! Reference architectures of the sparsity literature.

pub mod lenet300;

pub use lenet300::LeNet300;
