//! Sparsification: transforms, methods, budgets and reports.
//!
//! Weight transforms plug into any layer's [`Weight`](crate::nn::Weight) (see `docs/methods.md`):
//!
//! | transform | method | its parameter |
//! |---|---|---|
//! | [`Mask`] | fixed masks (magnitude pruning, LTH, SNIP, GMP, RigL) | `{weight}_mask` (buffer) |
//! | [`SoftThreshold`] | STR | `{weight}_threshold` |
//! | [`GroupSoftThreshold`] | structured (low-rank) STR | `{weight}_threshold` |
//! | [`ThresholdMask`] | FCPTS | `{weight}_score` |
//! | [`HardConcreteGate`] | L0 | `{weight}_log_alpha` |
//! | [`TopKStraightThrough`] | DNW (forward top-k, straight-through backward) | `{weight}_keep` (buffer) |
//!
//! [`density`] holds the weight-density estimates of FCPTS's sparsity bridge, [`stats`] the exact
//! zero counts every figure is built from.

pub mod budget;
pub mod distribution;

pub mod group_soft_threshold;
pub mod hard_concrete_gate;
pub mod mask;
pub mod report;
pub mod sign_mask;
pub mod soft_threshold;
pub mod stats;
pub mod top_k;

pub use crate::ops::density::{self, Bandwidth, Density, DensityEstimate};
pub use group_soft_threshold::GroupSoftThreshold;
pub use hard_concrete_gate::{GateAxis, HardConcreteGate};
pub use mask::Mask;
pub use sign_mask::{FcptsVariant, ThresholdMask};
pub use soft_threshold::{Granularity, SharedThreshold, SoftThreshold};
pub use stats::{count_zeros, sparsity};
pub use top_k::TopKStraightThrough;
