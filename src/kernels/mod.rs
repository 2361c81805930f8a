//! Plain array kernels without a tape: GEMM and (later) im2col, direct convolution references,
//! sparse inference kernels.

pub mod conv_config;
pub mod conv_gemm;
pub mod direct_conv;
pub mod gemm;
pub mod im2col;
pub mod microkernel;
pub mod packed_gemm;
