//! What a post-training run reads, all loaded and checked before the run directory is touched:
//! the trained model's effective weights and metadata, the data, and the calibration draw.

use std::path::Path;

use rand::seq::SliceRandom;

use crate::data::detect::load_dir;
use crate::data::{Normalize, TrainTest, split_train_val};
use crate::error::{Error, Result};
use crate::io::checkpoint;
use crate::posttrain::config::PosttrainConfig;
use crate::rng::derived;
use crate::run::meta::{CheckpointMeta, load_model};

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
        // The effective weights: a model trained with any method becomes a plain dense model.
        let dense = checkpoint::export_tensors(model.as_ref());
        let data_name = config
            .data
            .clone()
            .unwrap_or_else(|| meta.config.data.clone());
        let data = load_dir(Path::new(&data_name))?;
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
