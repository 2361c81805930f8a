//! Plain array kernels without a tape: GEMM and (later) im2col, direct convolution references,
//! sparse inference kernels.

pub mod gemm;
