//! AC/DC: alternating compressed / decompressed training (Peste et al., NeurIPS 2021),
//! `--method acdc`.
//!
//! Epochs are split into phases (the authors' policies act at epoch starts, IST-DASLab/ACDC
//! `policies/{pruners,recyclers}.py`):
//!
//! ```text
//! dense warm-up W | sparse P | dense P | ... | dense P | final sparse F (>= P)
//! ```
//!
//! - a sparse phase starts with a magnitude mask of the current weights at the `--distribution`
//!   allocation of `--target-sparsity` (exact counts; the authors rank |w| globally:
//!   `--distribution global`), fixed during the phase; the masked weights are zeroed and stay
//!   zero, their momentum zeroed (mask hygiene);
//! - a dense phase sets every mask to ones: the pruned weights come back at 0 (the authors'
//!   `RestoreWeights`), with zero momentum;
//! - the run ends sparse; the model at the end of the last dense phase is kept and exported as
//!   `model.dense.safetensors` besides the final sparse `model.safetensors`.
//!
//! Defaults for E epochs: W = P = max(1, round(E / 10)) (the paper's warm-up of 10%; its phases
//! are 5% of ImageNet's 100 epochs, 10% of CIFAR's 200), F = at least max(P, round(0.15 E)),
//! taking up what the sparse / dense pairs leave. The switch happens after an epoch's last
//! step (`after_epoch`), so that epoch's evaluation already sees the next phase's model.

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::io::checkpoint::export_tensors;
use crate::methods::options::{TrainContext, clap_defaults};
use crate::methods::plugin::{Method, MethodState, NamedTensors, Plugin};
use crate::methods::prune::{Prunable, PruneTarget, Score, mask_of, scores};
use crate::nn::Module;
use crate::rng::derived;
use crate::tape::Tensor;

/// AC/DC's flags.
#[derive(Args, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[group(skip)]
#[serde(default)]
pub struct AcdcOptions {
    /// AC/DC: epochs of dense warm-up (default: 10% of --epochs, at least 1).
    #[arg(long)]
    pub acdc_warmup_epochs: Option<usize>,
    /// AC/DC: epochs of each alternating sparse and dense phase (default: 10% of --epochs, at
    /// least 1).
    #[arg(long)]
    pub acdc_phase_epochs: Option<usize>,
    /// AC/DC: least epochs of the final sparse phase (default: 15% of --epochs, at least one
    /// phase); it also takes the epochs the alternating pairs leave.
    #[arg(long)]
    pub acdc_final_epochs: Option<usize>,
}

impl Default for AcdcOptions {
    fn default() -> Self {
        clap_defaults()
    }
}

/// Whether an epoch trains dense or sparse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Dense,
    Sparse,
}

/// The phase plan of a run of `epochs` epochs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcdcSchedule {
    pub epochs: usize,
    pub warmup: usize,
    pub phase: usize,
    /// Epochs of the final sparse phase.
    pub last: usize,
}

impl AcdcSchedule {
    /// The plan from the flags (see the module documentation for the defaults).
    pub fn new(options: &AcdcOptions, epochs: usize) -> Result<Self> {
        let tenth = ((epochs as f64 / 10.0).round() as usize).max(1);
        let warmup = options.acdc_warmup_epochs.unwrap_or(tenth);
        let phase = options.acdc_phase_epochs.unwrap_or(tenth);
        if warmup == 0 {
            return Err(Error::invalid("--acdc-warmup-epochs must be at least 1"));
        }
        if phase == 0 {
            return Err(Error::invalid("--acdc-phase-epochs must be at least 1"));
        }
        let least_last = options
            .acdc_final_epochs
            .unwrap_or(((0.15 * epochs as f64).round() as usize).max(phase));
        if least_last == 0 {
            return Err(Error::invalid("--acdc-final-epochs must be at least 1"));
        }
        let alternating = epochs.saturating_sub(warmup + least_last);
        let pairs = alternating / (2 * phase);
        if pairs == 0 {
            return Err(Error::invalid(format!(
                "AC/DC needs --epochs of at least warm-up + one sparse and one dense phase + the final sparse phase ({warmup} + 2 x {phase} + {least_last} = {}), got {epochs}",
                warmup + 2 * phase + least_last
            )));
        }
        Ok(AcdcSchedule {
            epochs,
            warmup,
            phase,
            last: epochs - warmup - 2 * phase * pairs,
        })
    }

    /// The phase of 0-based epoch `epoch`.
    pub fn phase_of(&self, epoch: usize) -> Phase {
        let final_phase = epoch >= self.epochs - self.last;
        if epoch < self.warmup {
            Phase::Dense
        } else if final_phase || ((epoch - self.warmup) / self.phase).is_multiple_of(2) {
            Phase::Sparse
        } else {
            Phase::Dense
        }
    }
}

/// What the checkpoint keeps besides the masks and the dense snapshot.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AcdcLog {
    /// 0-based epochs at which a sparse phase started (its mask was chosen).
    pub sparse_starts: Vec<usize>,
    /// 0-based epochs at which a dense phase started after a sparse one.
    pub dense_starts: Vec<usize>,
    /// Epochs trained when the last dense model was kept.
    pub dense_export_after_epochs: Option<usize>,
}

/// The AC/DC method.
pub struct Acdc {
    schedule: AcdcSchedule,
    prune: PruneTarget,
    layers: Vec<Prunable>,
    log: AcdcLog,
    /// The model (export form) at the end of the last dense phase.
    dense: Vec<(String, Tensor<f32>)>,
}

impl Plugin<TrainContext> for Acdc {
    type Options = AcdcOptions;
    const SHARED: &'static [&'static str] = PruneTarget::SETTINGS;

    fn build(options: &AcdcOptions, context: &TrainContext) -> Result<Self> {
        let prune = PruneTarget::required(context, "acdc")?;
        Ok(Acdc {
            schedule: AcdcSchedule::new(options, context.epochs)?,
            prune,
            layers: Vec::new(),
            log: AcdcLog::default(),
            dense: Vec::new(),
        })
    }
}

impl Acdc {
    pub fn schedule(&self) -> AcdcSchedule {
        self.schedule
    }

    /// Every mask to ones (a dense phase).
    fn open_masks(model: &mut dyn Module<f32>) -> Result<()> {
        let mut result = Ok(());
        model.visit_weights_mut("", &mut |_, w| {
            if let Some(mask) = mask_of(w) {
                let ones = Tensor::ones(mask.values().raw_dim());
                if let Err(e) = mask.set(ones) {
                    result = Err(e);
                }
            }
        });
        result
    }

    /// The magnitude masks of a sparse phase, from the current weights.
    fn close_masks(&self, model: &mut dyn Module<f32>) -> Result<()> {
        Self::open_masks(model)?;
        // Magnitude scores draw nothing from the generator.
        let magnitudes = scores(model, Score::Magnitude, &mut derived(0, 0));
        self.prune
            .prune(model, &self.layers, &magnitudes, &[])
            .map_err(|e| Error::invalid(format!("AC/DC, {e}")))
    }
}

impl Method for Acdc {
    fn name(&self) -> &'static str {
        "acdc"
    }

    fn attach(&mut self, model: &mut dyn Module<f32>) -> Result<()> {
        self.layers = self.prune.attach_masks(model)?;
        Ok(())
    }

    fn after_epoch(&mut self, model: &mut dyn Module<f32>, epoch: usize) -> Result<Vec<String>> {
        let next = epoch + 1;
        if next >= self.schedule.epochs {
            return Ok(Vec::new());
        }
        match (self.schedule.phase_of(epoch), self.schedule.phase_of(next)) {
            (Phase::Dense, Phase::Sparse) => {
                if next == self.schedule.epochs - self.schedule.last {
                    self.dense = export_tensors(model);
                    self.log.dense_export_after_epochs = Some(next);
                }
                self.close_masks(model)?;
                self.log.sparse_starts.push(next);
            }
            (Phase::Sparse, Phase::Dense) => {
                Self::open_masks(model)?;
                self.log.dense_starts.push(next);
            }
            _ => {}
        }
        Ok(Vec::new())
    }

    fn extra_exports(&self) -> Vec<(String, NamedTensors)> {
        if self.dense.is_empty() {
            return Vec::new();
        }
        vec![("dense".to_string(), self.dense.clone())]
    }

    fn summary(&self, _model: &dyn Module<f32>) -> serde_json::Value {
        serde_json::json!({ "schedule": self.schedule, "log": self.log })
    }

    fn state(&self) -> MethodState {
        let mut state = MethodState::of(&self.log);
        state.tensors = self
            .dense
            .iter()
            .map(|(n, t)| (format!("dense.{n}"), t.clone()))
            .collect();
        state
    }

    fn load_state(&mut self, state: &MethodState) -> Result<()> {
        self.log = state.read("acdc")?;
        self.dense = state
            .tensors
            .iter()
            .filter_map(|(n, t)| Some((n.strip_prefix("dense.")?.to_string(), t.clone())))
            .collect();
        Ok(())
    }
}
