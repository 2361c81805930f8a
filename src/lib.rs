//! sparsegrad: sparse neural-network training on CPUs.
//!
//! A tape-based reverse-mode autodiff engine over `ndarray`, the layers and optimisers needed to
//! train real networks, and the math of sparsity as gradient-checked primitives.
//!
//! ```
//! use sparsegrad::prelude::*;
//! use ndarray::array;
//!
//! let tape = Tape::<f64>::new();
//! let x = tape.leaf(array![1.0, -2.0, 3.0].into_dyn());
//! let w = tape.leaf(array![0.5, 0.5, 0.5].into_dyn());
//! let loss = (x * w).relu().sum(); // relu(x * w) summed
//! let grads = loss.backward();
//! // d loss / d w = x where x * w > 0, else 0
//! assert_eq!(grads.wrt(w).unwrap(), &array![1.0, 0.0, 3.0].into_dyn());
//! ```

pub mod alloc;
pub mod check;
pub mod data;
pub mod dual;
pub mod error;
pub mod float;
pub mod grads;
pub mod hvp;
pub mod io;
pub mod kernels;
pub mod methods;
pub mod metrics;
pub mod models;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod param;
pub mod posttrain;
pub mod rng;
pub mod run;
pub mod simd;
pub mod sparsity;
pub mod sweep;
pub mod tape;
pub mod tensor;
pub mod train;
pub mod vmath;

/// The names most programs need.
pub mod prelude {
    pub use crate::error::{Error, Result};
    pub use crate::float::Float;
    pub use crate::grads::Grads;
    pub use crate::nn::Conv2d;
    pub use crate::nn::{Linear, Module};
    pub use crate::ops::conv::Conv2dConfig;
    pub use crate::optim::{
        Adam, AdamConfig, LrSchedule, ParamGroup, ParamMatch, Schedule, Warmup,
    };
    pub use crate::optim::{Optimizer, Sgd, SgdConfig};
    pub use crate::param::Param;
    pub use crate::tape::{Tape, Tensor, Var};
}

/// The README's code blocks run as doctests, so the tour cannot go stale.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
