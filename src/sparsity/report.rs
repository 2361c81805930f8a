//! Per-layer sparsity and multiply-accumulate (MAC) accounting of a model's prunable weights.
//!
//! `params` counts a layer's prunable weights (printed as "weights"); `flops_*` count
//! multiply-accumulates per example (printed as "MACs"; the field names are kept so that summaries
//! written by earlier versions load), the convention of the STR paper's "FLOPs" tables
//! (ResNet-50: 4.09G). A layer's sparse MACs are its dense MACs times its density
//! (unstructured sparsity: every zero weight skips its multiply-accumulates). Biases and
//! batchnorm are not counted (they are dense and negligible).
//! Uses per example come from the last forward pass (see `Weight::record_uses`), so run one
//! forward before reporting.

use serde::{Deserialize, Serialize};

use crate::float::Float;
use crate::nn::Module;

/// One prunable weight's figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerReport {
    /// Raw parameter name (`fc1.weight`).
    pub name: String,
    pub shape: Vec<usize>,
    pub params: usize,
    /// Non-zero entries of the effective weight.
    pub nonzero: usize,
    pub sparsity: f64,
    pub flops_dense: usize,
    pub flops_sparse: usize,
    /// The transform's current magnitude threshold (STR's g(s)), if it has one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub threshold: Option<f64>,
}

/// Whole-model totals over the prunable weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SparsityReport {
    pub layers: Vec<LayerReport>,
    pub params_total: usize,
    pub params_nonzero: usize,
    /// Zeros over all prunable weights / their count.
    pub overall_sparsity: f64,
    pub flops_dense: usize,
    pub flops_sparse: usize,
    /// Effective ranks of low-rank factorised weights (empty for models without any).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub low_rank: Vec<RankReport>,
}

/// A weight stored as low-rank factors W = second first (see `Module::visit_low_rank`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RankReport {
    /// The product's name (`rnn.W`).
    pub name: String,
    /// The factors' inner dimension r (the rank W was built with).
    pub rank: usize,
    /// Rank-1 components second[:, k] first[k, :] with both the row k of the effective `first`
    /// and the column k of the effective `second` non-zero: the rank left to deploy (an upper
    /// bound of the algebraic rank of the product).
    pub effective_rank: usize,
}

/// Factor and effective ranks of every low-rank factorised weight of `model`, from its effective
/// weights (exact zeros, like every figure here).
pub fn low_rank_report<F: Float>(model: &dyn Module<F>) -> Vec<RankReport> {
    let mut pairs = Vec::new();
    model.visit_low_rank("", &mut |name, first, second| {
        pairs.push((name.to_string(), first.to_string(), second.to_string()))
    });
    if pairs.is_empty() {
        return Vec::new();
    }
    let mut effective = std::collections::HashMap::new();
    model.visit_weights("", &mut |name, w| {
        effective.insert(name.to_string(), w.effective());
    });
    pairs
        .into_iter()
        .map(|(name, first, second)| {
            let (a, b) = (&effective[&first], &effective[&second]);
            assert!(
                a.ndim() == 2 && b.ndim() == 2 && a.shape()[0] == b.shape()[1],
                "low_rank_report: {first} {:?} and {second} {:?} are not factors [r, in], [out, r]",
                a.shape(),
                b.shape()
            );
            let nonzero = |v: &F| *v != F::zero();
            let effective_rank = a
                .outer_iter()
                .zip(b.columns())
                .filter(|(row, col)| row.iter().any(nonzero) && col.iter().any(nonzero))
                .count();
            RankReport {
                name,
                rank: a.shape()[0],
                effective_rank,
            }
        })
        .collect()
}

/// Figures of every prunable weight of `model`, from its effective weights.
pub fn sparsity_report<F: Float>(model: &dyn Module<F>) -> SparsityReport {
    let mut layers = Vec::new();
    model.visit_weights("", &mut |name, w| {
        let effective = w.effective();
        let params = effective.len();
        let nonzero = effective.iter().filter(|v| **v != F::zero()).count();
        let density = if params == 0 {
            1.0
        } else {
            nonzero as f64 / params as f64
        };
        let flops_dense = w.dense_macs();
        layers.push(LayerReport {
            name: name.to_string(),
            shape: effective.shape().to_vec(),
            params,
            nonzero,
            sparsity: 1.0 - density,
            flops_dense,
            flops_sparse: (flops_dense as f64 * density).round() as usize,
            threshold: w.transform.as_ref().and_then(|t| t.threshold()),
        });
    });
    let params_total: usize = layers.iter().map(|l| l.params).sum();
    let params_nonzero: usize = layers.iter().map(|l| l.nonzero).sum();
    SparsityReport {
        params_total,
        params_nonzero,
        overall_sparsity: if params_total == 0 {
            0.0
        } else {
            1.0 - params_nonzero as f64 / params_total as f64
        },
        flops_dense: layers.iter().map(|l| l.flops_dense).sum(),
        flops_sparse: layers.iter().map(|l| l.flops_sparse).sum(),
        layers,
        low_rank: low_rank_report(model),
    }
}

/// The report as an aligned text table (what `sparsegrad report` prints).
pub fn format_table(report: &SparsityReport) -> String {
    let mut out = format!(
        "{:<28} {:>18} {:>10} {:>10} {:>9} {:>12} {:>12} {:>10}\n",
        "layer",
        "shape",
        "weights",
        "nonzero",
        "sparsity",
        "MACs dense",
        "MACs sparse",
        "threshold"
    );
    for l in &report.layers {
        out += &format!(
            "{:<28} {:>18} {:>10} {:>10} {:>8.2}% {:>12} {:>12} {:>10}\n",
            l.name,
            format!("{:?}", l.shape),
            l.params,
            l.nonzero,
            100.0 * l.sparsity,
            l.flops_dense,
            l.flops_sparse,
            l.threshold
                .map(|t| format!("{t:.3e}"))
                .unwrap_or_else(|| "-".into())
        );
    }
    out += &format!(
        "{:<28} {:>18} {:>10} {:>10} {:>8.2}% {:>12} {:>12}\n",
        "total",
        "",
        report.params_total,
        report.params_nonzero,
        100.0 * report.overall_sparsity,
        report.flops_dense,
        report.flops_sparse
    );
    for r in &report.low_rank {
        out += &format!(
            "low-rank {}: effective rank {} of {}\n",
            r.name, r.effective_rank, r.rank
        );
    }
    out
}
