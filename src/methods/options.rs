//! What a method is built from: the settings several training methods share
//! ([`SharedOptions`]), the run settings a method may read ([`TrainContext`],
//! [`PosttrainContext`]), and the rule that every other method setting stays at its default
//! ([`refuse_unused`]). Defaults are written once, in the `#[arg]` attributes: [`clap_defaults`]
//! reads them back for `Default` and for configs saved before a field existed.

use clap::{Args, Command, FromArgMatches};
use serde::{Deserialize, Serialize};

use crate::sparsity::budget::Distribution;

/// The value of every field of a clap `Args` struct when no flag is given: its `#[arg]`
/// defaults (`None` for optional fields, and for required ones, whose absence the command line
/// reports itself).
pub fn clap_defaults<T: Args + FromArgMatches>() -> T {
    let command = T::augment_args(Command::new("defaults").ignore_errors(true));
    let matches = command.get_matches_from(["defaults"]);
    T::from_arg_matches(&matches).expect("every field has a default or is optional")
}

/// The settings (clap ids = field names) of an options struct.
pub fn settings_of<T: Args>() -> Vec<String> {
    T::augment_args(Command::new("settings"))
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .collect()
}

/// Settings several training methods read. Each method names the ones it reads
/// (`Plugin::SHARED`); the others must stay at their defaults.
#[derive(Args, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[group(skip)]
#[serde(default)]
pub struct SharedOptions {
    /// Global sparsity to reach over all prunable weights, in (0, 1).
    #[arg(long)]
    pub target_sparsity: Option<f64>,
    /// How the target is spread over the layers.
    #[arg(long, value_enum, default_value_t = Distribution::Uniform)]
    pub distribution: Distribution,
    /// Keep the first prunable layer dense.
    #[arg(long)]
    pub first_layer_dense: bool,
    /// Keep the last prunable layer (the classifier) dense.
    #[arg(long)]
    pub last_layer_dense: bool,
    /// Iterative methods (han, lottery): pruning rounds after the first, dense one; each round
    /// runs --epochs epochs (default: per method).
    #[arg(long)]
    pub rounds: Option<usize>,
}

impl Default for SharedOptions {
    fn default() -> Self {
        clap_defaults()
    }
}

/// What a training method may read of its run besides its options.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainContext {
    pub shared: SharedOptions,
    /// Epochs of one round (`--epochs`).
    pub epochs: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub seed: u64,
}

/// What a post-training method may read of its run besides its options.
#[derive(Clone, Debug, PartialEq)]
pub struct PosttrainContext {
    /// r0 (`--target-sparsity`).
    pub target_sparsity: f64,
    /// Learning rate of the model's parameters.
    pub lr: f64,
    /// Whether the reconstruction fine-tuning runs (`--no-finetune` turns it off).
    pub finetune: bool,
    pub seed: u64,
}

/// Refuses the first method setting (in name order) that the method does not read (`reads`)
/// and that either differs from its default or was given on the command line (`given`): it
/// would be silently ignored. `now` and `defaults` map every method setting of the subcommand
/// to its value.
pub fn refuse_unused(
    now: &serde_json::Map<String, serde_json::Value>,
    defaults: &serde_json::Map<String, serde_json::Value>,
    reads: &[String],
    given: &dyn Fn(&str) -> bool,
    method: &str,
) -> crate::error::Result<()> {
    let unused = now.iter().find(|(key, value)| {
        !reads.iter().any(|r| r == *key)
            && (given(key) || defaults.get(*key).is_some_and(|d| d != *value))
    });
    match unused {
        None => Ok(()),
        Some((setting, _)) => Err(crate::error::Error::invalid(format!(
            "{} is not used by --method {method}",
            flag_of(setting)
        ))),
    }
}

/// `--flag-name` of a setting (field) name.
pub fn flag_of(setting: &str) -> String {
    format!("--{}", setting.replace('_', "-"))
}
