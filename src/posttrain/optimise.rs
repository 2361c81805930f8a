//! The post-training reconstruction loop: `--iters` batches of the calibration set (reshuffled
//! every pass), L = KL(teacher || student) at temperature T (T² scaled) + the method's
//! regulariser, SGD with the method's parameter groups, warm-up then cosine per iteration.

use std::sync::Arc;

use crate::data::{augmented_batches, epoch_order};
use crate::error::Result;
use crate::methods::{Method, StepInfo};
use crate::nn::Module;
use crate::optim::{self, LrSchedule, Optimizer, Schedule, Sgd, SgdConfig, Warmup};
use crate::posttrain::config::PosttrainConfig;
use crate::posttrain::inputs::Inputs;
use crate::run::guard::{At, check_loss};
use crate::run::log::JsonLines;
use crate::run::progress::Progress;
use crate::run::summary::{IterationLog, LayerSparsity};
use crate::sparsity::report::sparsity_report;
use crate::tape::Tape;

/// SGD over the model's parameters (weight decay) with the method's groups (FCPTS's scores:
/// `--score-lr`, no decay).
fn build_optimizer(config: &PosttrainConfig, method: &dyn Method) -> Result<Sgd<f32>> {
    let mut opt = Sgd::try_new(SgdConfig {
        lr: config.lr,
        momentum: config.momentum,
        weight_decay: config.weight_decay,
        ..SgdConfig::default()
    })?;
    opt.set_groups(method.param_groups())?;
    Ok(opt)
}

/// The learning rate: a linear warm-up from 0 (the authors' timm scheduler, `WARMUP_LR 0.0`),
/// then cosine decay to 0 at the last iteration.
fn schedule(config: &PosttrainConfig) -> LrSchedule {
    let warmup = (config.warmup > 0).then_some(Warmup {
        units: config.warmup,
        start_factor: 0.0,
    });
    LrSchedule::new(
        config.lr,
        warmup,
        Schedule::Cosine {
            t_max: config.iters - config.warmup,
            eta_min: 0.0,
        },
    )
}

/// Sums of the losses since the last log line.
#[derive(Default)]
struct Window {
    rec: f64,
    regulariser: f64,
    iters: usize,
    has_regulariser: bool,
}

/// Runs the loop on `student` (the method's transforms attached) against `teacher`.
pub fn optimise(
    config: &PosttrainConfig,
    inputs: &Inputs,
    student: &mut dyn Module<f32>,
    teacher: &mut dyn Module<f32>,
    method: &mut dyn Method,
    log: &mut JsonLines<IterationLog>,
    progress: &mut Progress,
) -> Result<()> {
    let mut opt = build_optimizer(config, method)?;
    let schedule = schedule(config);
    let augment = inputs.data.kind.default_augment(config.seed);
    student.set_training(true);
    teacher.set_training(true);
    progress.start_epoch(
        &format!("{} r0={}", config.method, config.r0()),
        config.iters,
    );
    let (mut iter, mut pass) = (0usize, 0usize);
    let mut window = Window::default();
    while iter < config.iters {
        let order = epoch_order(&inputs.calib, config.seed, pass);
        let batches = augmented_batches::<f32>(
            &inputs.data.train,
            &order,
            config.batch_size,
            &inputs.norm,
            augment.as_ref(),
            pass,
        );
        for batch in batches.take(config.iters - iter) {
            schedule.apply(&mut opt, iter);
            let info = StepInfo {
                epoch: pass,
                step: iter,
                steps_per_epoch: inputs.calib.len().div_ceil(config.batch_size),
                total_steps: config.iters,
            };
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
            let extra = method.regulariser(student, &tape, &info);
            let loss = match extra {
                Some(c) => l_rec + c,
                None => l_rec,
            };
            check_loss(
                loss.item() as f64,
                &config.out_dir(),
                At::Posttrain { iteration: iter },
            )?;
            window.rec += l_rec.item() as f64;
            window.regulariser += extra.map_or(0.0, |c| c.item() as f64);
            window.has_regulariser |= extra.is_some();
            window.iters += 1;
            let mut grads = loss.backward();
            method.after_backward(student, &mut grads, &info)?;
            optim::step(&mut opt, student, &grads);
            method.after_step(student, &info)?;
            iter += 1;
            progress.step(batch.labels.len(), window.rec / window.iters as f64);
            if iter % config.log_every == 0 || iter == config.iters {
                log.append(&log_line(iter, opt.lr(), &window, student))?;
                window = Window::default();
            }
        }
        pass += 1;
    }
    Ok(())
}

fn log_line(iter: usize, lr: f64, w: &Window, student: &dyn Module<f32>) -> IterationLog {
    let report = sparsity_report(student);
    IterationLog {
        iter,
        lr,
        l_rec: w.rec / w.iters as f64,
        l_c: w.has_regulariser.then(|| w.regulariser / w.iters as f64),
        sparsity: report.overall_sparsity,
        layers: report.layers.iter().map(LayerSparsity::from).collect(),
    }
}
