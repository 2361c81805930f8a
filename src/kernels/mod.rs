//! Plain array kernels without a tape: the GEMM (`gemm`, with its own packed AVX-512 / AVX2
//! micro-kernels), im2col + GEMM convolution, the direct convolution the tests compare against,
//! the sparse kernels of fixed-mask layers (`sparse_*`), and elementwise loops split over threads
//! (`parallel`).

pub mod conv_config;
pub mod conv_gemm;
pub mod conv_problem;
pub mod direct_conv;
pub mod gemm;
mod gemm_pack;
pub mod im2col;
pub mod microkernel;
pub mod packed_gemm;
pub mod parallel;
pub mod shift_conv;
pub mod sparse_conv;
mod sparse_conv_geometry;
pub mod sparse_linear;
pub mod sparse_micro;
pub mod sparse_pattern;
pub mod sparse_select;
pub mod spin;
pub mod transpose;
