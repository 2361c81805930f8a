//! Training runs: the loop ([`trainer`]) and its setup, fresh or resumed ([`session`]). The
//! configuration, run directory, logs, evaluation and progress output are the run layer's
//! (`crate::run`), shared with `posttrain`; methods plug in through `crate::methods`.

pub mod session;
pub mod trainer;

pub use crate::methods::{Method, StepInfo};
pub use crate::run::config::{SparsityConfig, TrainConfig};
pub use crate::run::{evaluate, progress::Progress};
pub use session::{RunOptions, build_optimizer};
pub use trainer::{Outcome, train};
