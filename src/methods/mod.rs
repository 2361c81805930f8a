//! Sparsification methods, one file each on one plugin shape ([`Method`] + [`Plugin`]), and the
//! registries from `--method` names to them ([`registry`]).
//!
//! | `--method` | subcommand | file | what it does |
//! |---|---|---|---|
//! | `dense` | train | [`dense`] | nothing |
//! | `str` | train | [`str`](mod@str), [`str_controller`] | learnable soft thresholds (Kusupati et al. 2020), optional target controller |
//! | `gmp` | train | [`gmp`] | gradual magnitude pruning on the cubic schedule (Zhu & Gupta 2017) |
//! | `magnitude` | train | [`magnitude`] | train dense, prune once by magnitude, fine-tune |
//! | `fcpts` | posttrain | [`fcpts`], [`fixup`] | learned per-layer thresholds to an exact target (Gong et al. 2024) |
//! | `magnitude-*`, `lamp` | posttrain | [`baselines`] | one-shot magnitude pruning with an allocation rule |
//!
//! Pruning methods are compositions of a score, a distribution over layers and a schedule
//! ([`prune`], [`schedule`], `sparsity::budget`). `docs/methods.md` has each method's equations,
//! defaults and how it was verified; `docs/architecture.md` the checklist for adding a method.

pub mod baselines;
pub mod dense;
pub mod fcpts;
pub mod fixup;
pub mod gmp;
pub mod magnitude;
pub mod options;
pub mod plugin;
pub mod prune;
pub mod registry;
pub mod schedule;
pub mod str;
pub mod str_controller;
pub mod str_watch;

pub use fixup::FixUp;
pub use gmp::Gmp;
pub use magnitude::Magnitude;
pub use options::{PosttrainContext, SharedOptions, TrainContext};
pub use plugin::{InitData, Method, MethodState, NoOptions, Plugin, RunShape, StepInfo};
pub use prune::{Prunable, bake, prunable_weights, uniform_prune_counts};
pub use registry::{PosttrainMethod, PosttrainMethodOptions, TrainMethod, TrainMethodOptions};
pub use schedule::PolynomialSchedule;
pub use str::{ControlScale, Controller, Str, StrConfig, StrGranularity};
