//! The run directory's JSON files: `config.json` (what was asked), `metrics.jsonl` (one line per
//! epoch, appended and flushed as the run goes) and `summary.json` (the outcome).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::io::atomic::write_atomic;
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
    /// Test accuracy after the last epoch.
    pub test_accuracy: f64,
    pub best_test_accuracy: f64,
    pub best_test_epoch: usize,
    /// Test accuracy at the epoch of the best validation accuracy (when there is a validation set).
    pub test_accuracy_at_best_val: Option<f64>,
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
}

/// Writes `value` as pretty JSON, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// Reads a JSON file into `T`, naming the file in errors.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::format(path, format!("invalid JSON ({e})")))
}

/// Appends epoch lines to `metrics.jsonl`.
pub struct MetricsLog {
    path: PathBuf,
}

impl MetricsLog {
    /// A log at `path`, keeping only the first `keep_epochs` lines already there (a resumed run
    /// drops the lines of epochs it will redo).
    pub fn open(path: &Path, keep_epochs: usize) -> Result<Self> {
        let kept: Vec<EpochMetrics> = Self::read(path)?
            .into_iter()
            .filter(|m| m.epoch <= keep_epochs)
            .collect();
        let mut text = String::new();
        for m in &kept {
            text += &serde_json::to_string(m).expect("metrics serialise");
            text.push('\n');
        }
        write_atomic(path, text.as_bytes())?;
        Ok(MetricsLog {
            path: path.to_path_buf(),
        })
    }

    /// Appends one line and flushes it.
    pub fn append(&mut self, metrics: &EpochMetrics) -> Result<()> {
        let mut file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io(&self.path, e))?;
        let line = serde_json::to_string(metrics).expect("metrics serialise") + "\n";
        file.write_all(line.as_bytes())
            .and_then(|_| file.flush())
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Every line of an existing log (none if the file does not exist).
    pub fn read(path: &Path) -> Result<Vec<EpochMetrics>> {
        if !path.exists() {
            return Ok(Vec::new());
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| {
                    Error::format(path, format!("line {}: invalid metrics ({e})", i + 1))
                })
            })
            .collect()
    }
}
