//! Reference architectures of the sparsity literature.

pub mod lenet300;

pub use lenet300::LeNet300;

use crate::error::{Error, Result};
use crate::nn::Module;
use crate::rng::Rng;

/// What to build: a model name and the data it will see.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    /// One of `train::config::MODELS`.
    pub name: String,
    /// (channels, height, width) of one input image.
    pub input: (usize, usize, usize),
    pub classes: usize,
    /// Channel-width multiplier (MobileNet's alpha); 1.0 for the standard model.
    pub width: f64,
}

/// Builds the model of `spec`, initialised from `rng`. Every model visits its prunable weights
/// in forward order, so the first visited is the input layer and the last the classifier.
pub fn build(spec: &ModelSpec, rng: &mut Rng) -> Result<Box<dyn Module<f32>>> {
    let (c, h, w) = spec.input;
    match spec.name.as_str() {
        "lenet300" => Ok(Box::new(LeNet300::new(c * h * w, spec.classes, rng))),
        other => Err(Error::invalid(format!(
            "--model `{other}` is not available yet"
        ))),
    }
}
