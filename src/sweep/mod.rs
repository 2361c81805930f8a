//! Sweeps: a grid of (model x method x settings x sparsity x seed) runs as one command
//! (`sparsegrad sweep`, format in `docs/sweeps.md`). A sweep file or flags are read into a
//! [`grid::Grid`], expanded and validated into jobs ([`mod@expand`]), written as scheduler-neutral
//! command lines plus Slurm scripts ([`scripts`]), run here with N workers ([`runner`]), and
//! gathered over seeds into tables and figures ([`mod@aggregate`], [`results`], [`figures`],
//! [`rounds`] for iterative methods' per-round rows).
//!
//! Shaped around files rather than a daemon so the same `jobs.txt` runs under `sweep --run`,
//! GNU parallel, `xargs -P` and Slurm arrays: every line is idempotent (`--finish`), and the
//! only ordering is two phases (training, then the post-training that reads it). The
//! subcommand's flags and their meaning are [`command`].

pub mod aggregate;
pub mod command;
pub mod expand;
pub mod figures;
pub mod grid;
pub mod results;
pub mod rounds;
pub mod runner;
pub mod scripts;

pub use aggregate::{Aggregate, Setting, Stat, aggregate};
pub use expand::{Job, expand};
pub use grid::{Grid, Kind};
pub use scripts::{Launch, Manifest, SlurmResources, write_sweep};
