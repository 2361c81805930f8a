//! The divergence guard of both loops: a loss or parameter that is no longer finite stops the run
//! with a message naming where it happened and what is kept, instead of training on garbage.

use std::path::Path;

use crate::error::{Error, Result};
use crate::nn::Module;
use crate::run::dir::CHECKPOINT_FILE;

/// Where a loop is, for the message.
#[derive(Clone, Copy, Debug)]
pub enum At {
    /// A training step (0-based epoch and global step).
    Train { epoch: usize, step: usize },
    /// A post-training iteration (0-based).
    Posttrain { iteration: usize },
}

/// Stops the run if the loss `value` is not finite.
pub fn check_loss(value: f64, out: &Path, at: At) -> Result<()> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(diverged(out, at, &format!("the loss became {value}")))
    }
}

/// Stops the run if a parameter of `model` holds a non-finite value.
pub fn check_params(model: &dyn Module<f32>, out: &Path, at: At) -> Result<()> {
    let mut bad = None;
    model.visit("", &mut |name, p| {
        if bad.is_none() && p.value().iter().any(|v| !v.is_finite()) {
            bad = Some(name.to_string());
        }
    });
    match bad {
        None => Ok(()),
        Some(name) => Err(diverged(
            out,
            at,
            &format!("parameter {name} is no longer finite"),
        )),
    }
}

fn diverged(out: &Path, at: At, what: &str) -> Error {
    match at {
        At::Train { epoch, step } => {
            let kept = if out.join(CHECKPOINT_FILE).exists() {
                format!(
                    "the last good checkpoint is {}",
                    out.join(CHECKPOINT_FILE).display()
                )
            } else {
                "no checkpoint was written yet".to_string()
            };
            Error::Diverged(format!(
                "training diverged in epoch {} at step {}: {what}; {kept} (try a smaller --lr)",
                epoch + 1,
                step + 1
            ))
        }
        At::Posttrain { iteration } => Error::Diverged(format!(
            "posttrain diverged at iteration {}: {what} (try a smaller --lr)",
            iteration + 1
        )),
    }
}
