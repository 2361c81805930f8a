//! Plain array kernels without a tape: GEMM and (later) im2col, direct convolution references,
//! sparse inference kernels.

pub mod conv_gemm;
pub mod direct_conv;
pub mod gemm;
pub mod im2col;
pub mod sparse_conv;
pub mod sparse_linear;
pub mod sparse_micro;
pub mod sparse_pattern;
pub mod sparse_select;
pub mod transpose;
