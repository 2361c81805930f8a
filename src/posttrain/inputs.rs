//! What a post-training run reads, all loaded and checked before the run directory is touched:
//! the trained model's effective weights and metadata, the data, and the calibration draw.

use std::path::Path;

use rand::seq::SliceRandom;

use crate::data::{Normalize, TrainTest, split_train_val};
use crate::error::{Error, Result};
use crate::io::checkpoint;
use crate::nn::Module;
use crate::posttrain::config::PosttrainConfig;
use crate::rng::derived;
use crate::run::meta::{CheckpointMeta, load_model, load_run_data};
use crate::sparsity::report::sparsity_report;

/// RNG stream of the calibration draw (see `rng::derived`).
pub const CALIB_STREAM: u64 = 0x4341_4c49;

/// `calib` of the training indices `train_idx`, drawn with `seed`, ascending.
pub fn calibration_indices(train_idx: &[usize], calib: usize, seed: u64) -> Vec<usize> {
    let mut order = train_idx.to_vec();
    order.shuffle(&mut derived(seed, CALIB_STREAM));
    order.truncate(calib);
    order.sort_unstable();
    order
}

/// Refuses an input model post-training cannot sparsify to `r0`: one holding a non-finite value
/// (its thresholds and magnitudes would be NaN, and the result meaningless), or one whose
/// prunable weights are already sparser than the target (a zero weight is below every
/// threshold, so the result could only be sparser still: the target cannot be met).
fn refuse_unusable_input(model: &dyn Module<f32>, path: &Path, r0: f64) -> Result<()> {
    let mut non_finite: Option<String> = None;
    model.visit("", &mut |name, p| {
        if non_finite.is_none() && p.value().iter().any(|v| !v.is_finite()) {
            non_finite = Some(name.to_string());
        }
    });
    if let Some(name) = non_finite {
        return Err(Error::format(
            path,
            format!(
                "the input model's {name} holds non-finite values (NaN or infinity); \
                 posttrain needs a finite model"
            ),
        ));
    }
    let report = sparsity_report(model);
    let pruned = report.params_total - report.params_nonzero;
    let goal = pruned_goal(r0, report.params_total);
    if pruned > goal {
        return Err(Error::format(
            path,
            format!(
                "the input model is already {:.2}% sparse ({pruned} of {} prunable weights are \
                 zero), more than --target-sparsity {r0}; posttrain only prunes, so the target \
                 must be at least {:.4}",
                100.0 * report.overall_sparsity,
                report.params_total,
                report.overall_sparsity
            ),
        ));
    }
    Ok(())
}

/// round(r0 N): the weights a post-training run to `r0` prunes of `total`.
pub fn pruned_goal(r0: f64, total: usize) -> usize {
    (r0 * total as f64).round() as usize
}

/// Everything loaded and checked before the run directory is touched.
pub struct Inputs {
    pub meta: CheckpointMeta,
    /// The trained model's effective weights (export names).
    pub dense: checkpoint::NamedTensors<f32>,
    pub data: TrainTest,
    pub norm: Normalize,
    /// Indices of the calibration images in the training set.
    pub calib: Vec<usize>,
}

impl Inputs {
    pub fn load(config: &PosttrainConfig) -> Result<Inputs> {
        let path = config.checkpoint();
        let (model, meta) = load_model(&path)?;
        refuse_unusable_input(model.as_ref(), &path, config.r0())?;
        // The effective weights: a model trained with any method becomes a plain dense model.
        let dense = checkpoint::export_tensors(model.as_ref());
        let (data, data_name) = load_run_data(config.data.as_deref(), &meta, &path)?;
        let info = &meta.info;
        if data.train.image_shape() != info.input || data.train.classes != info.classes {
            return Err(Error::invalid(format!(
                "--data {data_name}: images {:?} in {} classes, but the model was trained on {:?} in {} classes",
                data.train.image_shape(),
                data.train.classes,
                info.input,
                info.classes
            )));
        }
        let (train_idx, val_idx) =
            split_train_val(data.train.len(), meta.config.val_split, meta.config.seed)?;
        if config.calib > train_idx.len() {
            return Err(Error::invalid(format!(
                "--calib {} is more than the {} images of the run's training split of {} ({} are held out for validation)",
                config.calib,
                train_idx.len(),
                data.source.display(),
                val_idx.len()
            )));
        }
        let calib = calibration_indices(&train_idx, config.calib, config.seed);
        let norm = info.normalize();
        Ok(Inputs {
            meta,
            dense,
            data,
            norm,
            calib,
        })
    }
}
