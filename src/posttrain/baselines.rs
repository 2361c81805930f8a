//! The post-training baselines FCPTS is compared against (the POT-style pruning of its tables 2-5):
//! a one-shot allocation of the global target over the layers, per-layer magnitude masks, then
//! (unless `--no-finetune`) the same reconstruction fine-tuning of the surviving weights with the
//! masks fixed.
//!
//! | `--method` | allocation (`sparsity::budget`) |
//! |---|---|
//! | `magnitude-uniform` | the same sparsity in every layer |
//! | `magnitude-erk` | Erdos-Renyi-kernel (POT (ERK) in the paper) |
//! | `magnitude-global` | one threshold on \|w\| over all layers |
//! | `magnitude-l2norm` | one threshold on \|w\| / \|\|W_l\|\|_2 (POT (L2Norm)) |
//! | `lamp` | LAMP scores, global top-k |

use crate::error::Result;
use crate::nn::Module;
use crate::sparsity::Mask;
use crate::sparsity::budget::{Allocation, Budget, allocate};
use crate::tape::Tensor;

/// The allocation rule of a baseline `--method` (`None` for anything else).
pub fn budget_of(method: &str) -> Option<Budget> {
    Some(match method {
        "magnitude-uniform" => Budget::Uniform {
            first_layer_dense: false,
        },
        "magnitude-erk" => Budget::Erk { power_scale: 1.0 },
        "magnitude-global" => Budget::GlobalMagnitude { normalised: false },
        "magnitude-l2norm" => Budget::GlobalMagnitude { normalised: true },
        "lamp" => Budget::Lamp,
        _ => return None,
    })
}

/// `budget`'s allocation of global sparsity `r0` over `model`'s prunable weights (in forward
/// order, so the first is the input layer), from their current values.
pub fn allocation(model: &dyn Module<f32>, budget: &Budget, r0: f64) -> Result<Allocation> {
    let mut weights: Vec<(String, Tensor<f32>)> = Vec::new();
    model.visit_weights("", &mut |name, w| {
        weights.push((name.to_string(), w.effective()))
    });
    let layers: Vec<(&str, &Tensor<f32>)> = weights.iter().map(|(n, w)| (n.as_str(), w)).collect();
    allocate(budget, &layers, r0)
}

/// Puts a fixed magnitude [`Mask`] on every prunable weight, pruning its count of `budget`'s
/// allocation (the smallest |w| of the layer); returns the allocation. Every budget ranks weights
/// inside a layer by |w| (LAMP's score is monotone in |w| within a layer), so the counts
/// determine the masks.
pub fn prepare(model: &mut dyn Module<f32>, budget: &Budget, r0: f64) -> Result<Allocation> {
    let alloc = allocation(model, budget, r0)?;
    let mut layers = alloc.layers.iter();
    model.visit_weights_mut("", &mut |_, w| {
        let layer = layers.next().expect("one budget per prunable weight");
        let keep = layer.params - layer.prune;
        w.transform = Some(Box::new(Mask::top_k_magnitude(w.raw.value(), keep)));
    });
    Ok(alloc)
}
