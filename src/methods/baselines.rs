//! The post-training baselines FCPTS is compared against (the POT-style pruning of its tables
//! 2-5): magnitude score x a distribution, one shot, then (unless `--no-finetune`) the
//! post-training driver's reconstruction fine-tuning of the surviving weights with the masks
//! fixed.
//!
//! | `--method` | score | distribution (`sparsity::budget`) |
//! |---|---|---|
//! | `magnitude-uniform` | \|w\| | the same sparsity in every layer |
//! | `magnitude-erk` | \|w\| | Erdos-Renyi-kernel (POT (ERK) in the paper) |
//! | `magnitude-global` | \|w\| | one global ranking |
//! | `magnitude-l2norm` | \|w\| / \|\|W_l\|\|_2 | one global ranking (POT (L2Norm)) |
//! | `lamp` | \|w\| | LAMP scores, global top-k |

use crate::error::Result;
use crate::methods::options::PosttrainContext;
use crate::methods::plugin::{Method, NoOptions, Plugin};
use crate::nn::Module;
use crate::sparsity::Mask;
use crate::sparsity::budget::{Allocation, Budget, Distribution, allocate};
use crate::tape::Tensor;

/// A one-shot magnitude baseline with its allocation rule.
pub struct Baseline {
    name: &'static str,
    budget: Budget,
    r0: f64,
}

impl Baseline {
    fn with(name: &'static str, budget: Budget, context: &PosttrainContext) -> Result<Self> {
        Ok(Baseline {
            name,
            budget,
            r0: context.target_sparsity,
        })
    }

    pub fn uniform(_: &NoOptions, context: &PosttrainContext) -> Result<Self> {
        Self::with("magnitude-uniform", Distribution::Uniform.budget(), context)
    }

    pub fn erk(_: &NoOptions, context: &PosttrainContext) -> Result<Self> {
        Self::with("magnitude-erk", Distribution::Erk.budget(), context)
    }

    pub fn global(_: &NoOptions, context: &PosttrainContext) -> Result<Self> {
        Self::with("magnitude-global", Distribution::Global.budget(), context)
    }

    pub fn l2norm(_: &NoOptions, context: &PosttrainContext) -> Result<Self> {
        Self::with(
            "magnitude-l2norm",
            Budget::GlobalMagnitude { normalised: true },
            context,
        )
    }

    pub fn lamp(_: &NoOptions, context: &PosttrainContext) -> Result<Self> {
        Self::with("lamp", Distribution::Lamp.budget(), context)
    }
}

impl Plugin<PosttrainContext> for Baseline {
    type Options = NoOptions;
    const SHARED: &'static [&'static str] = &["no_finetune"];

    /// The uniform baseline (the registry names the others' constructors).
    fn build(options: &NoOptions, context: &PosttrainContext) -> Result<Self> {
        Self::uniform(options, context)
    }
}

/// `budget`'s allocation of global sparsity `r0` over `model`'s prunable weights (in forward
/// order, so the first is the input layer), from their current effective values.
pub fn allocation(model: &dyn Module<f32>, budget: &Budget, r0: f64) -> Result<Allocation> {
    let mut weights: Vec<(String, Tensor<f32>)> = Vec::new();
    model.visit_weights("", &mut |name, w| {
        weights.push((name.to_string(), w.effective()))
    });
    let layers: Vec<(&str, &Tensor<f32>)> = weights.iter().map(|(n, w)| (n.as_str(), w)).collect();
    allocate(budget, &layers, r0)
}

impl Method for Baseline {
    fn name(&self) -> &'static str {
        self.name
    }

    /// A fixed magnitude [`Mask`] on every prunable weight, pruning its count of the allocation
    /// (the smallest |w| of the layer). Every budget ranks weights inside a layer by |w| (LAMP's
    /// and the normalised score are monotone in |w| within a layer), so the counts determine the
    /// masks.
    fn attach(&mut self, model: &mut dyn Module<f32>) -> Result<()> {
        let alloc = allocation(model, &self.budget, self.r0)?;
        let mut layers = alloc.layers.iter();
        model.visit_weights_mut("", &mut |_, w| {
            let keep = layers.next().map_or(w.raw.len(), |l| l.params - l.prune);
            w.transform = Some(Box::new(Mask::top_k_magnitude(w.raw.value(), keep)));
        });
        Ok(())
    }
}
