//! Training-time sparsification methods (`sparsegrad train --method`), one file each, and the
//! registry from `--method` names to [`Method`](crate::train::method::Method) implementations.

use crate::error::{Error, Result};
use crate::train::config::TrainConfig;
use crate::train::method::{Dense, Method};

/// The method a config asks for.
pub fn build(config: &TrainConfig) -> Result<Box<dyn Method>> {
    match config.method.as_str() {
        "dense" => Ok(Box::new(Dense)),
        other => Err(Error::invalid(format!(
            "--method `{other}` is not available yet"
        ))),
    }
}
