//! Reference architectures of the sparsity literature.

pub mod lenet300;

pub use lenet300::LeNet300;

use crate::error::{Error, Result};
use crate::nn::Module;
use crate::rng::Rng;

/// Builds model `name` for images of `input` = (channels, height, width) and `classes` outputs.
pub fn build(
    name: &str,
    input: (usize, usize, usize),
    classes: usize,
    rng: &mut Rng,
) -> Result<Box<dyn Module<f32>>> {
    let (c, h, w) = input;
    match name {
        "lenet300" => Ok(Box::new(LeNet300::new(c * h * w, classes, rng))),
        other => Err(Error::invalid(format!(
            "--model `{other}` is not available yet"
        ))),
    }
}
