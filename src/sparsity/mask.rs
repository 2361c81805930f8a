//! [`Mask`]: a fixed 0/1 mask on a weight (magnitude pruning, lottery tickets, SNIP, GMP, RigL ...).
//!
//! The mask is a buffer parameter named `{weight}_mask` (PyTorch's pruning convention), so it is
//! saved in checkpoints but never trained. The effective weight is raw * mask, with the mask a
//! constant. [`WeightTransform::mask`] exposes it, so the optimiser driver
//! ([`crate::optim::step`]) zeroes the pruned entries' gradients and optimiser state and re-zeroes
//! the raw weight after every update: momentum and weight decay cannot revive a pruned weight.

use std::any::Any;

use crate::error::{Error, Result};
use crate::float::Float;
use crate::nn::WeightTransform;
use crate::param::Param;
use crate::tape::{Tensor, Var};

/// A fixed pruning mask (1 kept, 0 pruned) stored as a buffer.
pub struct Mask<F: Float> {
    mask: Param<F>,
}

impl<F: Float> Mask<F> {
    /// A mask from a tensor of zeros and ones; any other value is an error.
    pub fn from_tensor(mask: Tensor<F>) -> Result<Self> {
        let mask = binary(mask)?;
        Ok(Mask {
            mask: Param::buffer(mask),
        })
    }

    /// Keeps everything.
    pub fn ones(shape: &[usize]) -> Self {
        Mask {
            mask: Param::buffer(Tensor::ones(ndarray::IxDyn(shape))),
        }
    }

    /// Keeps the `keep` entries of largest |w| (all if `keep` >= len); ties in |w| go to the lower
    /// flat (row-major) index, so the mask is a pure function of the weight values.
    pub fn top_k_magnitude(w: &Tensor<F>, keep: usize) -> Self {
        let mut mask = Tensor::zeros(w.raw_dim());
        let flat = mask.as_slice_mut().expect("fresh array is contiguous");
        for i in top_k_indices(w, keep, |_| true) {
            flat[i] = F::one();
        }
        Mask {
            mask: Param::buffer(mask),
        }
    }

    /// The magnitude mask that prunes round(sparsity * len) entries of `w` (smallest |w| first,
    /// ties pruned from the highest index). `sparsity` must be in [0, 1].
    pub fn for_sparsity(w: &Tensor<F>, sparsity: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&sparsity) {
            return Err(Error::invalid(format!(
                "Mask::for_sparsity: sparsity {sparsity} is outside [0, 1]"
            )));
        }
        let prune = (sparsity * w.len() as f64).round() as usize;
        Ok(Self::top_k_magnitude(w, w.len() - prune.min(w.len())))
    }

    /// The mask values (1 kept, 0 pruned).
    pub fn values(&self) -> &Tensor<F> {
        self.mask.value()
    }

    /// Replaces the mask (GMP, RigL and iterative pruning update it). Same shape, zeros and ones.
    pub fn set(&mut self, mask: Tensor<F>) -> Result<()> {
        if mask.shape() != self.mask.shape() {
            return Err(Error::invalid(format!(
                "Mask::set: new mask shape {:?} differs from {:?}",
                mask.shape(),
                self.mask.shape()
            )));
        }
        let mask = binary(mask)?;
        self.mask.set_value(mask);
        Ok(())
    }

    /// Shrinks the mask to the `keep` currently kept entries of largest |w| (ties to the lower
    /// flat index); pruned entries stay pruned whatever their value, so a mask only ever loses
    /// entries (gradual pruning). `keep` larger than the kept count keeps the mask as it is.
    pub fn shrink_to_top_k(&mut self, w: &Tensor<F>, keep: usize) -> Result<()> {
        if w.shape() != self.mask.shape() {
            return Err(Error::invalid(format!(
                "Mask::shrink_to_top_k: weight shape {:?} differs from the mask's {:?}",
                w.shape(),
                self.mask.shape()
            )));
        }
        let kept: Vec<bool> = self.mask.value().iter().map(|&m| m != F::zero()).collect();
        let mut mask = Tensor::zeros(w.raw_dim());
        let flat = mask.as_slice_mut().expect("fresh array is contiguous");
        for i in top_k_indices(w, keep, |i| kept[i]) {
            flat[i] = F::one();
        }
        self.mask.set_value(mask);
        Ok(())
    }

    /// Shrinks the mask to the `keep` currently kept entries of highest `scores` (one per entry,
    /// row-major; ties to the lower flat index); pruned entries stay pruned, so the mask only
    /// loses entries. With scores |w| this is [`Mask::shrink_to_top_k`].
    pub fn shrink_to_top_scores(&mut self, scores: &[f64], keep: usize) -> Result<()> {
        if scores.len() != self.mask.len() {
            return Err(Error::invalid(format!(
                "Mask::shrink_to_top_scores: {} scores for a mask of {} entries",
                scores.len(),
                self.mask.len()
            )));
        }
        let kept: Vec<bool> = self.mask.value().iter().map(|&m| m != F::zero()).collect();
        let mut order: Vec<usize> = (0..scores.len()).filter(|&i| kept[i]).collect();
        let keep = keep.min(order.len());
        let by_score_desc = |&a: &usize, &b: &usize| {
            scores[b]
                .partial_cmp(&scores[a])
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.cmp(&b))
        };
        if keep > 0 && keep < order.len() {
            order.select_nth_unstable_by(keep - 1, by_score_desc);
        }
        order.truncate(keep);
        let mut mask = Tensor::zeros(self.mask.value().raw_dim());
        let flat = mask.as_slice_mut().expect("fresh array is contiguous");
        for i in order {
            flat[i] = F::one();
        }
        self.mask.set_value(mask);
        Ok(())
    }

    /// Number of kept (nonzero) entries.
    pub fn kept(&self) -> usize {
        self.mask
            .value()
            .iter()
            .filter(|&&m| m != F::zero())
            .count()
    }
}

/// `mask` with every zero made +0.0, or an error naming the first entry that is neither 0 nor 1.
/// (A -0.0 would make W ⊙ m a -0.0 where the optimiser leaves W at +0.0, so the raw weight could
/// not stand for its masked value: `WeightTransform::apply_prezeroed`.)
fn binary<F: Float>(mut mask: Tensor<F>) -> Result<Tensor<F>> {
    match mask.iter().position(|&m| m != F::zero() && m != F::one()) {
        None => {
            mask.mapv_inplace(|m| if m == F::zero() { F::zero() } else { m });
            Ok(mask)
        }
        Some(i) => Err(Error::invalid(format!(
            "mask: entry {i} (flat index) is {}, but a mask holds only 0 and 1",
            mask.iter().nth(i).expect("found above")
        ))),
    }
}

/// Flat indices of the `keep` largest |w| among the entries `candidate` accepts, ties to the
/// lower index.
fn top_k_indices<F: Float>(
    w: &Tensor<F>,
    keep: usize,
    candidate: impl Fn(usize) -> bool,
) -> Vec<usize> {
    let mut order: Vec<usize> = (0..w.len()).filter(|&i| candidate(i)).collect();
    let keep = keep.min(order.len());
    let values: Vec<F> = w.iter().copied().collect();
    let by_magnitude_desc = |&a: &usize, &b: &usize| {
        values[b]
            .abs()
            .partial_cmp(&values[a].abs())
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.cmp(&b))
    };
    if keep > 0 && keep < order.len() {
        order.select_nth_unstable_by(keep - 1, by_magnitude_desc);
    }
    order.truncate(keep);
    order
}

impl<F: Float> WeightTransform<F> for Mask<F> {
    fn name(&self) -> &'static str {
        "mask"
    }

    fn apply<'t>(&self, raw: Var<'t, F>) -> Var<'t, F> {
        assert_eq!(
            raw.shape(),
            self.mask.shape(),
            "Mask: mask shape differs from the weight's"
        );
        // A buffer enters the tape as a constant: no gradient to the mask.
        raw * raw.tape().param(&self.mask)
    }

    /// The raw weight is already +0.0 at every pruned entry: it is its own masked value.
    fn apply_prezeroed<'t>(&self, raw: Var<'t, F>) -> Var<'t, F> {
        raw.mask_prezeroed(self.mask.shared())
    }

    fn effective(&self, raw: &Tensor<F>) -> Tensor<F> {
        raw * self.mask.value()
    }

    fn visit<'a>(&'a self, weight: &str, f: &mut dyn FnMut(&str, &'a Param<F>)) {
        f(&format!("{weight}_mask"), &self.mask);
    }

    fn visit_mut(&mut self, weight: &str, f: &mut dyn FnMut(&str, &mut Param<F>)) {
        f(&format!("{weight}_mask"), &mut self.mask);
    }

    fn mask(&self) -> Option<&Tensor<F>> {
        Some(self.mask.value())
    }

    fn mask_shared(&self) -> Option<std::sync::Arc<Tensor<F>>> {
        Some(self.mask.shared())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// Puts a fixed mask of its nonzeros on every plain (untransformed) weight of `model` that has
/// exact zeros, so that an exported or baked sparse model can run its masked layers on the
/// sparse kernels. The values are unchanged (`w * m = w` when `m = [w != 0]`); weights already
/// carrying a transform and fully dense weights are left alone. Returns how many weights got a
/// mask.
pub fn mask_exact_zeros<F: Float>(model: &mut dyn crate::nn::Module<F>) -> usize {
    let mut masked = 0;
    model.visit_weights_mut("", &mut |_, w| {
        if w.transform.is_none() && w.raw.value().iter().any(|x| *x == F::zero()) {
            let mask = w
                .raw
                .value()
                .mapv(|x| if x == F::zero() { F::zero() } else { F::one() });
            w.transform = Some(Box::new(Mask {
                mask: Param::buffer(mask),
            }));
            masked += 1;
        }
    });
    masked
}
