//! What the run directory's JSON files hold: one line of `metrics.jsonl` per epoch
//! ([`EpochMetrics`]) or of `posttrain.jsonl` per logging window ([`IterationLog`]), and the
//! outcome in `summary.json` ([`Summary`] of a training run, [`PosttrainSummary`] of a
//! post-training run). Every struct reads fields it does not know as their defaults, so
//! summaries written by earlier versions stay readable.

use serde::{Deserialize, Serialize};

use crate::methods::FixUp;
use crate::nn::SparseKernels;
use crate::run::best::BestEpoch;
use crate::run::meta::ExportSizes;
use crate::sparsity::report::{LayerReport, RankReport};

/// Per-layer sparsity in a metrics line (the full report is in `summary.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerSparsity {
    pub name: String,
    pub sparsity: f64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub threshold: Option<f64>,
}

impl From<&LayerReport> for LayerSparsity {
    fn from(l: &LayerReport) -> Self {
        LayerSparsity {
            name: l.name.clone(),
            sparsity: l.sparsity,
            threshold: l.threshold,
        }
    }
}

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub train_acc: f64,
    pub val_acc: Option<f64>,
    pub test_acc: f64,
    /// Global sparsity of the prunable weights at the end of the epoch.
    pub sparsity: f64,
    pub seconds: f64,
    pub layers: Vec<LayerSparsity>,
}

/// `summary.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub model: String,
    pub method: String,
    pub epochs: usize,
    /// Test accuracy of the final model (after the method's `finish`).
    pub test_accuracy: f64,
    /// The epoch of highest validation accuracy among those at the final sparsity, with its test
    /// accuracy (`run::best`); none without a validation split, and in summaries written before
    /// this rule (whose `best_test_accuracy` was selected on the test set and is no longer read).
    #[serde(default)]
    pub best: Option<BestEpoch>,
    pub overall_sparsity: f64,
    pub params_total: usize,
    pub params_nonzero: usize,
    pub flops_dense: usize,
    pub flops_sparse: usize,
    pub layers: Vec<LayerReport>,
    /// Effective ranks of low-rank factorised weights (structured STR); empty otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub low_rank: Vec<RankReport>,
    pub wall_seconds: f64,
    pub config: serde_json::Value,
    /// The method's exact fix-up at the end of training, if it made one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub fixup: Option<FixUp>,
    /// Method-specific figures (`Method::summary`).
    #[serde(skip_serializing_if = "serde_json::Value::is_null", default)]
    pub method_details: serde_json::Value,
    /// Sizes of `model.safetensors` and `model.sparse.safetensors` (absent in older runs).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub exports: Option<ExportSizes>,
    /// Which layers ran on the sparse kernels (absent in older runs).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sparse_kernels: Option<SparseKernelUse>,
}

/// Which weights' layers ran on the sparse kernels (`--sparse-kernels`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SparseKernelUse {
    pub mode: SparseKernels,
    /// In some step of the last epoch (post-training: in the last fine-tuning iteration).
    #[serde(default)]
    pub training: Vec<String>,
    /// In the final test evaluation, which runs the exported model with a mask of its nonzeros.
    #[serde(default)]
    pub evaluation: Vec<String>,
}

/// One line of `posttrain.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IterationLog {
    /// Iterations done.
    pub iter: usize,
    /// Learning rate of the last iteration.
    pub lr: f64,
    /// Mean L_rec over the iterations since the previous line.
    pub l_rec: f64,
    /// Mean regulariser (FCPTS: lambda L_c) over the same iterations; absent without one.
    pub l_c: Option<f64>,
    /// Global sparsity of the prunable weights after the last iteration.
    pub sparsity: f64,
    pub layers: Vec<LayerSparsity>,
}

/// One prunable weight in a post-training `summary.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PosttrainLayer {
    /// The result (threshold = FCPTS's final t).
    #[serde(flatten)]
    pub report: LayerReport,
    /// The allocation the method started from (ERK for FCPTS).
    pub initial_sparsity: f64,
    /// FCPTS: the sparsity and threshold learned by the optimisation, before the fix-up.
    pub learned_sparsity: Option<f64>,
    pub learned_threshold: Option<f64>,
}

/// `summary.json` of a post-training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PosttrainSummary {
    pub model: String,
    pub method: String,
    pub variant: Option<String>,
    pub surrogate: Option<String>,
    pub density: Option<String>,
    pub target_sparsity: f64,
    /// Exact zeros of the effective prunable weights / their count.
    pub achieved_sparsity: f64,
    pub params_total: usize,
    pub params_nonzero: usize,
    /// round(r0 N).
    pub pruned_goal: usize,
    /// FCPTS's final exact fix-up.
    pub fixup: Option<FixUp>,
    pub calibration_images: usize,
    /// Optimisation iterations run (0 with `--no-finetune`).
    pub iterations: usize,
    /// Test accuracy of the input model (the trained model post-training started from; "dense"
    /// in the field's name is historical: the input may be partly sparse).
    pub dense_test_accuracy: f64,
    pub test_accuracy: f64,
    pub flops_dense: usize,
    pub flops_sparse: usize,
    pub layers: Vec<PosttrainLayer>,
    /// How the result missed its target, when it did (its pruned count is off round(r0 N) by
    /// more than [`crate::posttrain::outputs::MISS_TOLERANCE`]); the run then failed with this
    /// message. Absent when the target was met (and in summaries written before the check).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub missed_target: Option<String>,
    /// Setting up the method, optimising and fixing up.
    pub optimise_seconds: f64,
    /// Both test-set evaluations.
    pub evaluate_seconds: f64,
    /// Everything, loading and writing included.
    pub wall_seconds: f64,
    pub config: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub exports: Option<ExportSizes>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sparse_kernels: Option<SparseKernelUse>,
}

impl Summary {
    /// The `key=value` line `sparsegrad train` ends with (what scripts read).
    pub fn result_line(&self) -> String {
        let fixup = self
            .fixup
            .as_ref()
            .map(|f| {
                format!(
                    " pruned_before_fixup={} fixup_weights={}",
                    f.pruned_before, f.changed
                )
            })
            .unwrap_or_default();
        let best = self.best.as_ref().map_or("none".to_string(), |b| {
            format!("{:.4} best_epoch={}", b.test_accuracy, b.epoch)
        });
        format!(
            "test_accuracy={:.4} best_test_accuracy={best} sparsity={:.4} weights={}/{}{fixup} macs={}/{} wall_seconds={:.1}",
            self.test_accuracy,
            self.overall_sparsity,
            self.params_nonzero,
            self.params_total,
            self.flops_sparse,
            self.flops_dense,
            self.wall_seconds
        )
    }
}

impl PosttrainSummary {
    /// The `key=value` line `sparsegrad posttrain` ends with.
    pub fn result_line(&self) -> String {
        let fixup = self
            .fixup
            .as_ref()
            .map(|f| format!(" fixup_weights={}", f.changed))
            .unwrap_or_default();
        format!(
            "test_accuracy={:.4} input_test_accuracy={:.4} sparsity={:.4} target={} weights={}/{}{fixup} optimise_seconds={:.1} evaluate_seconds={:.1}",
            self.test_accuracy,
            self.dense_test_accuracy,
            self.achieved_sparsity,
            self.target_sparsity,
            self.params_nonzero,
            self.params_total,
            self.optimise_seconds,
            self.evaluate_seconds
        )
    }
}
