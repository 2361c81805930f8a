//! The `--distribution` names: how a method spreads its global target over the layers, each
//! backed by a [`Budget`] rule of `sparsity::budget`.

use serde::{Deserialize, Serialize};

use crate::sparsity::budget::Budget;

/// How a global target is spread over the layers (`--distribution`; JaxPruner's
/// "sparsity distribution"): by layer shape alone, or by one global ranking of a score.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    /// The same sparsity in every sparsified layer (dense layers made up by the others).
    Uniform,
    /// Erdos-Renyi-kernel (Evci et al. 2020): density proportional to sum(dims) / prod(dims).
    Erk,
    /// Erdos-Renyi (Mocanu et al. 2018): as ERK with the two matrix dims only.
    Er,
    /// One ranking of the method's score over all layers (global magnitude for magnitude).
    Global,
    /// LAMP (Lee et al. 2021): global ranking of s_u^2 / sum_{v >= u} s_v^2 within each layer.
    Lamp,
}

impl Distribution {
    /// The budget rule behind the distribution.
    pub fn budget(self) -> Budget {
        match self {
            Distribution::Uniform => Budget::Uniform {
                first_layer_dense: false,
            },
            Distribution::Erk => Budget::Erk { power_scale: 1.0 },
            Distribution::Er => Budget::Er,
            Distribution::Global => Budget::GlobalMagnitude { normalised: false },
            Distribution::Lamp => Budget::Lamp,
        }
    }

    /// Whether the per-layer counts depend on the scores (global rankings), not only on shapes.
    pub fn ranks_scores(self) -> bool {
        matches!(self, Distribution::Global | Distribution::Lamp)
    }
}
