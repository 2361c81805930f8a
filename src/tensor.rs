//! The dense n-dimensional array every value, parameter and gradient is stored in.
//!
//! Its own module (rather than in `tape`) so that parameters and gradient stores, which the tape
//! uses, do not depend on the tape.

/// Row-major n-dimensional array of the element type `F` (`f32` for training, `f64` for checks).
pub type Tensor<F> = ndarray::ArrayD<F>;
