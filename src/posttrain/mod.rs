//! `sparsegrad posttrain`: sparsify a trained dense model with a small calibration set, no labels.
//!
//! The driver, per run:
//! 1. rebuild the dense model from a checkpoint or export of `sparsegrad train` (its effective
//!    weights, so a model trained with any method works), twice: a frozen teacher and the student;
//! 2. draw `--calib` images with `--seed` from the run's own training split (the same
//!    `split_train_val` as the run, so validation and test images are never used);
//! 3. put the method's transforms on the student: FCPTS thresholds from the ERK allocation
//!    ([`fcpts::prepare`]) or a baseline's fixed magnitude masks ([`baselines::prepare`]);
//! 4. optimise for `--iters` batches: L = L_rec + λ L_c with L_rec = KL(teacher || student) on the
//!    logits at temperature T (T² scaled) and L_c FCPTS's control loss (absent for the baselines,
//!    whose masks stay fixed); SGD with momentum, weight decay on the model's parameters only,
//!    linear warm-up then cosine decay per iteration;
//! 5. FCPTS: the exact fix-up ([`fcpts::fix_up`]) so the global sparsity is round(r0 N) / N;
//! 6. evaluate dense and sparse on the test set; write `config.json`, `posttrain.jsonl`,
//!    `summary.json`, `model.safetensors` (the PyTorch `state_dict` export with metadata that
//!    `sparsegrad eval` reads) and `sparsity.svg`.
//!
//! Teacher and student stay in training mode throughout, as in the authors' code (batchnorm uses
//! batch statistics and the student's running statistics are re-estimated on the calibration data);
//! the calibration batches get the data set's training augmentation (none for MNIST).

pub mod baselines;
pub mod config;
pub mod fcpts;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

pub use config::PosttrainConfig;
pub use fcpts::{FcptsOptions, FixUp};

use crate::data::detect::load_dir;
use crate::data::{Normalize, TrainTest, augmented_batches, epoch_order, split_train_val};
use crate::error::{Error, Result};
use crate::io::checkpoint::{self, Checkpoint};
use crate::io::plot::draw_sparsity_bars;
use crate::io::runlog::{LayerSparsity, write_json};
use crate::models;
use crate::nn::Module;
use crate::optim::{
    self, LrSchedule, Optimizer, ParamGroup, ParamMatch, Schedule, Sgd, SgdConfig, Warmup,
};
use crate::rng::derived;
use crate::sparsity::budget::{Allocation, Budget};
use crate::sparsity::report::{LayerReport, sparsity_report};
use crate::tape::Tape;
use crate::train::Progress;
use crate::train::evaluate::accuracy;
use crate::train::trainer::{
    CHECKPOINT_FILE, CONFIG_FILE, CheckpointMeta, INIT_STREAM, METRICS_FILE, MODEL_FILE, ModelInfo,
    SPARSITY_FILE, SUMMARY_FILE, load_model,
};

/// RNG stream of the calibration draw (see `rng::derived`).
pub const CALIB_STREAM: u64 = 0x4341_4c49;
/// The per-iteration log inside a run directory.
pub const LOG_FILE: &str = "posttrain.jsonl";

/// One line of `posttrain.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IterationLog {
    /// Iterations done.
    pub iter: usize,
    /// Learning rate of the last iteration.
    pub lr: f64,
    /// Mean L_rec over the iterations since the previous line.
    pub l_rec: f64,
    /// Mean L_c (unweighted) over the same iterations; FCPTS only.
    pub l_c: Option<f64>,
    /// Global sparsity of the prunable weights after the last iteration.
    pub sparsity: f64,
    pub layers: Vec<LayerSparsity>,
}

/// One prunable weight in `summary.json`.
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
    pub dense_test_accuracy: f64,
    pub test_accuracy: f64,
    pub flops_dense: usize,
    pub flops_sparse: usize,
    pub layers: Vec<PosttrainLayer>,
    /// Setting up the method, optimising and fixing up.
    pub optimise_seconds: f64,
    /// Both test-set evaluations.
    pub evaluate_seconds: f64,
    /// Everything, loading and writing included.
    pub wall_seconds: f64,
    pub config: serde_json::Value,
}

impl PosttrainSummary {
    /// This run as a row of `sparsegrad report`'s comparison table.
    pub fn comparison_row(&self, run: &str) -> crate::io::compare::ComparisonRow {
        let variant = [self.variant.as_deref(), self.density.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>();
        let method = if variant.is_empty() {
            format!("{} r0 {}", self.method, self.target_sparsity)
        } else {
            format!(
                "{} ({}) r0 {}",
                self.method,
                variant.join(", "),
                self.target_sparsity
            )
        };
        let layers: Vec<crate::sparsity::report::LayerReport> =
            self.layers.iter().map(|l| l.report.clone()).collect();
        crate::io::compare::ComparisonRow {
            run: run.to_string(),
            model: self.model.clone(),
            method,
            test_accuracy: self.test_accuracy,
            best_test_accuracy: None,
            sparsity: self.achieved_sparsity,
            params_nonzero: self.params_nonzero,
            params_total: self.params_total,
            flops_sparse: self.flops_sparse,
            flops_dense: self.flops_dense,
            layers: crate::io::compare::layer_sparsities(&layers),
            wall_seconds: self.wall_seconds,
        }
    }
}

/// What the method does, resolved from the config.
enum Plan {
    Fcpts(FcptsOptions),
    Baseline(Budget),
}

impl Plan {
    fn of(config: &PosttrainConfig) -> Result<Plan> {
        match baselines::budget_of(&config.method) {
            Some(budget) => Ok(Plan::Baseline(budget)),
            None => Ok(Plan::Fcpts(FcptsOptions::from_config(config)?)),
        }
    }
}

/// `calib` of the training indices `train_idx`, drawn with `seed`, ascending.
pub fn calibration_indices(train_idx: &[usize], calib: usize, seed: u64) -> Vec<usize> {
    let mut order = train_idx.to_vec();
    order.shuffle(&mut derived(seed, CALIB_STREAM));
    order.truncate(calib);
    order.sort_unstable();
    order
}

/// Metadata of the export: what `sparsegrad eval` reads, plus the post-training settings.
#[derive(Serialize)]
struct ExportMeta<'a> {
    #[serde(flatten)]
    base: &'a CheckpointMeta,
    posttrain: &'a PosttrainConfig,
}

/// A plain model of `meta`'s architecture holding `tensors` (an export's names).
fn plain_model(
    meta: &CheckpointMeta,
    tensors: &checkpoint::NamedTensors<f32>,
    source: &Path,
) -> Result<Box<dyn Module<f32>>> {
    let mut model = models::build(
        &meta.info.spec(),
        &mut derived(meta.config.seed, INIT_STREAM),
    )?;
    let ckpt = Checkpoint {
        tensors: tensors.clone(),
        dtypes: Default::default(),
        metadata: BTreeMap::new(),
    };
    checkpoint::load_into(model.as_mut(), &ckpt, "", source)?;
    Ok(model)
}

/// Files a run directory may hold (train's and ours): all are replaced under `--force`.
const RUN_FILES: &[&str] = &[
    CONFIG_FILE,
    METRICS_FILE,
    LOG_FILE,
    SUMMARY_FILE,
    CHECKPOINT_FILE,
    MODEL_FILE,
    SPARSITY_FILE,
    "curves.svg",
];

fn check_out_dir(config: &PosttrainConfig, force: bool) -> Result<()> {
    let out = &config.out;
    let input_dir = config.checkpoint.parent().and_then(|p| {
        let p = if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        };
        p.canonicalize().ok()
    });
    if input_dir.is_some() && input_dir == out.canonicalize().ok() {
        return Err(Error::invalid(format!(
            "--out {} holds the input --checkpoint; choose another directory",
            out.display()
        )));
    }
    let holds_run = [CONFIG_FILE, CHECKPOINT_FILE, MODEL_FILE, SUMMARY_FILE]
        .iter()
        .any(|f| out.join(f).exists());
    if holds_run && !force {
        return Err(Error::invalid(format!(
            "{} already holds a run; pass --force to overwrite it",
            out.display()
        )));
    }
    if holds_run {
        for f in RUN_FILES {
            let _ = std::fs::remove_file(out.join(f));
        }
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))
}

/// Appends JSON lines to `posttrain.jsonl`, flushed as the run goes.
struct JsonLines {
    path: PathBuf,
    file: File,
}

impl JsonLines {
    fn create(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(JsonLines {
            path: path.to_path_buf(),
            file,
        })
    }

    fn append<T: Serialize>(&mut self, line: &T) -> Result<()> {
        let text = serde_json::to_string(line).expect("log lines serialise") + "\n";
        self.file
            .write_all(text.as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(|e| Error::io(&self.path, e))
    }
}

/// Everything loaded and checked before the run directory is touched.
struct Inputs {
    meta: CheckpointMeta,
    dense: checkpoint::NamedTensors<f32>,
    data: TrainTest,
    norm: Normalize,
    calib: Vec<usize>,
    plan: Plan,
}

fn load_inputs(config: &PosttrainConfig) -> Result<Inputs> {
    let plan = Plan::of(config)?;
    let path = &config.checkpoint;
    let (model, meta) = load_model(path)?;
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
        plan,
    })
}

/// SGD over the model's parameters (weight decay) and FCPTS's scores (`--score-lr`, no decay).
fn build_optimizer(config: &PosttrainConfig) -> Result<Sgd<f32>> {
    let mut opt = Sgd::try_new(SgdConfig {
        lr: config.lr,
        momentum: config.momentum,
        weight_decay: config.weight_decay,
        ..SgdConfig::default()
    })?;
    opt.set_groups(vec![
        ParamGroup::new(ParamMatch::Suffix("_score".into()))
            .with_weight_decay(0.0)
            .with_lr_scale(config.score_lr() / config.lr),
    ])?;
    Ok(opt)
}

/// The reconstruction loop: `config.iters` batches of the calibration set (reshuffled every pass).
fn optimise(
    config: &PosttrainConfig,
    inputs: &Inputs,
    student: &mut dyn Module<f32>,
    teacher: &mut dyn Module<f32>,
    fcpts: Option<&FcptsOptions>,
    log: &mut JsonLines,
    progress: &mut Progress,
) -> Result<()> {
    let mut opt = build_optimizer(config)?;
    let warmup = (config.warmup > 0).then_some(Warmup {
        units: config.warmup,
        // The authors' timm scheduler warms up linearly from 0 (`WARMUP_LR 0.0`).
        start_factor: 0.0,
    });
    let schedule = LrSchedule::new(
        config.lr,
        warmup,
        Schedule::Cosine {
            t_max: config.iters - config.warmup,
            eta_min: 0.0,
        },
    );
    let augment = inputs.data.kind.default_augment(config.seed);
    student.set_training(true);
    teacher.set_training(true);
    progress.start_epoch(
        &format!("{} r0={}", config.method, config.target_sparsity),
        config.iters,
    );
    let (mut iter, mut pass) = (0usize, 0usize);
    let (mut rec_sum, mut control_sum, mut window) = (0.0f64, 0.0f64, 0usize);
    while iter < config.iters {
        let order = epoch_order(&inputs.calib, config.seed, pass);
        for batch in augmented_batches::<f32>(
            &inputs.data.train,
            &order,
            config.batch_size,
            &inputs.norm,
            augment.as_ref(),
            pass,
        ) {
            if iter == config.iters {
                break;
            }
            schedule.apply(&mut opt, iter);
            let images = Arc::new(batch.images);
            let target = {
                let tape = Tape::new();
                let _no_grad = tape.no_grad();
                teacher
                    .forward(tape.constant_shared(images.clone()))
                    .value()
            };
            let tape = Tape::new();
            let logits = student.forward(tape.constant_shared(images));
            let l_rec = logits.kl_div_logits(tape.constant_shared(target), config.temperature);
            let l_c = fcpts
                .map(|f| fcpts::control_loss(student, &tape, config.target_sparsity, &f.density));
            let loss = match l_c {
                Some(c) => l_rec + c.mul_scalar(config.control_weight),
                None => l_rec,
            };
            let value = loss.item() as f64;
            if !value.is_finite() {
                return Err(Error::Diverged(format!(
                    "posttrain diverged at iteration {}: the loss became {value} (try a smaller --lr)",
                    iter + 1
                )));
            }
            rec_sum += l_rec.item() as f64;
            control_sum += l_c.map_or(0.0, |c| c.item() as f64);
            window += 1;
            let grads = loss.backward();
            optim::step(&mut opt, student, &grads);
            iter += 1;
            progress.step(batch.labels.len(), rec_sum / window as f64);
            if iter % config.log_every == 0 || iter == config.iters {
                let report = sparsity_report(student);
                log.append(&IterationLog {
                    iter,
                    lr: opt.lr(),
                    l_rec: rec_sum / window as f64,
                    l_c: fcpts.map(|_| control_sum / window as f64),
                    sparsity: report.overall_sparsity,
                    layers: report.layers.iter().map(LayerSparsity::from).collect(),
                })?;
                (rec_sum, control_sum, window) = (0.0, 0.0, 0);
            }
        }
        pass += 1;
    }
    Ok(())
}

/// A warning when the learned thresholds missed the target by more than 1% of the weights: the
/// control loss lost to the reconstruction loss, and the fix-up, not the optimisation, chose
/// which weights to prune.
fn fixup_warning(f: &FixUp, total: usize) -> Option<String> {
    let missed = f.pruned_before.abs_diff(f.goal);
    (missed * 100 > total).then(|| {
        format!(
            "warning: the learned thresholds prune {:.2}% of the weights instead of {:.2}%; the fix-up moved {} weights (try a larger --control-weight or a smaller --score-lr)",
            100.0 * f.pruned_before as f64 / total as f64,
            100.0 * f.goal as f64 / total as f64,
            f.changed
        )
    })
}

/// Reads the summary of a finished post-training run (for `report`).
pub fn read_summary(run: &Path) -> Result<PosttrainSummary> {
    let path = run.join(SUMMARY_FILE);
    if !path.exists() {
        return Err(Error::invalid(format!(
            "{} holds no {SUMMARY_FILE} (not a finished sparsegrad run)",
            run.display()
        )));
    }
    crate::io::runlog::read_json(&path)
}

/// Runs `config`, writing the run directory `config.out`.
pub fn run(
    config: &PosttrainConfig,
    force: bool,
    progress: &mut Progress,
) -> Result<PosttrainSummary> {
    let started = Instant::now();
    config.validate()?;
    // Everything that can fail on bad input is checked before the run directory is touched.
    let inputs = load_inputs(config)?;
    check_out_dir(config, force)?;
    let out = &config.out;
    write_json(&out.join(CONFIG_FILE), config)?;
    let mut log = JsonLines::create(&out.join(LOG_FILE))?;
    let source = &config.checkpoint;
    let mut teacher = plain_model(&inputs.meta, &inputs.dense, source)?;
    let mut student = plain_model(&inputs.meta, &inputs.dense, source)?;
    let test_idx: Vec<usize> = (0..inputs.data.test.len()).collect();

    let eval_start = Instant::now();
    let dense_test_accuracy =
        accuracy(teacher.as_mut(), &inputs.data.test, &test_idx, &inputs.norm);
    let mut evaluate_seconds = eval_start.elapsed().as_secs_f64();

    let optimise_start = Instant::now();
    let r0 = config.target_sparsity;
    let (fcpts_options, initial): (Option<FcptsOptions>, Allocation) = match &inputs.plan {
        Plan::Fcpts(options) => (
            Some(*options),
            fcpts::prepare(student.as_mut(), r0, options)?,
        ),
        Plan::Baseline(budget) => (None, baselines::prepare(student.as_mut(), budget, r0)?),
    };
    let iterations = if config.finetune { config.iters } else { 0 };
    if iterations > 0 {
        optimise(
            config,
            &inputs,
            student.as_mut(),
            teacher.as_mut(),
            fcpts_options.as_ref(),
            &mut log,
            progress,
        )?;
    }
    let fixup = fcpts_options.map(|_| fcpts::fix_up(student.as_mut(), r0));
    let optimise_seconds = optimise_start.elapsed().as_secs_f64();
    if let Some(f) = &fixup
        && let Some(warning) = fixup_warning(f, initial.total_params())
    {
        progress.note(&warning);
    }
    if iterations > 0 {
        progress.finish_epoch(&format!(
            "{} iterations in {optimise_seconds:.1}s{}",
            iterations,
            fixup.as_ref().map_or(String::new(), |f| format!(
                "; learned thresholds prune {} weights, the fix-up moved {} to reach {}",
                f.pruned_before, f.changed, f.goal
            ))
        ));
    }

    let eval_start = Instant::now();
    let test_accuracy = accuracy(student.as_mut(), &inputs.data.test, &test_idx, &inputs.norm);
    evaluate_seconds += eval_start.elapsed().as_secs_f64();
    let report = sparsity_report(student.as_ref());

    let info = ModelInfo {
        method: config.method.clone(),
        ..inputs.meta.info.clone()
    };
    let base = CheckpointMeta::new(&info, &inputs.meta.config, None);
    let export_config = PosttrainConfig {
        out: PathBuf::new(),
        threads: None,
        ..config.clone()
    };
    let metadata = BTreeMap::from([(
        checkpoint::METADATA_KEY.to_string(),
        serde_json::to_string(&ExportMeta {
            base: &base,
            posttrain: &export_config,
        })
        .expect("metadata serialises"),
    )]);
    checkpoint::save(
        &out.join(MODEL_FILE),
        &checkpoint::export_tensors(student.as_ref()),
        &metadata,
    )?;

    let layers: Vec<PosttrainLayer> = report
        .layers
        .iter()
        .zip(&initial.layers)
        .enumerate()
        .map(|(l, (r, init))| PosttrainLayer {
            report: r.clone(),
            initial_sparsity: init.sparsity(),
            learned_sparsity: fixup.as_ref().map(|f| f.learned_sparsity[l]),
            learned_threshold: fixup.as_ref().map(|f| f.learned_threshold[l]),
        })
        .collect();
    let options = fcpts_options.as_ref();
    let summary = PosttrainSummary {
        model: inputs.meta.info.model.clone(),
        method: config.method.clone(),
        variant: options.map(|o| o.variant_name().to_string()),
        surrogate: options.and_then(|o| o.surrogate_name()),
        density: options.map(|o| o.density_name().to_string()),
        target_sparsity: r0,
        achieved_sparsity: report.overall_sparsity,
        params_total: report.params_total,
        params_nonzero: report.params_nonzero,
        pruned_goal: (r0 * report.params_total as f64).round() as usize,
        fixup,
        calibration_images: inputs.calib.len(),
        iterations,
        dense_test_accuracy,
        test_accuracy,
        flops_dense: report.flops_dense,
        flops_sparse: report.flops_sparse,
        layers,
        optimise_seconds,
        evaluate_seconds,
        wall_seconds: started.elapsed().as_secs_f64(),
        config: serde_json::to_value(config).expect("config serialises"),
    };
    write_json(&out.join(SUMMARY_FILE), &summary)?;
    let title = format!(
        "{} / {}: {:.2}% sparse, test {:.2}%",
        summary.model,
        summary.method,
        100.0 * summary.achieved_sparsity,
        100.0 * summary.test_accuracy
    );
    draw_sparsity_bars(&out.join(SPARSITY_FILE), &title, &report.layers)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixup(pruned_before: usize, goal: usize) -> FixUp {
        FixUp {
            goal,
            pruned_before,
            pruned_after: goal,
            changed: pruned_before.abs_diff(goal),
            learned_sparsity: Vec::new(),
            learned_threshold: Vec::new(),
        }
    }

    #[test]
    fn warns_only_when_the_thresholds_missed_by_more_than_one_percent() {
        assert_eq!(fixup_warning(&fixup(900, 900), 1000), None);
        assert_eq!(fixup_warning(&fixup(910, 900), 1000), None);
        assert_eq!(
            fixup_warning(&fixup(911, 900), 1000).as_deref(),
            Some(
                "warning: the learned thresholds prune 91.10% of the weights instead of 90.00%; the fix-up moved 11 weights (try a larger --control-weight or a smaller --score-lr)"
            )
        );
        assert!(fixup_warning(&fixup(889, 900), 1000).is_some());
    }
}
