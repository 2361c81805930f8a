//! Differentiable ops, one file per family. Each op is a method on [`Var`](crate::tape::Var)
//! whose forward and backward are written together in one function; see `docs/gradients.md`
//! for the derivative table and the test of each op.

pub mod conv;
pub mod density;
pub mod dropout;
pub mod elementwise;
pub mod hard_concrete;
pub mod loss;
pub mod matmul;
pub mod norm;
mod norm_sums;
pub mod pool;
pub mod recurrent;
pub mod reduce;
pub mod shape;
mod soft_threshold_loops;
pub mod sparse;
pub mod sparse_pool;
pub mod sparsity;
pub mod threshold_fn;
