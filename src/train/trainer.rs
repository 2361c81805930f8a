//! The training loop behind `sparsegrad train`.
//!
//! Per step: forward, cross-entropy (+ the method's regulariser), the divergence guard, backward,
//! the method's `after_backward`, `optim::step`, the method's `after_step`. Per epoch: validation
//! and test accuracy, per-layer sparsity, a `metrics.jsonl` line, and an atomic
//! `checkpoint.safetensors` holding everything needed to resume bit-identically (parameters,
//! buffers, transform parameters, optimiser state, the method's state and the loop's position).
//! Every random draw is a function of (seed, epoch, step), so a resumed run repeats exactly what
//! an uninterrupted run does. Iterative methods run `rounds` x `--epochs` epochs; each round
//! restarts the learning-rate schedule and the optimiser's state.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::data::detect::resolved_data_name;
use crate::data::{epoch_order, gather_augmented};
use crate::error::Result;
use crate::io::checkpoint;
use crate::io::json::write_json;
use crate::methods::{EpochEval, StepInfo};
use crate::metrics::correct;
use crate::nn::{set_sparse_kernels, sparse_layers};
use crate::optim::{self, ScheduleUnit};
use crate::run::best::select_best;
use crate::run::config::TrainConfig;
use crate::run::dir::{CHECKPOINT_FILE, METRICS_FILE, SUMMARY_FILE, extra_model_file};
use crate::run::evaluate::accuracy;
use crate::run::figures::{draw_sparsity, draw_training_curves, title};
use crate::run::guard::{At, check_loss, check_params};
use crate::run::log::JsonLines;
use crate::run::meta::{CheckpointMeta, checkpoint_tensors, save_exports};
use crate::run::progress::Progress;
use crate::run::summary::{EpochMetrics, LayerSparsity, SparseKernelUse, Summary};
use crate::sparsity::mask::mask_exact_zeros;
use crate::sparsity::report::sparsity_report;
use crate::tape::Tape;
use crate::train::session::{RunOptions, Session, build_optimizer};

/// How a call to [`train`] ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// All epochs done; the run directory holds the export, summary and figures.
    Finished(Box<Summary>),
    /// Stopped early as asked by [`RunOptions::stop_after`]; resumable.
    Stopped { epochs_done: usize },
}

/// Trains as `config` says, writing the run directory `config.out_dir()`.
pub fn train(
    config: &TrainConfig,
    options: RunOptions,
    progress: &mut Progress,
) -> Result<Outcome> {
    config.validate()?;
    let config = &TrainConfig {
        data: resolved_data_name(&config.data),
        ..config.clone()
    };
    let mut s = Session::open(config, options)?;
    let done = s.state.epoch;
    let mut log = JsonLines::open(&s.out.join(METRICS_FILE), |m: &EpochMetrics| {
        m.epoch <= done
    })?;
    let total_epochs = s.shape.epochs * s.shape.rounds;
    let last_epoch = options
        .stop_after
        .map_or(total_epochs, |n| n.min(total_epochs));
    for epoch in s.state.epoch..last_epoch {
        s.run_epoch(epoch, &mut log, progress)?;
    }
    if last_epoch < total_epochs {
        return Ok(Outcome::Stopped {
            epochs_done: last_epoch,
        });
    }
    let summary = s.finish()?;
    if let Some(warning) = summary.fixup.as_ref().and_then(|f| f.warning()) {
        progress.note(&format!("warning: {warning}"));
    }
    Ok(Outcome::Finished(Box::new(summary)))
}

/// Running sums of one epoch's training batches.
#[derive(Default)]
struct EpochTotals {
    loss: f64,
    right: usize,
    seen: usize,
}

impl Session {
    /// The position of `epoch` in its round: (round, epoch within the round).
    fn round_of(&self, epoch: usize) -> (usize, usize) {
        (epoch / self.shape.epochs, epoch % self.shape.epochs)
    }

    /// Sets the learning rate for schedule position `t` of `round`.
    fn set_lr(&mut self, round: usize, t: usize) {
        let lr = self.schedule.lr_at(t) * self.method.round_lr_scale(round);
        self.opt.set_lr(lr);
    }

    /// One epoch: its steps, then evaluation, the metrics line and the checkpoint.
    pub(crate) fn run_epoch(
        &mut self,
        epoch: usize,
        log: &mut JsonLines<EpochMetrics>,
        progress: &mut Progress,
    ) -> Result<()> {
        let epoch_start = Instant::now();
        let (round, in_round) = self.round_of(epoch);
        if epoch > 0 && in_round == 0 {
            self.method.start_round(self.model.as_mut(), round)?;
            self.opt = build_optimizer(&self.config, self.method.as_ref())?;
        }
        if self.config.schedule_unit == ScheduleUnit::Epoch {
            self.set_lr(round, in_round);
        }
        let label = if self.shape.rounds > 1 {
            format!(
                "round {}/{} epoch {:>3}/{}",
                round + 1,
                self.shape.rounds,
                in_round + 1,
                self.shape.epochs
            )
        } else {
            format!("epoch {:>3}/{}", epoch + 1, self.shape.epochs)
        };
        progress.start_epoch(&label, self.shape.steps_per_epoch);
        let order = epoch_order(&self.train_idx, self.config.seed, epoch);
        let mut totals = EpochTotals::default();
        for (i, idx) in order.chunks(self.config.batch_size).enumerate() {
            self.step(
                epoch,
                round,
                in_round * self.shape.steps_per_epoch + i,
                idx,
                &mut totals,
            )?;
            progress.step(idx.len(), totals.loss / totals.seen as f64);
            if i == 0 {
                self.trained_sparse.clear();
            }
            for name in sparse_layers(self.model.as_ref()) {
                if !self.trained_sparse.contains(&name) {
                    self.trained_sparse.push(name);
                }
            }
        }
        let at = At::Train {
            epoch,
            step: self.state.step,
        };
        check_params(self.model.as_ref(), &self.out, at)?;
        for warning in self.method.after_epoch(self.model.as_mut(), epoch)? {
            progress.note(&format!("warning: {warning}"));
        }
        let metrics = self.evaluate_epoch(epoch, &totals, epoch_start);
        self.method.after_evaluate(&EpochEval {
            epoch,
            steps_done: self.state.step,
            val_acc: metrics.val_acc,
            test_acc: metrics.test_acc,
        });
        log.append(&metrics)?;
        self.save_checkpoint()?;
        progress.finish_epoch(&epoch_line(&metrics, &label));
        Ok(())
    }

    /// One optimiser step on the training images `idx`; `t_in_round` is the step's position in
    /// its round (per-step schedules).
    fn step(
        &mut self,
        epoch: usize,
        round: usize,
        t_in_round: usize,
        idx: &[usize],
        totals: &mut EpochTotals,
    ) -> Result<()> {
        let info = StepInfo {
            epoch,
            step: self.state.step,
            steps_per_epoch: self.shape.steps_per_epoch,
            total_steps: self.shape.total_steps(),
        };
        if self.config.schedule_unit == ScheduleUnit::Step {
            self.set_lr(round, t_in_round);
        }
        let retain = self.method.wants_effective_grads(&info);
        if retain != self.retaining {
            self.model
                .visit_weights_mut("", &mut |_, w| w.retain_effective_grad = retain);
            self.retaining = retain;
        }
        let batch = gather_augmented::<f32>(
            &self.data.train,
            idx,
            &self.norm,
            self.augment.as_ref(),
            epoch,
        );
        self.method
            .before_step(self.model.as_mut(), &batch, &info)?;
        let tape = Tape::new();
        let logits = self.model.forward(tape.constant(batch.images));
        let mut loss = logits.cross_entropy(&batch.labels, self.config.label_smoothing);
        if let Some(extra) = self.method.regulariser(self.model.as_ref(), &tape, &info) {
            loss = loss + extra;
        }
        let value = loss.item() as f64;
        check_loss(
            value,
            &self.out,
            At::Train {
                epoch,
                step: self.state.step,
            },
        )?;
        totals.right += correct(&logits.value(), &batch.labels);
        totals.seen += batch.labels.len();
        totals.loss += value * batch.labels.len() as f64;
        let mut grads = loss.backward();
        self.method
            .after_backward(self.model.as_mut(), &mut grads, &info)?;
        optim::step(self.opt.as_mut(), self.model.as_mut(), &grads);
        self.method.after_step(self.model.as_mut(), &info)?;
        self.state.step += 1;
        Ok(())
    }

    /// Validation and test accuracy after `epoch`, the best-so-far bookkeeping, and the epoch's
    /// metrics line.
    fn evaluate_epoch(&mut self, epoch: usize, t: &EpochTotals, started: Instant) -> EpochMetrics {
        let val_acc = (!self.val_idx.is_empty()).then(|| {
            accuracy(
                self.model.as_mut(),
                &self.data.train,
                &self.val_idx,
                &self.norm,
            )
        });
        let test_acc = accuracy(
            self.model.as_mut(),
            &self.data.test,
            &self.test_idx,
            &self.norm,
        );
        let report = sparsity_report(self.model.as_ref());
        let state = &mut self.state;
        state.epoch = epoch + 1;
        if test_acc > state.best_test_acc {
            (state.best_test_acc, state.best_test_epoch) = (test_acc, epoch + 1);
        }
        if let Some(v) = val_acc
            && state.best_val_acc.is_none_or(|b| v > b)
        {
            (state.best_val_acc, state.test_at_best_val) = (Some(v), Some(test_acc));
        }
        state.wall_seconds += self.session_start.elapsed().as_secs_f64();
        self.session_start = Instant::now();
        EpochMetrics {
            epoch: epoch + 1,
            lr: self.opt.lr(),
            train_loss: t.loss / t.seen.max(1) as f64,
            train_acc: t.right as f64 / t.seen.max(1) as f64,
            val_acc,
            test_acc,
            sparsity: report.overall_sparsity,
            seconds: started.elapsed().as_secs_f64(),
            layers: report.layers.iter().map(LayerSparsity::from).collect(),
        }
    }

    fn save_checkpoint(&mut self) -> Result<()> {
        let method_state = self.method.state();
        self.state.method = method_state.json.clone();
        let tensors = checkpoint_tensors(self.model.as_ref(), self.opt.state(), &method_state);
        let meta = CheckpointMeta::new(&self.info, &self.config, Some(self.state.clone()));
        checkpoint::save(
            &self.out.join(CHECKPOINT_FILE),
            &tensors,
            &meta.to_metadata(),
        )
    }

    /// After the last epoch: the method's finish (bake, fix-up), the export, the final test
    /// accuracy, `summary.json` and the figures.
    fn finish(mut self) -> Result<Summary> {
        // Thresholds as the transforms applied them: `finish` may bake the transforms away.
        let thresholds: BTreeMap<String, f64> = sparsity_report(self.model.as_ref())
            .layers
            .into_iter()
            .filter_map(|l| Some((l.name, l.threshold?)))
            .collect();
        let fixup = self.method.finish(self.model.as_mut())?;
        let method_details = self.method.summary(self.model.as_ref());
        let meta = CheckpointMeta::new(&self.info, &self.config, None);
        let exports = save_exports(&self.out, self.model.as_ref(), &meta.to_metadata())?;
        for (tag, tensors) in self.method.extra_exports() {
            let file = self.out.join(extra_model_file(&tag)?);
            checkpoint::save(&file, &tensors, &meta.to_metadata())?;
        }
        // The final evaluation runs the model as `eval` runs the export: its zeros as masks.
        mask_exact_zeros(self.model.as_mut());
        set_sparse_kernels(self.model.as_mut(), self.config.sparse_kernels);
        let final_test = accuracy(
            self.model.as_mut(),
            &self.data.test,
            &self.test_idx,
            &self.norm,
        );
        let mut report = sparsity_report(self.model.as_ref());
        for layer in &mut report.layers {
            layer.threshold = layer.threshold.or(thresholds.get(&layer.name).copied());
        }
        let history = JsonLines::<EpochMetrics>::read(&self.out.join(METRICS_FILE))?;
        let best = select_best(
            &history,
            report.params_total,
            report.params_total - report.params_nonzero,
            fixup.as_ref().map_or(0, |f| f.changed),
        );
        let state = &self.state;
        let summary = Summary {
            model: self.config.model.to_string(),
            method: self.config.method.to_string(),
            epochs: self.config.epochs,
            test_accuracy: final_test,
            best,
            overall_sparsity: report.overall_sparsity,
            params_total: report.params_total,
            params_nonzero: report.params_nonzero,
            flops_dense: report.flops_dense,
            flops_sparse: report.flops_sparse,
            layers: report.layers.clone(),
            low_rank: report.low_rank.clone(),
            wall_seconds: state.wall_seconds + self.session_start.elapsed().as_secs_f64(),
            config: serde_json::to_value(&self.config).expect("config serialises"),
            fixup,
            method_details,
            exports: Some(exports),
            sparse_kernels: Some(SparseKernelUse {
                mode: self.config.sparse_kernels,
                training: std::mem::take(&mut self.trained_sparse),
                evaluation: sparse_layers(self.model.as_ref()),
            }),
        };
        write_json(&self.out.join(SUMMARY_FILE), &summary)?;
        let figure_title = title(
            &self.out,
            &summary.model,
            &summary.method,
            summary.overall_sparsity,
            summary.test_accuracy,
        );
        draw_training_curves(&self.out, &figure_title)?;
        draw_sparsity(&self.out, &figure_title, &summary.layers)?;
        Ok(summary)
    }
}

/// One log line per epoch (stdout).
fn epoch_line(m: &EpochMetrics, label: &str) -> String {
    let val = m
        .val_acc
        .map(|v| format!("  val {:.2}%", 100.0 * v))
        .unwrap_or_default();
    format!(
        "{label}  lr {:.5}  loss {:.4}  train {:.2}%{val}  test {:.2}%  sparsity {:.2}%  {:.1}s",
        m.lr,
        m.train_loss,
        100.0 * m.train_acc,
        100.0 * m.test_acc,
        100.0 * m.sparsity,
        m.seconds
    )
}
