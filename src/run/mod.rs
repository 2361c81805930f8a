//! The run layer shared by `train` and `posttrain`: the run directory (file names and the
//! existing-run policy, [`dir`]), the configs saved in it ([`config`]; posttrain's is in
//! `posttrain::config`), its logs ([`log`]) and summaries ([`summary`]), checkpoint metadata and
//! model loading ([`meta`]), which epoch is "best" ([`best`]), the divergence guard ([`guard`]),
//! Ctrl-C and SIGTERM ([`interrupt`]), figures ([`figures`]) and what
//! `report` prints ([`report`]). Everything a run writes goes through here.

pub mod best;
pub mod config;
pub mod dir;
pub mod evaluate;
pub mod figures;
pub mod flags;
pub mod guard;
pub mod interrupt;
pub mod log;
pub mod meta;
pub mod progress;
pub mod report;
pub mod summary;

pub use config::{SparsityConfig, TrainConfig};
pub use dir::Existing;
pub use meta::{CheckpointMeta, LoopState, ModelInfo, load_model};
pub use progress::Progress;
pub use summary::{EpochMetrics, LayerSparsity, PosttrainSummary, Summary};
