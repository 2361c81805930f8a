//! Sparsity primitives: the differentiable (or surrogate-differentiable) pieces every
//! sparsification method is built from. Each is a method on [`Var`] with its forward and backward
//! in one function; `docs/gradients.md` ("Sparsity primitives") lists every derivative, its kink
//! convention and its test, and `docs/methods.md` ties them to the papers' equations.
//!
//! - [`Var::soft_threshold`]: STR's S_g(W, s) = sign(W) relu(|W| - g(s)) (Kusupati et al. 2020).
//!   Exact gradients, no straight-through estimator.
//! - [`Var::group_soft_threshold`]: STR's structured variant, block soft-thresholding of whole
//!   rows/columns (rank-1 components of a low-rank product W2 W1).
//! - [`Var::sign_mask`]: FCPTS's M W with M = 0.5 sgn(|W| - t) + 0.5 (Gong et al. 2024, eqs. 1-2);
//!   the threshold gradient (eq. 14) goes through a [`Surrogate`] for dM/dt.
//! - [`Var::sparsity_rate`]: FCPTS's bridge r(t) = fraction of |w| <= t (eq. 10), exact forward,
//!   backward dr/dt = p(t) + p(-t) (eq. 11) with p a [`Density`] estimate (eq. 12).
//! - [`Var::mask_prezeroed`]: a fixed mask W ⊙ m applied to a W already zero where m is 0
//!   (the state the optimiser keeps a masked weight in), passing W through without a copy.
//! - the L0 gates of Louizos et al. 2018 ([`HardConcrete`]) are in `ops::hard_concrete`.

use std::sync::Arc;

use ndarray::Zip;

use crate::float::Float;
pub use crate::ops::density::{Bandwidth, Density, DensityEstimate};
use crate::ops::elementwise::{sign_scalar, times_into};
use crate::ops::soft_threshold_loops::{
    alive_signed_sum, one_threshold, one_threshold_backward, shrink,
};
use crate::tape::{Tensor, Var, broadcast_shape};

pub use crate::ops::hard_concrete::HardConcrete;
pub use crate::ops::threshold_fn::{ScalarFn, ThresholdFn};

/// Which smooth stand-in for the hard mask M = 1[|w| > t] supplies dM/dt in [`Var::sign_mask`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Surrogate {
    /// The straight-through estimator of the authors' code (`BinActive` in ModelTC/msbench
    /// `msbench/mask_generator.py`): sgn's backward is the identity clipped to |x| < 1, with
    /// x = |w| - t, so dM/dt = -0.5 1[|x| < 1]. It is the derivative of the smooth
    /// M ~ 0.5 hardtanh(|w| - t) + 0.5. The window is in raw weight units, so for typical
    /// weights (|w|, t << 1) it never clips.
    ClippedIdentity,
    /// M ~ sigmoid((|w| - t) / T): dM/dt = -sigmoid'((|w| - t) / T) / T.
    Sigmoid { temperature: f64 },
}

impl Surrogate {
    /// dM/dt at x = |w| - t.
    pub fn dmask_dt(&self, x: f64) -> f64 {
        match *self {
            Surrogate::ClippedIdentity => {
                if x.abs() < 1.0 {
                    -0.5
                } else {
                    0.0
                }
            }
            Surrogate::Sigmoid { temperature } => {
                let y = sigmoid(x / temperature);
                -y * (1.0 - y) / temperature
            }
        }
    }
}

/// The logistic function in f64, without overflow.
pub(crate) fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// The single element of a one-element threshold (shape [], [1], [1, 1], ...).
fn scalar_of<F: Float>(op: &str, t: &Tensor<F>) -> F {
    assert_eq!(
        t.len(),
        1,
        "op `{op}`: the threshold must have one element (one per layer), got shape {:?}",
        t.shape()
    );
    *t.iter().next().expect("one element")
}

impl<'t, F: Float> Var<'t, F> {
    /// W ⊙ m for a W whose entries are +0.0 wherever the 0/1 mask `m` is 0: the value is W's own
    /// buffer, shared rather than computed, which for such a W has the bits of `self * m`
    /// (w · 1 = w, +0 · 0 = +0). The caller vouches for the zeros: `nn::Weight` uses this only
    /// while its raw weight is unchanged since the optimiser's masked update or
    /// `Weight::reapply_mask` zeroed the pruned entries. Gradient, as `mul`'s: dL/dW = g ⊙ m,
    /// written over g; none to the mask.
    pub fn mask_prezeroed(self, mask: Arc<Tensor<F>>) -> Self {
        assert_eq!(
            self.shape(),
            mask.shape(),
            "op `mask_prezeroed`: mask shape differs from the weight's"
        );
        self.tape()
            .record_owned("mask_prezeroed", self.value(), &[self], move |g, _| {
                vec![Some(times_into(g, &mask))]
            })
    }

    /// STR's soft threshold S_g(w, s) = sign(w) relu(|w| - g(s)).
    ///
    /// `s` broadcasts against `w` (numpy rules) and must not enlarge it: per layer (shape [] or
    /// \[1\]), per output channel (\[C_out, 1, ...\]), per weight (w's shape); a global threshold is
    /// one `s` used by several layers (the tape accumulates its gradient over the uses).
    ///
    /// Gradients (exact): dL/dw = g 1[|w| > g(s)]; dL/ds = -g'(s) g sign(w) 1[|w| > g(s)],
    /// returned in w's shape and summed to s's shape by the engine. The indicator is strict:
    /// at |w| = g(s) both gradients are 0 (as relu'(0) = 0).
    pub fn soft_threshold(self, s: Self, g: &ThresholdFn) -> Self {
        let (w, sv) = (self.value(), s.value());
        let shape = broadcast_shape("soft_threshold", w.shape(), sv.shape());
        assert_eq!(
            shape,
            w.shape(),
            "op `soft_threshold`: threshold shape {:?} would enlarge weight shape {:?}",
            sv.shape(),
            w.shape()
        );
        // g(s) once per threshold entry (one scalar per layer), broadcast over the weight.
        let thr = sv.mapv(|s| F::c(g.value(s.f64())));
        let y = match (thr.as_slice(), w.as_slice()) {
            // One threshold over a contiguous weight: a slice loop compiled for the CPU's widest
            // vectors (several times faster than a zip with a broadcast operand).
            (Some(&[t]), Some(ws)) => one_threshold(&w, ws, t),
            (Some(&[t]), None) => w.mapv(|w| shrink(w, t)),
            _ => Zip::from(&*w)
                .and(&thr.broadcast(w.raw_dim()).expect("checked above"))
                .map_collect(|&w, &t| shrink(w, t)),
        };
        let g = g.clone();
        self.tape()
            .record_owned("soft_threshold", y, &[self, s], move |mut grad, needs| {
                let alive = |w: F, t: F| w.abs() > t;
                // d/ds of one entry, given g'(s): -g'(s) g sign(w) where alive.
                let ds_entry = |g: F, w: F, t: F, dg: F| {
                    if alive(w, t) {
                        -dg * g * sign_scalar(w)
                    } else {
                        F::zero()
                    }
                };
                let dg = sv.mapv(|s| F::c(g.derivative(s.f64())));
                // One threshold over contiguous operands (STR's per-layer s): both gradients in
                // one pass; the threshold's is reduced here, in f64, rather than built as a
                // weight-sized gradient for the engine to sum.
                // The weight's gradient is written over the upstream one.
                if let (Some(&[t]), Some(&[dg]), Some(ws), Some(gs)) = (
                    thr.as_slice(),
                    dg.as_slice(),
                    w.as_slice(),
                    grad.as_slice_mut(),
                ) {
                    let sum = one_threshold_backward(ws, gs, t, needs[0], needs[1]);
                    let ds =
                        needs[1].then(|| Tensor::from_elem(sv.raw_dim(), F::c(-dg.f64() * sum)));
                    return vec![needs[0].then_some(grad), ds];
                }
                let thr_b = thr.broadcast(w.raw_dim()).expect("checked in forward");
                let dw = needs[0].then(|| match thr.as_slice() {
                    Some(&[t]) => Zip::from(&grad)
                        .and(&*w)
                        .map_collect(|&g, &w| if alive(w, t) { g } else { F::zero() }),
                    _ => Zip::from(&grad)
                        .and(&*w)
                        .and(&thr_b)
                        .map_collect(|&g, &w, &t| if alive(w, t) { g } else { F::zero() }),
                });
                let ds = needs[1].then(|| {
                    if let ([t], [dg]) =
                        (thr.as_slice().unwrap_or(&[]), dg.as_slice().unwrap_or(&[]))
                    {
                        let sum = -dg.f64() * alive_signed_sum(&grad, &w, *t);
                        return Tensor::from_elem(sv.raw_dim(), F::c(sum));
                    }
                    let dg = dg.broadcast(w.raw_dim()).expect("checked in forward");
                    Zip::from(&grad)
                        .and(&*w)
                        .and(&thr_b)
                        .and(&dg)
                        .map_collect(|&g, &w, &t, &dg| ds_entry(g, w, t, dg))
                });
                vec![dw, ds]
            })
    }

    /// STR's threshold t = g(s), elementwise: the value [`Var::soft_threshold`] compares |w|
    /// with (g evaluated in f64, then rounded to F, exactly as there), so a sparsity rate
    /// measured at this t counts the weights the soft threshold zeroes. Derivative g'(s).
    pub fn threshold_fn(self, g: &ThresholdFn) -> Self {
        let sv = self.value();
        let t = sv.mapv(|s| F::c(g.value(s.f64())));
        let g = g.clone();
        self.tape()
            .record("threshold_fn", t, &[self], move |grad, needs| {
                let ds = needs[0].then(|| {
                    Zip::from(grad)
                        .and(&*sv)
                        .map_collect(|&gr, &s| gr * F::c(g.derivative(s.f64())))
                });
                vec![ds]
            })
    }

    /// Group soft threshold (block soft-thresholding, the proximal operator of the group lasso):
    /// every slice w_k of `self` along `axis` (a row of a matrix for axis 0, a column for axis 1)
    /// becomes w_k relu(||w_k|| - g(s)) / ||w_k||, so a group whose Euclidean norm is at most
    /// g(s) is zeroed whole and the others shrink by g(s) in norm. STR's structured variant
    /// (Kusupati et al. 2020): on the matching rows of W1 and columns of W2 of a low-rank
    /// W = W2 W1 it removes whole rank-1 components. `s` has one element (one threshold per
    /// weight).
    ///
    /// Gradients, with n_k = ||w_k||, t = g(s), G_k the upstream gradient of group k, and only
    /// groups with n_k > t contributing: dL/dw_k = (1 - t/n_k) G_k + t (w_k . G_k) w_k / n_k^3;
    /// dL/ds = -g'(s) sum_k (w_k . G_k) / n_k. A group with n_k <= t (including n_k = 0) gets
    /// zero gradient (strict, like relu'(0) = 0).
    pub fn group_soft_threshold(self, s: Self, g: &ThresholdFn, axis: usize) -> Self {
        let (w, sv) = (self.value(), s.value());
        assert!(
            axis < w.ndim(),
            "op `group_soft_threshold`: axis {axis} out of range for weight shape {:?}",
            w.shape()
        );
        let t = g.value(scalar_of("group_soft_threshold", &sv).f64());
        let ax = ndarray::Axis(axis);
        let norms: Vec<f64> = w
            .axis_iter(ax)
            .map(|group| group.iter().map(|v| v.f64() * v.f64()).sum::<f64>().sqrt())
            .collect();
        // Per-group factor 1 - t/n_k for surviving groups, 0 for the others.
        let scale: Vec<f64> = norms
            .iter()
            .map(|&n| if n > t { 1.0 - t / n } else { 0.0 })
            .collect();
        let mut y = (*w).clone();
        for (mut group, &c) in y.axis_iter_mut(ax).zip(&scale) {
            group.mapv_inplace(|v| v * F::c(c));
        }
        let g = g.clone();
        self.tape()
            .record("group_soft_threshold", y, &[self, s], move |grad, needs| {
                // w_k . G_k, in f64, for the surviving groups.
                let dots: Vec<f64> = w
                    .axis_iter(ax)
                    .zip(grad.axis_iter(ax))
                    .zip(&norms)
                    .map(|((wk, gk), &n)| {
                        if n > t {
                            Zip::from(&wk)
                                .and(&gk)
                                .fold(0.0, |acc, &w, &g| acc + w.f64() * g.f64())
                        } else {
                            0.0
                        }
                    })
                    .collect();
                let dw = needs[0].then(|| {
                    let mut dw = Tensor::zeros(w.raw_dim());
                    for (k, ((mut out, wk), gk)) in dw
                        .axis_iter_mut(ax)
                        .zip(w.axis_iter(ax))
                        .zip(grad.axis_iter(ax))
                        .enumerate()
                    {
                        let n = norms[k];
                        if n > t {
                            let radial = t * dots[k] / (n * n * n);
                            Zip::from(&mut out).and(&wk).and(&gk).for_each(|o, &w, &g| {
                                *o = F::c(scale[k] * g.f64() + radial * w.f64());
                            });
                        }
                    }
                    dw
                });
                let ds = needs[1].then(|| {
                    let sum: f64 = dots
                        .iter()
                        .zip(&norms)
                        .filter(|(_, n)| **n > t)
                        .map(|(d, n)| d / n)
                        .sum();
                    let dg = g.derivative(scalar_of("group_soft_threshold", &sv).f64());
                    Tensor::from_elem(sv.raw_dim(), F::c(-dg * sum))
                });
                vec![dw, ds]
            })
    }

    /// FCPTS's hard magnitude mask applied to the weight: M w with M = 0.5 sgn(|w| - t) + 0.5
    /// (eqs. 1-2), where sgn(0) = -1 as the paper defines it, so M = 1[|w| > t] and a weight with
    /// |w| = t is pruned. `t` is one scalar per layer.
    ///
    /// Gradients: to w, M (the mask is held fixed for w, as in the authors' code, which builds it
    /// under `no_grad`; it is also the exact derivative away from |w| = t). To t (eq. 14),
    /// sum_i g_i w_i dM_i/dt with dM/dt from `surrogate` (see [`Surrogate`]).
    pub fn sign_mask(self, t: Self, surrogate: Surrogate) -> Self {
        let (w, tv) = (self.value(), t.value());
        let thr = scalar_of("sign_mask", &tv);
        let mask = w.mapv(|w| if w.abs() > thr { F::one() } else { F::zero() });
        let y = &*w * &mask;
        let t_shape = tv.raw_dim();
        self.tape()
            .record("sign_mask", y, &[self, t], move |grad, needs| {
                let dw = needs[0].then(|| grad * &mask);
                let dt = needs[1].then(|| {
                    let thr = thr.f64();
                    let sum = Zip::from(grad).and(&*w).fold(0.0, |acc, &g, &w| {
                        let w = w.f64();
                        acc + g.f64() * w * surrogate.dmask_dt(w.abs() - thr)
                    });
                    Tensor::from_elem(t_shape, F::c(sum))
                });
                vec![dw, dt]
            })
    }

    /// FCPTS's sparsity bridge r(t) (eq. 10): the exact fraction of weights with |w| <= t, as a
    /// value of shape [] — exactly the fraction [`Var::sign_mask`] zeroes for t >= 0.
    ///
    /// Backward: dr/dt = p(t) + p(-t) (eq. 11), p the `density` estimate of the weights (eq. 12),
    /// fitted in the backward pass only. No gradient to w (the bridge is a function of t only).
    pub fn sparsity_rate(self, t: Self, density: &Density) -> Self {
        let (w, tv) = (self.value(), t.value());
        let thr = scalar_of("sparsity_rate", &tv);
        assert!(!w.is_empty(), "op `sparsity_rate`: the weight is empty");
        let is_pruned = |w: &&F| w.abs() <= thr;
        let pruned = match w.as_slice_memory_order() {
            Some(flat) => flat.iter().filter(is_pruned).count(),
            None => w.iter().filter(is_pruned).count(),
        };
        let rate = Tensor::from_elem(ndarray::IxDyn(&[]), F::c(pruned as f64 / w.len() as f64));
        let density = *density;
        let t_shape = tv.raw_dim();
        self.tape()
            .record("sparsity_rate", rate, &[self, t], move |grad, needs| {
                let dt = needs[1].then(|| {
                    let p = density.estimate(&w);
                    let thr = thr.f64();
                    let g = scalar_of("sparsity_rate", grad).f64();
                    Tensor::from_elem(t_shape, F::c(g * (p.pdf(thr) + p.pdf(-thr))))
                });
                vec![None, dt]
            })
    }
}
