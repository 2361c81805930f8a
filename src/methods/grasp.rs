//! GraSP (Wang et al., ICLR 2020, "Picking Winning Tickets Before Training by Preserving Gradient
//! Flow"), `--method grasp`: prune once at initialisation by the gradient-flow score, then train
//! the sparse network.
//!
//! Score (the paper's eq. 8): S(−θ) = −θ ⊙ (H g), with g the gradient of the loss and H its
//! Hessian, both with respect to the prunable weights; removing the weights of **highest** score
//! preserves (or increases) the gradient norm after pruning, so the highest scores are removed.
//! Details from the authors' code (alecwangcq/GraSP, `pruner/GraSP.py`), all followed here:
//! - the loss is the cross-entropy of the logits divided by a temperature T = 200
//!   (`--grasp-temperature`), in both passes;
//! - the data are `--score-samples-per-class` images of every class (10 for CIFAR-10 in their
//!   configs), ordered by class and split into two halves; g = g_1 + g_2, the sum of the two
//!   halves' mean-loss gradients, and H g = H_1 g + H_2 g;
//! - H g is exact: the authors differentiate g·∇L again (double backward); here a `Dual64` twin of
//!   the model runs forward-over-reverse (`hvp::module_hvp`), with the direction on the weights
//!   only, so the product is the weights' block of H times g, as theirs;
//! - removal is global over all prunable weights (their single top-k of scores normalised by
//!   |Σ S|, a positive factor that changes no ranking).
//!
//! Here the ranking goes through the shared `--distribution` (`global` is the paper's; `uniform`,
//! `erk` and `er` rank within each layer); `lamp` is refused, its per-layer scores assume
//! magnitudes while GraSP's scores have both signs. Not followed: the authors' scoring copy
//! re-draws the linear layers' weights (Xavier normal, their `reinit=True`) before scoring; here
//! the score is computed on the network that is trained. Only weights are pruned.

use std::collections::BTreeMap;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::data::Batch;
use crate::dual::Dual64;
use crate::error::{Error, Result};
use crate::hvp::{load_twin, module_hvp};
use crate::methods::options::{TrainContext, clap_defaults};
use crate::methods::plugin::{InitData, Method, Plugin};
use crate::methods::prune::{Prunable, PruneTarget};
use crate::models::build_as;
use crate::nn::Module;
use crate::rng::seeded;
use crate::sparsity::Mask;
use crate::sparsity::budget::Distribution;
use crate::tape::Tensor;

/// GraSP's flags.
#[derive(Args, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[group(skip)]
#[serde(default)]
pub struct GraspOptions {
    /// GraSP: images of every class the score is computed on (the authors: 10).
    #[arg(long, default_value_t = 10)]
    pub score_samples_per_class: usize,
    /// GraSP: temperature the logits are divided by while scoring (the authors: 200).
    #[arg(long, default_value_t = 200.0)]
    pub grasp_temperature: f64,
}

impl Default for GraspOptions {
    fn default() -> Self {
        clap_defaults()
    }
}

/// The GraSP method.
pub struct Grasp {
    options: GraspOptions,
    prune: PruneTarget,
    layers: Vec<Prunable>,
}

impl Plugin<TrainContext> for Grasp {
    type Options = GraspOptions;
    const SHARED: &'static [&'static str] = PruneTarget::SETTINGS;

    fn build(options: &GraspOptions, context: &TrainContext) -> Result<Self> {
        let prune = PruneTarget::required(context, "grasp")?;
        if options.score_samples_per_class == 0 {
            return Err(Error::invalid(
                "--score-samples-per-class must be at least 1",
            ));
        }
        let t = options.grasp_temperature;
        if !(t.is_finite() && t > 0.0) {
            return Err(Error::invalid(format!(
                "--grasp-temperature must be positive, got {t}"
            )));
        }
        if context.shared.distribution == Distribution::Lamp {
            return Err(Error::invalid(
                "--method grasp cannot use --distribution lamp (LAMP assumes magnitude scores; GraSP's have both signs)",
            ));
        }
        Ok(Grasp {
            options: options.clone(),
            prune,
            layers: Vec::new(),
        })
    }
}

/// Puts an all-ones mask on every weight of `twin` whose counterpart in `model` has a transform,
/// so that [`load_twin`] finds the same parameters in both.
pub fn mask_like(model: &dyn Module<f32>, twin: &mut dyn Module<Dual64>) {
    let mut masked = Vec::new();
    model.visit_weights("", &mut |_, w| masked.push(w.transform.is_some()));
    let mut l = 0;
    twin.visit_weights_mut("", &mut |_, w| {
        if masked.get(l).copied().unwrap_or(false) {
            w.transform = Some(Box::new(Mask::<Dual64>::ones(w.raw.shape())));
        }
        l += 1;
    });
}

/// GraSP's scores S = −θ ⊙ (H g) of `model`'s prunable weights (`visit_weights` order), with g
/// and H g summed over `parts` (the authors' two halves) of the loss cross_entropy(logits / T).
/// `twin` is a `Dual64` model of the same architecture; it is loaded from `model` here.
pub fn grasp_scores(
    model: &dyn Module<f32>,
    twin: &mut dyn Module<Dual64>,
    parts: &[Batch<f32>],
    temperature: f64,
) -> Result<Vec<Vec<f64>>> {
    load_twin(model, twin)?;
    let mut names = Vec::new();
    let mut theta = Vec::new();
    model.visit_weights("", &mut |name, w| {
        names.push(name.to_string());
        theta.push(w.raw.value().mapv(|x| x as f64));
    });
    let mut run = |v: &BTreeMap<String, Tensor<f64>>, part: &Batch<f32>| {
        let images = part.images.mapv(|x| Dual64::constant(x as f64));
        module_hvp(&mut *twin, v, |m, tape| {
            m.forward(tape.constant(images))
                .mul_scalar(1.0 / temperature)
                .cross_entropy(&part.labels, 0.0)
        })
    };
    // g = Σ_parts ∇L_part (no direction: the tangents stay zero).
    let mut g: BTreeMap<String, Tensor<f64>> = BTreeMap::new();
    for part in parts {
        let out = run(&BTreeMap::new(), part)?;
        for name in &names {
            let grad = &out.get(name).expect("a prunable weight is trainable").grad;
            match g.get_mut(name) {
                Some(sum) => *sum += grad,
                None => {
                    g.insert(name.clone(), grad.clone());
                }
            }
        }
    }
    // H g = Σ_parts H_part g.
    let mut hg: Vec<Tensor<f64>> = theta.iter().map(|t| Tensor::zeros(t.raw_dim())).collect();
    for part in parts {
        let out = run(&g, part)?;
        for (sum, name) in hg.iter_mut().zip(&names) {
            *sum += &out.get(name).expect("a prunable weight is trainable").hv;
        }
    }
    Ok(theta
        .iter()
        .zip(&hg)
        .map(|(t, h)| t.iter().zip(h.iter()).map(|(t, h)| -t * h).collect())
        .collect())
}

/// The authors' split of the per-class batch into two halves (first and second half of the
/// class-ordered images).
pub fn halves(batch: &Batch<f32>) -> Vec<Batch<f32>> {
    let n = batch.labels.len();
    let cut = n / 2;
    let take = |lo: usize, hi: usize| Batch {
        images: batch
            .images
            .slice_axis(ndarray::Axis(0), (lo..hi).into())
            .to_owned(),
        labels: batch.labels[lo..hi].to_vec(),
    };
    if cut == 0 {
        vec![take(0, n)]
    } else {
        vec![take(0, cut), take(cut, n)]
    }
}

impl Method for Grasp {
    fn name(&self) -> &'static str {
        "grasp"
    }

    fn attach(&mut self, model: &mut dyn Module<f32>) -> Result<()> {
        self.layers = self.prune.attach_masks(model)?;
        Ok(())
    }

    /// Scores on `--score-samples-per-class` images of every class and prunes once.
    fn init(&mut self, model: &mut dyn Module<f32>, data: &InitData) -> Result<()> {
        let batch = data
            .per_class(self.options.score_samples_per_class)
            .map_err(|e| Error::invalid(format!("--score-samples-per-class: {e}")))?;
        let mut twin = build_as::<Dual64>(&data.spec, &mut seeded(0))?;
        mask_like(model, twin.as_mut());
        let grasp = grasp_scores(
            model,
            twin.as_mut(),
            &halves(&batch),
            self.options.grasp_temperature,
        )?;
        // Higher = kept: the highest GraSP scores are removed.
        let keep: Vec<Vec<f64>> = grasp
            .iter()
            .map(|l| l.iter().map(|s| -s).collect())
            .collect();
        self.prune.prune(model, &self.layers, &keep, &[])
    }
}
