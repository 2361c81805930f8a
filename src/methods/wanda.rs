//! Wanda (Sun, Liu, Bair & Kolter, 2023), `sparsegrad posttrain --method wanda`: prune by
//! weights and activations. The score of weight W_ij is |W_ij| ||X_j||_2 (the paper's eq. 1),
//! X_j the calibration inputs that column j multiplies — the rows of a Linear layer's input, the
//! unfolded im2col patches of a convolution's input (`nn::input_norms`); weights are compared
//! per output row (the paper's "per output" comparison group) or, as its ablation, over the
//! whole layer. Every layer gets the same sparsity (exact counts summing to round(r0 N), as the
//! other post-training baselines). The masks are fixed; the driver's reconstruction fine-tuning
//! then trains the surviving weights, unless `--no-finetune` (Wanda itself has no update).
//!
//! As the authors' code (`prune_wanda` in `lib/prune.py`), layers are pruned in forward order and
//! each layer's statistics come from inputs that went through the already pruned earlier layers;
//! `--wanda-one-pass` takes every layer's statistics from one pass through the dense model.

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::methods::baselines::allocation;
use crate::methods::options::{PosttrainContext, clap_defaults};
use crate::methods::plugin::{InitData, Method, Plugin};
use crate::nn::Module;
use crate::nn::input_norms::InputNorms;
use crate::sparsity::Mask;
use crate::sparsity::budget::Distribution;
use crate::tape::{Tape, Tensor};

/// `--wanda-group`: which weights a score is compared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum WandaGroup {
    /// The weights of the same output row (neuron / filter): the paper's choice.
    Output,
    /// All weights of the layer (the paper's ablation).
    Layer,
}

/// Wanda's flags.
#[derive(Args, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[group(skip)]
#[serde(default)]
pub struct WandaOptions {
    /// Wanda: comparison group of the scores, output (per output row, the paper) | layer.
    #[arg(long, value_enum, default_value_t = WandaGroup::Output)]
    pub wanda_group: WandaGroup,
    /// Wanda: every layer's input statistics from one pass through the dense model (default:
    /// layer by layer through the already pruned earlier layers, as the authors' code).
    #[arg(long)]
    pub wanda_one_pass: bool,
}

impl Default for WandaOptions {
    fn default() -> Self {
        clap_defaults()
    }
}

/// The Wanda method.
pub struct Wanda {
    options: WandaOptions,
    r0: f64,
}

impl Plugin<PosttrainContext> for Wanda {
    type Options = WandaOptions;
    const SHARED: &'static [&'static str] = &["no_finetune"];

    fn build(options: &WandaOptions, context: &PosttrainContext) -> Result<Self> {
        Ok(Wanda {
            options: options.clone(),
            r0: context.target_sparsity,
        })
    }
}

/// Wanda's scores of a weight [rows, ...] (row-major): |W_ij| sqrt(||X_j||²), the norms of the
/// row's convolution group (rows / groups consecutive rows share one).
pub fn wanda_scores(weight: &Tensor<f32>, norms: &InputNorms) -> Result<Vec<f64>> {
    let rows = weight.shape()[0];
    let columns = weight.len() / rows.max(1);
    if norms.columns != columns || norms.groups == 0 || !rows.is_multiple_of(norms.groups) {
        return Err(Error::invalid(format!(
            "wanda: recorded {} groups of {} input columns for a weight of shape {:?}",
            norms.groups,
            norms.columns,
            weight.shape()
        )));
    }
    let rows_per_group = rows / norms.groups;
    Ok(weight
        .iter()
        .enumerate()
        .map(|(k, &w)| {
            let (i, j) = (k / columns, k % columns);
            (w as f64).abs() * norms.squared_norm(i / rows_per_group, j).sqrt()
        })
        .collect())
}

/// The keep-mask (1 kept, 0 pruned) pruning `count` of `scores` (row-major, `rows` rows): the
/// lowest scores of the layer, or with `per_row` the lowest floor(count / rows) of every row,
/// and one more in the `count % rows` rows whose next-lowest score is smallest. Ties go to the
/// lower index (a stable sort, as the authors' `torch.sort(..., stable=True)`).
pub fn prune_mask(scores: &[f64], rows: usize, count: usize, per_row: bool) -> Vec<f32> {
    let mut keep = vec![1.0f32; scores.len()];
    let ascending = |idx: &mut Vec<usize>| {
        idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
    };
    if !per_row || rows <= 1 {
        let mut order: Vec<usize> = (0..scores.len()).collect();
        ascending(&mut order);
        order.iter().take(count).for_each(|&k| keep[k] = 0.0);
        return keep;
    }
    let columns = scores.len() / rows;
    let (base, extra) = (count / rows, count % rows);
    let mut next: Vec<(f64, usize, usize)> = Vec::with_capacity(rows);
    for i in 0..rows {
        let mut order: Vec<usize> = (i * columns..(i + 1) * columns).collect();
        ascending(&mut order);
        order.iter().take(base).for_each(|&k| keep[k] = 0.0);
        if let Some(&k) = order.get(base) {
            next.push((scores[k], i, k));
        }
    }
    next.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    next.iter().take(extra).for_each(|&(_, _, k)| keep[k] = 0.0);
    keep
}

/// Runs every batch through `model` without recording gradients.
fn forward_all(model: &mut dyn Module<f32>, batches: &[crate::data::Batch<f32>]) {
    for batch in batches {
        let tape = Tape::new();
        let _no_grad = tape.no_grad();
        model.forward(tape.constant(batch.images.clone()));
    }
}

impl Wanda {
    /// Turns input recording on for the weights whose index is in `layers`, off for the others.
    fn record(model: &mut dyn Module<f32>, layers: &[usize]) {
        let mut l = 0;
        model.visit_weights_mut("", &mut |_, w| {
            w.input_norms = layers.contains(&l).then(InputNorms::default);
            l += 1;
        });
    }

    /// Scores and masks layer `l` from its recorded norms, pruning `count` weights.
    fn prune_layer(&self, model: &mut dyn Module<f32>, l: usize, count: usize) -> Result<()> {
        let mut result = Ok(());
        let mut i = 0;
        let per_row = self.options.wanda_group == WandaGroup::Output;
        model.visit_weights_mut("", &mut |name, w| {
            if i == l {
                result = (|| {
                    let norms = w.input_norms.take().filter(|n| n.rows > 0).ok_or_else(|| {
                        Error::invalid(format!(
                            "wanda: {name} recorded no calibration inputs (only Linear and Conv2d layers can be scored)"
                        ))
                    })?;
                    let scores = wanda_scores(w.raw.value(), &norms)?;
                    let keep = prune_mask(&scores, w.raw.shape()[0], count, per_row);
                    let keep = Tensor::from_shape_vec(w.raw.value().raw_dim(), keep)
                        .expect("one entry per weight");
                    w.transform = Some(Box::new(Mask::from_tensor(keep)?));
                    w.reapply_mask();
                    Ok(())
                })();
            }
            i += 1;
        });
        result
    }
}

impl Method for Wanda {
    fn name(&self) -> &'static str {
        "wanda"
    }

    /// All-ones masks, so the calibration passes see the dense model and the masks exist.
    fn attach(&mut self, model: &mut dyn Module<f32>) -> Result<()> {
        model.visit_weights_mut("", &mut |_, w| {
            w.transform = Some(Box::new(Mask::<f32>::ones(w.raw.shape())));
        });
        Ok(())
    }

    /// Every calibration image once (in evaluation mode: batchnorm uses the trained running
    /// statistics, as the dense model does at inference), then the masks.
    fn init(&mut self, model: &mut dyn Module<f32>, data: &InitData) -> Result<()> {
        let counts: Vec<usize> = allocation(model, &Distribution::Uniform.budget(), self.r0)?
            .layers
            .iter()
            .map(|l| l.prune)
            .collect();
        let batches = data.batches(data.indices.len().div_ceil(data.batch_size.max(1)));
        let training = model.is_training();
        model.set_training(false);
        let layers: Vec<usize> = (0..counts.len()).collect();
        let result = (|| {
            if self.options.wanda_one_pass {
                Self::record(model, &layers);
                forward_all(model, &batches);
                for (l, &count) in counts.iter().enumerate() {
                    self.prune_layer(model, l, count)?;
                }
            } else {
                for (l, &count) in counts.iter().enumerate() {
                    Self::record(model, &[l]);
                    forward_all(model, &batches);
                    self.prune_layer(model, l, count)?;
                }
            }
            Ok(())
        })();
        Self::record(model, &[]);
        model.set_training(training);
        result
    }
}
