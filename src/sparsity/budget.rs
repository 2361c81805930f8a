//! Per-layer sparsity budgets: how many weights of each prunable layer to remove so that the
//! global sparsity over all prunable layers is a target S.
//!
//! Every budget returns exact per-layer prune counts whose sum is round(S * total), so the
//! global target is met to the weight; per-layer rates are within one weight of the budget's
//! real-valued allocation. Which weights go is then a per-layer magnitude choice (every budget
//! here ranks weights inside a layer by |w|, so the counts determine the masks).

use crate::error::{Error, Result};
use crate::float::Float;
use crate::tape::Tensor;

pub use crate::sparsity::distribution::Distribution;

/// One layer as [`allocate_scores`] sees it: its shape, a score per weight (higher = more worth
/// keeping; |w| for magnitude pruning) and whether it is kept dense.
#[derive(Clone, Debug)]
pub struct ScoredLayer<'a> {
    pub name: &'a str,
    pub shape: &'a [usize],
    /// One score per entry in row-major order; used by the global rankings only.
    pub scores: &'a [f64],
    /// Entries already pruned (empty: none): the global rankings count them as pruned first, so
    /// a gradual schedule never asks to revive one.
    pub pruned: &'a [bool],
    pub dense: bool,
}

/// A sparsity allocation rule.
#[derive(Clone, Debug, PartialEq)]
pub enum Budget {
    /// The same sparsity in every layer; optionally the first layer dense and the others pruned
    /// more to compensate.
    Uniform { first_layer_dense: bool },
    /// Erdos-Renyi-kernel (Evci et al. 2020, RigL): density proportional to
    /// (sum of all dims / product of all dims)^power_scale; layers that would exceed density 1
    /// are made dense and the scale recomputed.
    Erk { power_scale: f64 },
    /// Erdos-Renyi (Mocanu et al. 2018): as ERK with only the two matrix dims (out + in) / (out * in).
    Er,
    /// One magnitude threshold over all layers; with `normalised`, on |w| / ||W_l||_2.
    GlobalMagnitude { normalised: bool },
    /// LAMP (Lee et al. 2021): global ranking of per-layer scores w_u^2 / sum_{v >= u} w_v^2.
    Lamp,
}

/// One layer's allocation.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerBudget {
    pub name: String,
    pub params: usize,
    /// Number of weights to prune.
    pub prune: usize,
}

impl LayerBudget {
    pub fn sparsity(&self) -> f64 {
        if self.params == 0 {
            0.0
        } else {
            self.prune as f64 / self.params as f64
        }
    }
}

/// Prune counts per layer; `sum(prune) == round(target * sum(params))`.
#[derive(Clone, Debug, PartialEq)]
pub struct Allocation {
    pub layers: Vec<LayerBudget>,
}

impl Allocation {
    pub fn total_params(&self) -> usize {
        self.layers.iter().map(|l| l.params).sum()
    }

    pub fn total_pruned(&self) -> usize {
        self.layers.iter().map(|l| l.prune).sum()
    }

    pub fn sparsity(&self) -> f64 {
        self.total_pruned() as f64 / self.total_params().max(1) as f64
    }
}

/// The allocation of `budget` for target global sparsity `target` in [0, 1] over `layers`
/// (name and weight, in model order: the first is the input layer), ranking by |w|.
pub fn allocate<F: Float>(
    budget: &Budget,
    layers: &[(&str, &Tensor<F>)],
    target: f64,
) -> Result<Allocation> {
    let magnitudes: Vec<Vec<f64>> = layers
        .iter()
        .map(|(_, w)| w.iter().map(|v| v.f64().abs()).collect())
        .collect();
    let first_dense = matches!(
        budget,
        Budget::Uniform {
            first_layer_dense: true
        }
    ) && layers.len() > 1;
    let scored: Vec<ScoredLayer> = layers
        .iter()
        .zip(&magnitudes)
        .enumerate()
        .map(|(l, ((name, w), scores))| ScoredLayer {
            name,
            shape: w.shape(),
            scores,
            pruned: &[],
            dense: l == 0 && first_dense,
        })
        .collect();
    allocate_scores(budget, &scored, target)
}

/// The allocation of `budget` for global sparsity `target` over all `layers` (dense ones
/// included in the count, never pruned): exact counts summing to round(target N). Uniform gives
/// every sparsified layer the same share goal / (weights of the sparsified layers); ERK / ER make
/// the dense layers dense and scale the others; the global rankings (`GlobalMagnitude`, `Lamp`)
/// rank the scores of the sparsified layers only. Fails when the sparsified layers cannot hold
/// the target.
pub fn allocate_scores(budget: &Budget, layers: &[ScoredLayer], target: f64) -> Result<Allocation> {
    if !(0.0..=1.0).contains(&target) {
        return Err(Error::invalid(format!(
            "--target-sparsity must be in [0, 1], got {target}"
        )));
    }
    if layers.is_empty() {
        return Err(Error::invalid("the model has no prunable layers"));
    }
    let params: Vec<usize> = layers
        .iter()
        .map(|l| l.shape.iter().product::<usize>())
        .collect();
    let total: usize = params.iter().sum();
    let goal = (target * total as f64).round() as usize;
    let open: usize = (0..layers.len())
        .filter(|&l| !layers[l].dense)
        .map(|l| params[l])
        .sum();
    if goal > open {
        return Err(Error::invalid(format!(
            "--target-sparsity {target} cannot be met with the dense layers kept dense (the other layers hold {:.1}% of the weights)",
            100.0 * open as f64 / total.max(1) as f64
        )));
    }
    let any_dense = layers.iter().any(|l| l.dense);
    let prune = match budget {
        Budget::Uniform { .. } => {
            // Without dense layers, 1 - target itself (what the post-training baselines always
            // used); with them, the share of the sparsified layers.
            let share = if any_dense {
                goal as f64 / open as f64
            } else {
                target
            };
            let densities: Vec<f64> = layers
                .iter()
                .map(|l| if l.dense { 1.0 } else { 1.0 - share })
                .collect();
            round_to_goal(&params, &densities, goal)
        }
        Budget::Erk { .. } | Budget::Er => {
            let (power, kernel) = match budget {
                Budget::Erk { power_scale } => (*power_scale, true),
                _ => (1.0, false),
            };
            let shapes: Vec<&[usize]> = layers.iter().map(|l| l.shape).collect();
            let dense: Vec<bool> = layers.iter().map(|l| l.dense).collect();
            round_to_goal(
                &params,
                &erdos_renyi_densities_with(&shapes, target, power, kernel, &dense),
                goal,
            )
        }
        Budget::GlobalMagnitude { normalised } => {
            let scores: Vec<Vec<f64>> = layers
                .iter()
                .map(|l| {
                    let norm = if *normalised {
                        l.scores.iter().map(|v| v * v).sum::<f64>().sqrt()
                    } else {
                        1.0
                    };
                    let norm = if norm > 0.0 { norm } else { 1.0 };
                    l.scores.iter().map(|v| v / norm).collect()
                })
                .collect();
            global_lowest(
                &already_pruned_first(scores, layers),
                &dense_flags(layers),
                goal,
            )
        }
        Budget::Lamp => {
            let scores: Vec<Vec<f64>> = layers.iter().map(|l| lamp_scores(l.scores)).collect();
            global_lowest(
                &already_pruned_first(scores, layers),
                &dense_flags(layers),
                goal,
            )
        }
    };
    Ok(Allocation {
        layers: layers
            .iter()
            .zip(params)
            .zip(prune)
            .map(|((layer, params), prune)| LayerBudget {
                name: layer.name.to_string(),
                params,
                prune,
            })
            .collect(),
    })
}

/// Ranks the already pruned entries below every other (see [`ScoredLayer::pruned`]).
fn already_pruned_first(mut scores: Vec<Vec<f64>>, layers: &[ScoredLayer]) -> Vec<Vec<f64>> {
    for (s, layer) in scores.iter_mut().zip(layers) {
        for (v, &p) in s.iter_mut().zip(layer.pruned) {
            if p {
                *v = f64::NEG_INFINITY;
            }
        }
    }
    scores
}

fn dense_flags(layers: &[ScoredLayer]) -> Vec<bool> {
    layers.iter().map(|l| l.dense).collect()
}

/// ERK / ER densities (RigL's `get_sparsities_erdos_renyi`): density_l = eps * raw_l with
/// raw_l = (sum(dims) / prod(dims))^power over all dims (`kernel`) or only the first two (ER),
/// eps chosen so the kept weights total (1 - S) * N; any layer whose density would exceed 1 is
/// made dense and eps recomputed over the rest.
pub fn erdos_renyi_densities(
    shapes: &[&[usize]],
    target: f64,
    power: f64,
    kernel: bool,
) -> Vec<f64> {
    erdos_renyi_densities_with(shapes, target, power, kernel, &vec![false; shapes.len()])
}

/// [`erdos_renyi_densities`] with the layers flagged in `forced_dense` dense from the start
/// (`--first-layer-dense` / `--last-layer-dense`), the scale found over the others.
pub fn erdos_renyi_densities_with(
    shapes: &[&[usize]],
    target: f64,
    power: f64,
    kernel: bool,
    forced_dense: &[bool],
) -> Vec<f64> {
    let raw: Vec<f64> = shapes
        .iter()
        .map(|s| {
            let dims: &[usize] = if kernel || s.len() < 2 { s } else { &s[..2] };
            (dims.iter().sum::<usize>() as f64 / dims.iter().product::<usize>() as f64).powf(power)
        })
        .collect();
    let n: Vec<f64> = shapes
        .iter()
        .map(|s| s.iter().product::<usize>() as f64)
        .collect();
    let mut dense = forced_dense.to_vec();
    loop {
        // Kept weights the non-dense layers must supply: (1 - S) N minus what dense layers keep.
        let rhs: f64 = (0..shapes.len())
            .map(|l| {
                if dense[l] {
                    -target * n[l]
                } else {
                    (1.0 - target) * n[l]
                }
            })
            .sum();
        let divisor: f64 = (0..shapes.len())
            .filter(|&l| !dense[l])
            .map(|l| raw[l] * n[l])
            .sum();
        if divisor == 0.0 {
            return vec![1.0; shapes.len()];
        }
        let eps = rhs / divisor;
        let max_raw = (0..shapes.len())
            .filter(|&l| !dense[l])
            .map(|l| raw[l])
            .fold(0.0, f64::max);
        if max_raw * eps > 1.0 {
            for l in 0..shapes.len() {
                if !dense[l] && raw[l] == max_raw {
                    dense[l] = true;
                }
            }
            continue;
        }
        return (0..shapes.len())
            .map(|l| if dense[l] { 1.0 } else { eps * raw[l] })
            .collect();
    }
}

/// LAMP scores of one layer, in the layer's order: with weights sorted by ascending w^2,
/// score(u) = w_u^2 / sum_{v >= u} w_v^2 (ties broken by index, so scores are deterministic).
pub fn lamp_scores(weights: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| {
        (weights[a] * weights[a])
            .total_cmp(&(weights[b] * weights[b]))
            .then(a.cmp(&b))
    });
    let mut scores = vec![0.0; weights.len()];
    let mut tail = 0.0;
    for &i in order.iter().rev() {
        let sq = weights[i] * weights[i];
        tail += sq;
        scores[i] = if tail > 0.0 { sq / tail } else { 0.0 };
    }
    scores
}

/// Per-layer counts of the `goal` globally lowest scores of the layers not kept dense (ties:
/// earlier layer, then lower index).
fn global_lowest(scores: &[Vec<f64>], dense: &[bool], goal: usize) -> Vec<usize> {
    let mut all: Vec<(f64, usize, usize)> = scores
        .iter()
        .enumerate()
        .filter(|(l, _)| !dense[*l])
        .flat_map(|(l, s)| s.iter().enumerate().map(move |(i, &v)| (v, l, i)))
        .collect();
    // The `goal` lowest under a total order are one set: a selection finds it in O(n) (DNW
    // allocates globally after every step).
    let order = |a: &(f64, usize, usize), b: &(f64, usize, usize)| {
        a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2))
    };
    if goal > 0 && goal < all.len() {
        all.select_nth_unstable_by(goal - 1, order);
    }
    let mut counts = vec![0; scores.len()];
    for &(_, l, _) in &all[..goal] {
        counts[l] += 1;
    }
    counts
}

/// Integer prune counts from real densities, adjusted by at most one weight per layer (largest
/// remainders first) so they sum to exactly `goal`.
fn round_to_goal(params: &[usize], densities: &[f64], goal: usize) -> Vec<usize> {
    let ideal: Vec<f64> = params
        .iter()
        .zip(densities)
        .map(|(&n, &d)| n as f64 * (1.0 - d.clamp(0.0, 1.0)))
        .collect();
    let mut counts: Vec<usize> = ideal.iter().map(|v| v.floor() as usize).collect();
    let mut missing = goal as i64 - counts.iter().sum::<usize>() as i64;
    let mut order: Vec<usize> = (0..params.len()).collect();
    order.sort_by(|&a, &b| {
        (ideal[b] - ideal[b].floor())
            .total_cmp(&(ideal[a] - ideal[a].floor()))
            .then(a.cmp(&b))
    });
    for &l in order.iter().cycle().take(params.len() * 2) {
        if missing == 0 {
            break;
        }
        if missing > 0 && counts[l] < params[l] && densities[l] < 1.0 {
            counts[l] += 1;
            missing -= 1;
        } else if missing < 0 && counts[l] > 0 {
            counts[l] -= 1;
            missing += 1;
        }
    }
    counts
}
