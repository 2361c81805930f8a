//! Stochastic gradient descent with PyTorch's `torch.optim.SGD` semantics (lr and weight decay
//! per parameter group):
//!
//! ```text
//! d = g + wd * w                      (L2 weight decay; decoupled: w *= 1 - lr * wd instead)
//! b = d                 on the first step,   b = mu * b + (1 - dampening) * d   after
//! d = d + mu * b        (Nesterov)       or  d = b   (classic)
//! w = w - lr * d
//! ```
//!
//! Decoupled weight decay (SGDW, Loshchilov & Hutter 2019) is not in `torch.optim.SGD`; it scales
//! the weight before the update exactly as `torch.optim.AdamW` does.

use std::collections::BTreeMap;

use ndarray::Zip;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::float::Float;
use crate::kernels::parallel::{PARALLEL_CHUNK, worth_splitting};
use crate::optim::groups::{Hyper, ParamGroup};
use crate::optim::state::{ParamShapes, Slot, SlotKind, StateCheck};
use crate::optim::{Optimizer, update_masked_in_passes, zero_pruned};
use crate::simd::{Kernel, widest};
use crate::tape::Tensor;

/// Default hyper-parameters of [`Sgd`] (PyTorch's `defaults`; groups may override lr and decay).
#[derive(Clone, Debug, PartialEq)]
pub struct SgdConfig {
    pub lr: f64,
    pub momentum: f64,
    pub dampening: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    /// Decoupled weight decay (SGDW) instead of L2 added to the gradient.
    pub decoupled: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            lr: 0.1,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            decoupled: false,
        }
    }
}

impl SgdConfig {
    /// The checks `torch.optim.SGD` makes, plus finiteness.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, v: f64| {
            Error::invalid(format!("SGD: {what} must be finite and >= 0, got {v}"))
        };
        for (what, v) in [
            ("lr", self.lr),
            ("momentum", self.momentum),
            ("weight_decay", self.weight_decay),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(bad(what, v));
            }
        }
        if !self.dampening.is_finite() {
            return Err(Error::invalid(format!(
                "SGD: dampening must be finite, got {}",
                self.dampening
            )));
        }
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(Error::invalid(format!(
                "SGD: Nesterov momentum requires momentum > 0 and zero dampening (got momentum {}, dampening {})",
                self.momentum, self.dampening
            )));
        }
        Ok(())
    }
}

const MOMENTUM_BUFFER: Slot = Slot {
    name: "momentum_buffer",
    kind: SlotKind::LikeParam,
};

/// SGD; momentum buffers are keyed by parameter name.
pub struct Sgd<F: Float> {
    pub config: SgdConfig,
    groups: Vec<ParamGroup>,
    momentum: BTreeMap<String, Tensor<F>>,
}

impl<F: Float> Sgd<F> {
    /// Panics on an invalid configuration; use [`Sgd::try_new`] for user input.
    pub fn new(config: SgdConfig) -> Self {
        Self::try_new(config).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_new(config: SgdConfig) -> Result<Self> {
        config.validate()?;
        Ok(Sgd {
            config,
            groups: Vec::new(),
            momentum: BTreeMap::new(),
        })
    }

    /// The momentum buffer of a parameter, if one exists yet.
    pub fn momentum_buffer(&self, name: &str) -> Option<&Tensor<F>> {
        self.momentum.get(name)
    }

    fn slots(&self) -> &'static [Slot] {
        if self.config.momentum == 0.0 {
            &[]
        } else {
            &[MOMENTUM_BUFFER]
        }
    }

    /// The update, with mask hygiene fused in when `mask` is given (one pass instead of five;
    /// see [`Optimizer::update_masked`]). Per element, a pruned entry (mask 0) ends with value
    /// and momentum +0 whatever the update would give; a kept one with mask `m` runs the update
    /// on `g * m` and then scales value and momentum by `m`: exactly the operations of the
    /// separate passes, so the bits are theirs. (Without momentum, or for non-contiguous
    /// operands, the masked update runs as the separate passes.)
    fn update_with(
        &mut self,
        name: &str,
        w: &mut Tensor<F>,
        g: &Tensor<F>,
        hyper: Hyper,
        mask: Option<&Tensor<F>>,
    ) {
        let c = &self.config;
        let contiguous = w.is_standard_layout() && g.is_standard_layout();
        if let Some(mask) = mask {
            let fusable = contiguous
                && c.momentum != 0.0
                && mask.is_standard_layout()
                && mask.shape() == w.shape();
            if !fusable {
                return update_masked_in_passes(self, name, w, g, hyper, mask);
            }
        }
        let (lr, mu, wd) = (F::c(hyper.lr), F::c(c.momentum), F::c(hyper.weight_decay));
        let l2 = if c.decoupled { F::zero() } else { wd };
        if c.decoupled && hyper.weight_decay != 0.0 {
            // As torch.optim.AdamW: param.mul_(1 - lr * weight_decay), the factor rounded once.
            let keep = F::c(1.0 - hyper.lr * hyper.weight_decay);
            w.mapv_inplace(|v| v * keep);
        }
        if c.momentum == 0.0 {
            Zip::from(w)
                .and(g)
                .for_each(|w, &g| *w -= lr * (g + l2 * *w));
            return;
        }
        let step = MomentumStep {
            lr,
            l2,
            mu,
            damp: F::c(1.0 - c.dampening),
            nesterov: c.nesterov,
            first: !self.momentum.contains_key(name),
        };
        let buf = self
            .momentum
            .entry(name.to_string())
            .or_insert_with(|| Tensor::zeros(w.raw_dim()));
        let (Some(w), Some(g), Some(b)) = (
            w.as_slice_mut().filter(|_| contiguous),
            g.as_slice(),
            buf.as_slice_mut(),
        ) else {
            Zip::from(w)
                .and(g)
                .and(buf)
                .for_each(|w, &g, b| step.element(w, g, b));
            return;
        };
        // Contiguous (every parameter in practice): slice loops compiled for the CPU's widest
        // vectors (same bits, see `simd`). Large parameters are split over threads in
        // fixed chunks (elementwise: the bits do not depend on the split).
        let mask = mask.map(|m| m.as_slice().expect("standard layout, checked above"));
        if !worth_splitting(w.len()) {
            return widest(SliceStep {
                step,
                w,
                g,
                b,
                mask,
            });
        }
        let masks: Vec<Option<&[F]>> = match mask {
            Some(m) => m.chunks(PARALLEL_CHUNK).map(Some).collect(),
            None => vec![None; w.len().div_ceil(PARALLEL_CHUNK)],
        };
        w.par_chunks_mut(PARALLEL_CHUNK)
            .zip(g.par_chunks(PARALLEL_CHUNK))
            .zip(b.par_chunks_mut(PARALLEL_CHUNK))
            .zip(masks)
            .for_each(|(((w, g), b), mask)| {
                widest(SliceStep {
                    step,
                    w,
                    g,
                    b,
                    mask,
                })
            });
    }
}

/// The coefficients of one momentum update.
#[derive(Clone, Copy)]
struct MomentumStep<F> {
    lr: F,
    /// L2 weight decay (0 when decoupled).
    l2: F,
    mu: F,
    /// `1 - dampening`.
    damp: F,
    nesterov: bool,
    /// The buffer's first step (it is set to `d`).
    first: bool,
}

impl<F: Float> MomentumStep<F> {
    /// One entry. PyTorch: buf = clone(d) on the first step, else
    /// buf.mul_(mu).add_(d, alpha=1-dampening).
    #[inline(always)]
    fn element(&self, w: &mut F, g: F, b: &mut F) {
        let d = g + self.l2 * *w;
        *b = if self.first {
            d
        } else {
            *b * self.mu + self.damp * d
        };
        let step = if self.nesterov { d + self.mu * *b } else { *b };
        *w -= self.lr * step;
    }

    /// One masked entry: the update on `g * m`, then a select keeps the result scaled by `m` or
    /// writes +0 (no branch, so the loop vectorises).
    #[inline(always)]
    fn masked_element(&self, w: &mut F, g: F, b: &mut F, m: F) {
        let (mut new_w, mut new_b) = (*w, *b);
        self.element(&mut new_w, g * m, &mut new_b);
        let kept = m != F::zero();
        *b = if kept { new_b * m } else { F::zero() };
        *w = if kept { new_w * m } else { F::zero() };
    }
}

/// The update of one contiguous slice (a whole parameter or a chunk of one).
struct SliceStep<'a, F> {
    step: MomentumStep<F>,
    w: &'a mut [F],
    g: &'a [F],
    b: &'a mut [F],
    mask: Option<&'a [F]>,
}

impl<F: Float> Kernel for SliceStep<'_, F> {
    type Output = ();

    /// Indexed loops over equal-length slices, with the common case (after the first step, no
    /// Nesterov) specialised so the compiler sees the flags are constant.
    #[inline(always)]
    fn run(self) {
        let SliceStep {
            step,
            w,
            g,
            b,
            mask,
        } = self;
        if !step.first && !step.nesterov {
            // The flags as constants, so the loop is compiled without them.
            let common = MomentumStep {
                first: false,
                nesterov: false,
                ..step
            };
            slice_loop(common, w, g, b, mask);
        } else {
            slice_loop(step, w, g, b, mask);
        }
    }
}

/// The loop of [`SliceStep`], over equal-length slices (indexed, so it vectorises).
#[inline(always)]
fn slice_loop<F: Float>(
    step: MomentumStep<F>,
    w: &mut [F],
    g: &[F],
    b: &mut [F],
    mask: Option<&[F]>,
) {
    let n = w.len();
    let (g, b) = (&g[..n], &mut b[..n]);
    match mask {
        None => {
            for i in 0..n {
                step.element(&mut w[i], g[i], &mut b[i]);
            }
        }
        Some(m) => {
            let m = &m[..n];
            for i in 0..n {
                step.masked_element(&mut w[i], g[i], &mut b[i], m[i]);
            }
        }
    }
}

impl<F: Float> Optimizer<F> for Sgd<F> {
    fn update(&mut self, name: &str, w: &mut Tensor<F>, g: &Tensor<F>, hyper: Hyper) {
        self.update_with(name, w, g, hyper, None);
    }

    fn update_masked(
        &mut self,
        name: &str,
        w: &mut Tensor<F>,
        g: &Tensor<F>,
        hyper: Hyper,
        mask: &Tensor<F>,
    ) {
        self.update_with(name, w, g, hyper, Some(mask));
    }

    fn mask_state(&mut self, name: &str, mask: &Tensor<F>) {
        if let Some(b) = self.momentum.get_mut(name) {
            zero_pruned(b, mask);
        }
    }

    fn lr(&self) -> f64 {
        self.config.lr
    }

    fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    fn weight_decay(&self) -> f64 {
        self.config.weight_decay
    }

    fn groups(&self) -> &[ParamGroup] {
        &self.groups
    }

    fn groups_mut(&mut self) -> &mut Vec<ParamGroup> {
        &mut self.groups
    }

    fn state(&self) -> Vec<(String, Tensor<F>)> {
        self.momentum
            .iter()
            .map(|(p, b)| (format!("{p}.{}", MOMENTUM_BUFFER.name), b.clone()))
            .collect()
    }

    fn load_state(&mut self, entries: &[(String, Tensor<F>)], params: &ParamShapes) -> Result<()> {
        let mut check = StateCheck::new("SGD");
        let sorted = check.sort(entries, self.slots(), params);
        check.finish()?;
        self.momentum = sorted
            .into_iter()
            .map(|(p, slots)| (p.to_string(), slots[MOMENTUM_BUFFER.name].clone()))
            .collect();
        Ok(())
    }
}
