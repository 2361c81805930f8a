//! Sparsification methods, one file each on one plugin shape ([`Method`] + [`Plugin`]), and the
//! registries from `--method` names to them ([`registry`]).
//!
//! | `--method` | subcommand | file | what it does |
//! |---|---|---|---|
//! | `dense` | train | [`dense`] | nothing |
//! | `str` | train | [`str`](mod@str), [`str_controller`] | learnable soft thresholds (Kusupati et al. 2020), optional target controller |
//! | `gmp` | train | [`gmp`] | gradual magnitude pruning on the cubic schedule (Zhu & Gupta 2017) |
//! | `magnitude` | train | [`magnitude`] | train dense, prune once by magnitude, fine-tune |
//! | `han` | train | [`han`] | prune \|w\| < q std per layer, retrain at reduced lr, iterate (Han et al. 2015) |
//! | `lottery` | train | [`lottery`] | iterative magnitude pruning with rewinding, controls (Frankle & Carbin 2019) |
//! | `snip` | train | [`snip`] | prune at init by connection sensitivity \|g w\| (Lee et al. 2019) |
//! | `grasp` | train | [`grasp`] | prune at init by gradient flow -w (H g) (Wang et al. 2020) |
//! | `rigl`, `set`, `static` | train | [`dynamic`], [`drop_grow`] | sparse training from a random mask: drop by \|w\|, grow by \|gradient\| (RigL, Evci et al. 2020) or at random (SET), or keep it (static) |
//! | `dnw` | train | [`dnw`] | forward top-k of \|w\| per layer (or global), straight-through gradient to every weight (Wortsman et al. 2019) |
//! | `acdc` | train | [`acdc`] | dense warm-up, alternating sparse (magnitude mask) and dense phases, ending sparse; exports the last dense model too (Peste et al. 2021) |
//! | `sensitivity` | train | [`sensitivity`] | insensitivity-weighted decay, then thresholding (Tartaglione et al. 2018) |
//! | `l0` | train | [`l0`] | hard-concrete L0 gates per neuron / channel / weight (Louizos et al. 2018) |
//! | `fcpts` | posttrain | [`fcpts`], [`fixup`] | learned per-layer thresholds to an exact target (Gong et al. 2024) |
//! | `magnitude-*`, `lamp` | posttrain | [`baselines`] | one-shot magnitude pruning with an allocation rule |
//! | `wanda` | posttrain | [`wanda`] | \|W_ij\| \|\|X_j\|\| on calibration inputs, per output row (Sun et al. 2023) |
//!
//! Pruning methods are compositions of a score, a distribution over layers and a schedule
//! ([`prune`], [`schedule`], `sparsity::budget`). `docs/methods.md` has each method's equations,
//! defaults and how it was verified; `docs/architecture.md` the checklist for adding a method.

pub mod acdc;
pub mod baselines;
pub mod dense;
pub mod dnw;
pub mod drop_grow;
pub mod dynamic;
pub mod fcpts;
pub mod fixup;
pub mod gmp;
pub mod grasp;
pub mod han;
pub mod l0;
pub mod lottery;
pub mod magnitude;
pub mod options;
pub mod plugin;
pub mod prune;
pub mod registry;
pub mod schedule;
pub mod sensitivity;
pub mod snip;
pub mod str;
pub mod str_controller;
pub mod str_watch;
pub mod wanda;

pub use fixup::FixUp;
pub use gmp::Gmp;
pub use magnitude::Magnitude;
pub use options::{PosttrainContext, SharedOptions, TrainContext};
pub use plugin::{EpochEval, InitData, Method, MethodState, NoOptions, Plugin, RunShape, StepInfo};
pub use prune::{Prunable, bake, prunable_weights, uniform_prune_counts};
pub use registry::{PosttrainMethod, PosttrainMethodOptions, TrainMethod, TrainMethodOptions};
pub use schedule::PolynomialSchedule;
pub use str::{ControlScale, Controller, Str, StrConfig, StrGranularity};
