//! STR's threshold function g (the pruning threshold is g(s) for a learnable s), evaluated with
//! its derivative in f64 by the soft-threshold ops of `ops::sparsity`.

use std::sync::Arc;

use crate::ops::sparsity::sigmoid;

/// A scalar function with its derivative, shared by reference.
pub type ScalarFn = Arc<dyn Fn(f64) -> f64 + Send + Sync>;

/// STR's threshold function g: the pruning threshold is g(s) for a learnable s.
#[derive(Clone)]
pub enum ThresholdFn {
    /// g = sigmoid: the paper's choice for unstructured sparsity.
    Sigmoid,
    /// g = exp: the paper's choice for structured (low-rank) sparsity.
    Exp,
    /// Any user function with its derivative `df` (not checked against `f`: gradcheck it).
    Custom { f: ScalarFn, df: ScalarFn },
}

impl std::fmt::Debug for ThresholdFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ThresholdFn::Sigmoid => "Sigmoid",
            ThresholdFn::Exp => "Exp",
            ThresholdFn::Custom { .. } => "Custom",
        })
    }
}

impl ThresholdFn {
    /// A custom g from a function and its derivative.
    pub fn custom(
        f: impl Fn(f64) -> f64 + Send + Sync + 'static,
        df: impl Fn(f64) -> f64 + Send + Sync + 'static,
    ) -> Self {
        ThresholdFn::Custom {
            f: Arc::new(f),
            df: Arc::new(df),
        }
    }

    /// g(s), evaluated in f64.
    pub fn value(&self, s: f64) -> f64 {
        match self {
            ThresholdFn::Sigmoid => sigmoid(s),
            ThresholdFn::Exp => s.exp(),
            ThresholdFn::Custom { f, .. } => f(s),
        }
    }

    /// g'(s), evaluated in f64.
    pub fn derivative(&self, s: f64) -> f64 {
        match self {
            ThresholdFn::Sigmoid => {
                let y = sigmoid(s);
                y * (1.0 - y)
            }
            ThresholdFn::Exp => s.exp(),
            ThresholdFn::Custom { df, .. } => df(s),
        }
    }
}
