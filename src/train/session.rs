//! Setting up a training run, fresh or resumed: everything that can fail on bad input is checked
//! here, before the run directory is touched, so a mistake never costs an existing run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::data::detect::{load_dir, resolved_data_name};
use crate::data::{Augment, Normalize, TrainTest, split_train_val};
use crate::error::{Error, Result};
use crate::io::checkpoint::{self, Checkpoint};
use crate::io::json::write_json;
use crate::methods::{InitData, Method, RunShape};
use crate::nn::{Module, set_sparse_kernels};
use crate::optim::{
    self, Adam, AdamConfig, LrSchedule, Optimizer, OptimizerKind, ParamGroup, ParamMatch, Schedule,
    ScheduleUnit, Sgd, SgdConfig, Warmup,
};
use crate::run::config::TrainConfig;
use crate::run::dir::{self, CHECKPOINT_FILE, CONFIG_FILE, Existing};
use crate::run::meta::{
    CheckpointMeta, LoopState, MODEL_PREFIX, ModelInfo, OPTIMIZER_PREFIX, fresh_model,
};

/// How to treat an existing run directory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Continue the run in `--out` from its last checkpoint.
    pub resume: bool,
    /// Overwrite a finished or interrupted run in `--out`.
    pub force: bool,
    /// Stop once this many epochs are complete, as if interrupted (the run stays resumable;
    /// no export or summary is written). Used to test resumption and for time-boxed sessions.
    pub stop_after: Option<usize>,
}

/// Everything a run needs, built from its config (and its checkpoint when resuming).
pub(crate) struct Session {
    pub config: TrainConfig,
    pub out: PathBuf,
    pub data: TrainTest,
    pub norm: Normalize,
    pub augment: Option<Augment>,
    pub train_idx: Vec<usize>,
    pub val_idx: Vec<usize>,
    pub test_idx: Vec<usize>,
    pub model: Box<dyn Module<f32>>,
    pub method: Box<dyn Method>,
    pub opt: Box<dyn Optimizer<f32>>,
    pub schedule: LrSchedule,
    pub info: ModelInfo,
    pub shape: RunShape,
    pub state: LoopState,
    /// Whether the weights currently keep their effective-weight gradients.
    pub retaining: bool,
    /// Weights whose layers ran on the sparse kernels in some step of the last epoch.
    pub trained_sparse: Vec<String>,
    pub session_start: Instant,
}

/// The optimiser named in the config, with the method's groups first, then the bias/batchnorm
/// weight-decay group when `--bias-decay` is set (public for programs that run their own loop).
pub fn build_optimizer(
    config: &TrainConfig,
    method: &dyn Method,
) -> Result<Box<dyn Optimizer<f32>>> {
    let mut groups: Vec<ParamGroup> = method.param_groups();
    if let Some(d) = config.bias_decay {
        groups.push(ParamGroup::new(ParamMatch::BiasesAndNorms).with_weight_decay(d));
    }
    let mut opt: Box<dyn Optimizer<f32>> = match config.optimizer {
        OptimizerKind::Sgd => Box::new(Sgd::try_new(SgdConfig {
            lr: config.lr,
            momentum: config.momentum,
            nesterov: config.nesterov,
            weight_decay: config.weight_decay,
            ..SgdConfig::default()
        })?),
        kind => {
            let base = if kind == OptimizerKind::Adamw {
                AdamConfig::adamw()
            } else {
                AdamConfig::adam()
            };
            Box::new(Adam::try_new(AdamConfig {
                lr: config.lr,
                weight_decay: config.weight_decay,
                ..base
            })?)
        }
    };
    opt.set_groups(groups)?;
    Ok(opt)
}

/// The learning-rate schedule over `units` (epochs or steps) of one round.
fn build_schedule(config: &TrainConfig, units: usize) -> Result<LrSchedule> {
    let warmup = config.warmup.as_deref().map(Warmup::parse).transpose()?;
    let warm = warmup.as_ref().map_or(0, |w| w.units);
    if warm >= units {
        return Err(Error::invalid(format!(
            "--warmup ({warm} {}s) must be shorter than the run ({units} {}s)",
            config.schedule_unit, config.schedule_unit
        )));
    }
    let schedule = Schedule::parse(&config.schedule, units - warm)?;
    if let Schedule::Cosine { eta_min, .. } = schedule
        && eta_min >= config.lr
    {
        return Err(Error::invalid(format!(
            "--schedule `{}`: ETA_MIN {eta_min} must be below --lr {} (the cosine would make \
             the learning rate rise)",
            config.schedule, config.lr
        )));
    }
    Ok(LrSchedule::new(config.lr, warmup, schedule))
}

/// A config as `--flag -> value`, method settings lifted to the top level.
fn flags(config: &TrainConfig) -> std::collections::BTreeMap<String, serde_json::Value> {
    let serde_json::Value::Object(top) = serde_json::to_value(config).expect("config serialises")
    else {
        unreachable!("a struct serialises to an object")
    };
    let mut out = std::collections::BTreeMap::new();
    for (key, value) in top {
        match value {
            serde_json::Value::Object(nested) => {
                out.extend(nested.into_iter().map(|(k, v)| (k.replace('_', "-"), v)))
            }
            v => {
                out.insert(key.replace('_', "-"), v);
            }
        }
    }
    out
}

/// The settings in which a resumed run's config differs from the saved one (`--threads` and
/// `--out` may differ: results do not depend on them; `--sparse-kernels` is taken from the saved
/// run, so that it continues to the bytes an uninterrupted run gives).
fn resume_conflicts(saved: &TrainConfig, asked: &TrainConfig) -> Vec<String> {
    let (saved, asked) = (flags(saved), flags(asked));
    saved
        .iter()
        .filter(|(flag, _)| !matches!(flag.as_str(), "threads" | "out" | "sparse-kernels"))
        .filter_map(|(flag, was)| {
            let now = asked.get(flag).unwrap_or(&serde_json::Value::Null);
            (was != now).then(|| format!("--{flag} was {was}, now {now}"))
        })
        .collect()
}

/// The checkpoint of the run in `out` that `--resume` continues, checked against `config`.
fn checkpoint_to_resume(
    config: &TrainConfig,
    out: &Path,
) -> Result<(Checkpoint<f32>, CheckpointMeta, PathBuf)> {
    let path = out.join(CHECKPOINT_FILE);
    if !path.exists() {
        return Err(Error::invalid(format!(
            "--resume: {} holds no {CHECKPOINT_FILE} to resume from",
            out.display()
        )));
    }
    let ckpt: Checkpoint<f32> = checkpoint::load(&path)?;
    let meta = CheckpointMeta::from_checkpoint(&ckpt, &path)?;
    // Checkpoints written before `--data` was saved resolved hold it as typed.
    let saved = TrainConfig {
        data: resolved_data_name(&meta.config.data),
        ..meta.config.clone()
    };
    let conflicts = resume_conflicts(&saved, config);
    if !conflicts.is_empty() {
        return Err(Error::invalid(format!(
            "--resume: the run in {} was started with other settings: {}",
            out.display(),
            conflicts.join("; ")
        )));
    }
    if meta.state.is_none() {
        return Err(Error::format(
            &path,
            "an export, not a resumable checkpoint",
        ));
    }
    Ok((ckpt, meta, path))
}

impl Session {
    /// Sets the run up (resuming from `--out`'s checkpoint if asked), then prepares the run
    /// directory and writes `config.json`.
    pub fn open(config: &TrainConfig, options: RunOptions) -> Result<Session> {
        let out = config.out_dir();
        let resume_from = if options.resume {
            Some(checkpoint_to_resume(config, &out)?)
        } else {
            None
        };
        let config = &match &resume_from {
            Some((_, meta, _)) => TrainConfig {
                sparse_kernels: meta.config.sparse_kernels,
                ..config.clone()
            },
            None => config.clone(),
        };
        let data = load_dir(Path::new(&config.data))?;
        let norm = data.default_normalize();
        let (train_idx, val_idx) = split_train_val(data.train.len(), config.val_split, config.seed)
            .map_err(|e| Error::invalid(format!("--val-split: {e}")))?;
        let info = ModelInfo {
            model: config.model,
            width: config.width,
            method: config.method.as_str().to_string(),
            input: data.train.image_shape(),
            classes: data.train.classes,
            data_kind: data.kind.name().to_string(),
            normalize_mean: norm.mean.clone(),
            normalize_std: norm.std.clone(),
        };
        let mut model = fresh_model(&info, config.seed)?;
        let mut method = config.build_method()?;
        method.attach(model.as_mut())?;
        set_sparse_kernels(model.as_mut(), config.sparse_kernels);
        let opt = build_optimizer(config, method.as_ref())?;
        let shape = RunShape {
            epochs: config.epochs,
            steps_per_epoch: train_idx.len().div_ceil(config.batch_size),
            rounds: method.rounds(),
        };
        let units = match config.schedule_unit {
            ScheduleUnit::Step => shape.epochs * shape.steps_per_epoch,
            ScheduleUnit::Epoch => shape.epochs,
        };
        let schedule = build_schedule(config, units)?;
        method.check_run(&shape)?;
        let mut session = Session {
            config: config.clone(),
            augment: data.kind.default_augment(config.seed),
            test_idx: (0..data.test.len()).collect(),
            out,
            data,
            norm,
            train_idx,
            val_idx,
            model,
            method,
            opt,
            schedule,
            info,
            shape,
            state: LoopState::start(),
            retaining: false,
            trained_sparse: Vec::new(),
            session_start: Instant::now(),
        };
        match resume_from {
            Some((ckpt, meta, path)) => session.restore(&ckpt, &meta, &path)?,
            None => session.init_method()?,
        }
        let policy = match options {
            RunOptions { resume: true, .. } => Existing::Resume,
            RunOptions { force: true, .. } => Existing::Overwrite,
            _ => Existing::Refuse { resumable: true },
        };
        dir::prepare(&session.out, policy, None)?;
        write_json(&session.out.join(CONFIG_FILE), config)?;
        session.session_start = Instant::now();
        Ok(session)
    }

    /// Model, optimiser state, method state and loop position from a checkpoint.
    fn restore(
        &mut self,
        ckpt: &Checkpoint<f32>,
        meta: &CheckpointMeta,
        path: &Path,
    ) -> Result<()> {
        checkpoint::load_into(self.model.as_mut(), ckpt, MODEL_PREFIX, path)?;
        optim::load_state(
            self.opt.as_mut(),
            self.model.as_ref(),
            &ckpt.with_prefix(OPTIMIZER_PREFIX),
        )?;
        self.method.load_state(&meta.method_state(ckpt))?;
        self.state = meta.state.clone().expect("checked by checkpoint_to_resume");
        Ok(())
    }

    /// The method's data-aware start on the training split (fresh runs only).
    fn init_method(&mut self) -> Result<()> {
        let info = self.info.clone();
        let fresh = move |seed: u64| fresh_model(&info, seed);
        let data = InitData {
            data: &self.data.train,
            indices: &self.train_idx,
            norm: &self.norm,
            batch_size: self.config.batch_size,
            seed: self.config.seed,
            fresh_model: &fresh,
            spec: self.info.spec(),
        };
        self.method.init(self.model.as_mut(), &data)
    }
}
