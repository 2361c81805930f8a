//! Training runs: configuration, the loop, evaluation, progress output, and the hooks through
//! which sparsification methods take part.

pub mod config;
pub mod evaluate;
pub mod method;
pub mod progress;
pub mod trainer;

pub use config::{SparsityConfig, TrainConfig};
pub use method::{Method, StepInfo};
pub use progress::Progress;
pub use trainer::{Outcome, RunOptions, train};
