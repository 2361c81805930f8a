//! What a checkpoint or export says about itself (its JSON metadata), and rebuilding the model it
//! holds: [`CheckpointMeta`] = the model's architecture and data ([`ModelInfo`]), the training
//! config, and for resumable checkpoints the loop's position ([`LoopState`]).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::detect::load_dir;
use crate::data::{Normalize, TrainTest};
use crate::error::{Error, Result};
use crate::float::Float;
use crate::io::checkpoint::{self, Checkpoint};
use crate::io::sparse_export;
use crate::methods::MethodState;
use crate::models::{self, ModelName, ModelSpec};
use crate::nn::Module;
use crate::rng::derived;
use crate::run::config::TrainConfig;
use crate::run::dir::{MODEL_FILE, SPARSE_MODEL_FILE};
use crate::tape::Tensor;

/// RNG stream of weight initialisation (see `rng::derived`).
pub const INIT_STREAM: u64 = 1;
/// Checkpoint name prefixes of the model's tensors, the optimiser's state and the method's state.
pub const MODEL_PREFIX: &str = "model.";
pub const OPTIMIZER_PREFIX: &str = "optimizer.";
pub const METHOD_PREFIX: &str = "method.";

/// What a model needs besides its weights to be rebuilt and fed data (stored in every checkpoint).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub model: ModelName,
    pub width: f64,
    /// The method that produced the weights (a `train` or a `posttrain` method).
    pub method: String,
    /// (channels, height, width) of one input image.
    pub input: (usize, usize, usize),
    pub classes: usize,
    pub data_kind: String,
    pub normalize_mean: Vec<f64>,
    pub normalize_std: Vec<f64>,
}

impl ModelInfo {
    /// What `models::build` needs to rebuild the architecture.
    pub fn spec(&self) -> ModelSpec {
        ModelSpec {
            name: self.model,
            input: self.input,
            classes: self.classes,
            width: self.width,
        }
    }

    pub fn normalize(&self) -> Normalize {
        Normalize {
            mean: self.normalize_mean.clone(),
            std: self.normalize_std.clone(),
        }
    }
}

/// The loop's position and history, saved in `checkpoint.safetensors` metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoopState {
    /// Epochs completed (over all rounds).
    pub epoch: usize,
    /// Optimiser steps taken.
    pub step: usize,
    pub best_test_acc: f64,
    pub best_test_epoch: usize,
    pub best_val_acc: Option<f64>,
    pub test_at_best_val: Option<f64>,
    /// Wall time spent before this checkpoint (all sessions).
    pub wall_seconds: f64,
    /// The JSON part of the method's own state (`Method::state`; its tensors are stored under
    /// `method.` names). `null` in checkpoints written before methods had state.
    #[serde(default)]
    pub method: serde_json::Value,
}

impl LoopState {
    /// The state of a run that has not started.
    pub fn start() -> Self {
        LoopState {
            epoch: 0,
            step: 0,
            best_test_acc: 0.0,
            best_test_epoch: 0,
            best_val_acc: None,
            test_at_best_val: None,
            wall_seconds: 0.0,
            method: serde_json::Value::Null,
        }
    }
}

/// JSON metadata of checkpoints and exports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub info: ModelInfo,
    pub config: TrainConfig,
    /// Absent in exports (`model.safetensors`), which are not resumable.
    pub state: Option<LoopState>,
}

impl CheckpointMeta {
    /// Metadata for `config`'s run, leaving out where it ran (`out`, `threads`): they do not
    /// change the result, and leaving them out makes the same model the same bytes wherever it
    /// was trained.
    pub fn new(info: &ModelInfo, config: &TrainConfig, state: Option<LoopState>) -> Self {
        let config = TrainConfig {
            out: None,
            threads: None,
            ..config.clone()
        };
        CheckpointMeta {
            info: info.clone(),
            config,
            state,
        }
    }

    /// The metadata map of a safetensors file holding `self` and, flattened beside it, `extra`
    /// (post-training exports add their own settings).
    pub fn to_metadata_with<T: Serialize>(
        &self,
        extra: Option<(&str, &T)>,
    ) -> BTreeMap<String, String> {
        let mut value = serde_json::to_value(self).expect("serialisable");
        if let (Some((key, extra)), serde_json::Value::Object(map)) = (extra, &mut value) {
            map.insert(
                key.to_string(),
                serde_json::to_value(extra).expect("serialisable"),
            );
        }
        BTreeMap::from([(
            checkpoint::METADATA_KEY.to_string(),
            serde_json::to_string(&value).expect("serialisable"),
        )])
    }

    pub fn to_metadata(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(
            checkpoint::METADATA_KEY.to_string(),
            serde_json::to_string(self).expect("serialisable"),
        )])
    }

    /// Reads the metadata of a checkpoint or export written by sparsegrad.
    pub fn from_checkpoint<F: Float>(ckpt: &Checkpoint<F>, path: &Path) -> Result<Self> {
        Self::from_metadata(&ckpt.metadata, path)
    }

    /// Reads sparsegrad's entry of a safetensors metadata map read from `path`.
    pub fn from_metadata(metadata: &BTreeMap<String, String>, path: &Path) -> Result<Self> {
        let text = metadata.get(checkpoint::METADATA_KEY).ok_or_else(|| {
            Error::format(
                path,
                "no sparsegrad metadata (not written by sparsegrad train)",
            )
        })?;
        serde_json::from_str(text)
            .map_err(|e| Error::format(path, format!("invalid sparsegrad metadata ({e})")))
    }

    /// The method's state stored in a training checkpoint.
    pub fn method_state(&self, ckpt: &Checkpoint<f32>) -> MethodState {
        MethodState {
            json: self
                .state
                .as_ref()
                .map_or(serde_json::Value::Null, |s| s.method.clone()),
            tensors: ckpt.with_prefix(METHOD_PREFIX),
        }
    }
}

/// The data a command reading `checkpoint` works on: `--data` if given, else the directory saved
/// in the checkpoint, and then a failure says that the directory came from the checkpoint.
pub fn load_run_data(
    flag: Option<&str>,
    meta: &CheckpointMeta,
    checkpoint: &Path,
) -> Result<(TrainTest, String)> {
    match flag {
        Some(name) => Ok((load_dir(Path::new(name))?, name.to_string())),
        None => {
            let name = meta.config.data.clone();
            let data = load_dir(Path::new(&name)).map_err(|e| {
                Error::invalid(format!(
                    "{e} (the data directory recorded in {}; pass --data to use another)",
                    checkpoint.display()
                ))
            })?;
            Ok((data, name))
        }
    }
}

/// A freshly initialised model of `info`'s architecture (weights from `seed`'s init stream).
pub fn fresh_model(info: &ModelInfo, seed: u64) -> Result<Box<dyn Module<f32>>> {
    models::build(&info.spec(), &mut derived(seed, INIT_STREAM))
}

/// Rebuilds the model stored in a checkpoint or export written by `sparsegrad train` (or
/// `sparsegrad posttrain`): the architecture from the metadata, then the tensors. A training
/// checkpoint holds raw weights and its method's transform parameters, so the method's transforms
/// are attached first; an export holds the effective (baked) weights of a plain model.
///
/// A sparse export (`model.sparse.safetensors`) is recognised by its format key and densified
/// into the plain model.
pub fn load_model(path: &Path) -> Result<(Box<dyn Module<f32>>, CheckpointMeta)> {
    let metadata = checkpoint::read_metadata(path)?;
    if metadata.get(sparse_export::FORMAT_KEY).map(String::as_str) == Some(sparse_export::FORMAT) {
        let meta = CheckpointMeta::from_metadata(&metadata, path)?;
        let mut model = fresh_model(&meta.info, meta.config.seed)?;
        sparse_export::load_sparse_export(model.as_mut(), path)?;
        return Ok((model, meta));
    }
    let ckpt: Checkpoint<f32> = checkpoint::load(path)?;
    let meta = CheckpointMeta::from_checkpoint(&ckpt, path)?;
    // The builders know no file: their refusals of what the metadata describes name it here.
    let in_file = |e: Error| match e {
        Error::Invalid(m) => Error::format(path, format!("its metadata describes {m}")),
        other => other,
    };
    let mut model = fresh_model(&meta.info, meta.config.seed).map_err(in_file)?;
    let prefix = if meta.state.is_some() {
        meta.config
            .build_method()
            .and_then(|mut m| m.attach(model.as_mut()))
            .map_err(in_file)?;
        MODEL_PREFIX
    } else {
        ""
    };
    checkpoint::load_into(model.as_mut(), &ckpt, prefix, path)?;
    Ok((model, meta))
}

/// A plain model of `meta`'s architecture holding `tensors` (an export's names).
pub fn plain_model(
    meta: &CheckpointMeta,
    tensors: &checkpoint::NamedTensors<f32>,
    source: &Path,
) -> Result<Box<dyn Module<f32>>> {
    let mut model = fresh_model(&meta.info, meta.config.seed)?;
    let ckpt = Checkpoint {
        tensors: tensors.clone(),
        dtypes: Default::default(),
        metadata: BTreeMap::new(),
    };
    checkpoint::load_into(model.as_mut(), &ckpt, "", source)?;
    Ok(model)
}

/// Sizes of a run's two exports, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ExportSizes {
    /// `model.safetensors`: dense, loadable by PyTorch as a `state_dict`.
    pub dense_bytes: u64,
    /// `model.sparse.safetensors`: compressed sparse rows where smaller (`docs/sparse.md`).
    pub sparse_bytes: u64,
}

/// Writes the run's exports into `out`: `model.safetensors` (the model's effective weights under
/// PyTorch `state_dict` names) and `model.sparse.safetensors` (the same tensors, sparse where
/// smaller), both with `metadata`, so `eval` reads either.
pub fn save_exports(
    out: &Path,
    model: &dyn Module<f32>,
    metadata: &BTreeMap<String, String>,
) -> Result<ExportSizes> {
    let dense = out.join(MODEL_FILE);
    let sparse = out.join(SPARSE_MODEL_FILE);
    checkpoint::save(&dense, &checkpoint::export_tensors(model), metadata)?;
    sparse_export::write_sparse_export(&sparse, model, metadata)?;
    let size = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.len())
            .map_err(|e| Error::io(p, e))
    };
    Ok(ExportSizes {
        dense_bytes: size(&dense)?,
        sparse_bytes: size(&sparse)?,
    })
}

/// The tensors of a resumable checkpoint: the model's (`model.`), the optimiser's state
/// (`optimizer.`) and the method's own (`method.`).
pub fn checkpoint_tensors(
    model: &dyn Module<f32>,
    optimizer_state: Vec<(String, Tensor<f32>)>,
    method_state: &MethodState,
) -> Vec<(String, Tensor<f32>)> {
    let prefixed = |prefix: &str, tensors: Vec<(String, Tensor<f32>)>| {
        tensors
            .into_iter()
            .map(move |(n, t)| (format!("{prefix}{n}"), t))
            .collect::<Vec<_>>()
    };
    let mut tensors = prefixed(MODEL_PREFIX, checkpoint::state_tensors(model));
    tensors.extend(prefixed(OPTIMIZER_PREFIX, optimizer_state));
    tensors.extend(prefixed(METHOD_PREFIX, method_state.tensors.clone()));
    tensors
}
