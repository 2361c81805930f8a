//! [`SoftThreshold`]: STR's reparameterisation W_eff = sign(W) relu(|W| - g(s)) (Kusupati et al.
//! 2020) as a weight transform, with the threshold parameter `s` named `{weight}_threshold`.
//!
//! Granularities ([`Granularity`]): one `s` per layer (the paper's experiments; shape []), per
//! output channel (shape [C_out, 1, ...]), per weight (the weight's shape), or one global `s`
//! shared by several layers ([`SoftThreshold::share`] / [`SoftThreshold::sharing`]).
//!
//! **How a global threshold is shared.** One layer's transform *owns* the parameter: it is visited
//! (saved, loaded, updated by the optimiser) once, under that layer's name
//! (`fc1.weight_threshold`). The other layers hold a [`SharedThreshold`] handle to an *alias* of
//! it — the same parameter identity and value buffer. On a tape the alias and the owner are the
//! same variable (the tape de-duplicates parameters by identity), so the gradient of every use is
//! summed into one, and the optimiser, which only sees the owner, updates it once. Every mutable
//! access to the owner goes through [`WeightTransform::visit_mut`] (or the setters here), after
//! which the owner re-publishes the alias, so the sharing layers never see a stale value.

use std::any::Any;
use std::sync::{Arc, RwLock};

use crate::float::Float;
use crate::nn::WeightTransform;
use crate::ops::sparsity::ThresholdFn;
use crate::param::Param;
use crate::tape::{Tape, Tensor, Var};

/// The shape of a threshold parameter relative to its weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granularity {
    /// One scalar for the layer: shape [].
    Layer,
    /// One per output channel (dimension 0): shape [C_out, 1, ...] (rank of the weight).
    Channel,
    /// One per weight entry: the weight's shape.
    Weight,
}

impl Granularity {
    /// The threshold shape for a weight of shape `weight`.
    pub fn shape(self, weight: &[usize]) -> Vec<usize> {
        match self {
            Granularity::Layer => vec![],
            Granularity::Channel => {
                assert!(
                    !weight.is_empty(),
                    "Granularity::Channel needs a weight of rank >= 1"
                );
                let mut s = vec![1; weight.len()];
                s[0] = weight[0];
                s
            }
            Granularity::Weight => weight.to_vec(),
        }
    }
}

/// A handle through which several layers use one threshold parameter (see the module docs).
#[derive(Clone)]
pub struct SharedThreshold<F: Float> {
    current: Arc<RwLock<Param<F>>>,
}

impl<F: Float> SharedThreshold<F> {
    fn publish(&self, owner: &Param<F>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = owner.alias();
    }

    fn on<'t>(&self, tape: &'t Tape<F>) -> Var<'t, F> {
        tape.param(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn value(&self) -> Tensor<F> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .value()
            .clone()
    }
}

enum Slot<F: Float> {
    /// This transform owns `s`; `shared` is set once it has handed out a [`SharedThreshold`].
    Own {
        s: Param<F>,
        shared: Option<SharedThreshold<F>>,
    },
    /// Another layer owns `s`.
    Borrowed(SharedThreshold<F>),
}

/// STR's soft-threshold transform.
pub struct SoftThreshold<F: Float> {
    slot: Slot<F>,
    g: ThresholdFn,
}

impl<F: Float> SoftThreshold<F> {
    /// A threshold of the given granularity for a weight of shape `weight`, every entry `s_init`
    /// (the paper initialises s so that g(s) ~ 0, e.g. s = -3200 for ResNet-50 on ImageNet).
    pub fn new(weight: &[usize], granularity: Granularity, s_init: f64, g: ThresholdFn) -> Self {
        let s = Tensor::from_elem(ndarray::IxDyn(&granularity.shape(weight)), F::c(s_init));
        Self::from_value(s, g)
    }

    /// A threshold with the given initial value (any shape that broadcasts to the weight's).
    pub fn from_value(s: Tensor<F>, g: ThresholdFn) -> Self {
        SoftThreshold {
            slot: Slot::Own {
                s: Param::new(s),
                shared: None,
            },
            g,
        }
    }

    /// Makes this transform's threshold global: returns a handle for [`SoftThreshold::sharing`].
    /// This transform stays the owner (it alone visits the parameter).
    pub fn share(&mut self) -> SharedThreshold<F> {
        match &mut self.slot {
            Slot::Own { s, shared } => shared
                .get_or_insert_with(|| SharedThreshold {
                    current: Arc::new(RwLock::new(s.alias())),
                })
                .clone(),
            Slot::Borrowed(h) => h.clone(),
        }
    }

    /// A transform using a threshold owned by another layer.
    pub fn sharing(handle: &SharedThreshold<F>, g: ThresholdFn) -> Self {
        SoftThreshold {
            slot: Slot::Borrowed(handle.clone()),
            g,
        }
    }

    /// Whether this transform owns its threshold (false for the sharing layers of a global one).
    pub fn owns_threshold(&self) -> bool {
        matches!(self.slot, Slot::Own { .. })
    }

    /// The threshold function g.
    pub fn g(&self) -> &ThresholdFn {
        &self.g
    }

    /// The current value of s.
    pub fn s(&self) -> Tensor<F> {
        match &self.slot {
            Slot::Own { s, .. } => s.value().clone(),
            Slot::Borrowed(h) => h.value(),
        }
    }

    /// The threshold g(s) (the shape of s).
    pub fn threshold_value(&self) -> Tensor<F> {
        self.s().mapv(|s| F::c(self.g.value(s.f64())))
    }

    /// Sets s (owner only; a sharing layer is changed through its owner).
    pub fn set_s(&mut self, value: Tensor<F>) {
        match &mut self.slot {
            Slot::Own { s, shared } => {
                assert_eq!(
                    value.shape(),
                    s.shape(),
                    "SoftThreshold::set_s: shape differs"
                );
                s.set_value(value);
                if let Some(h) = shared {
                    h.publish(s);
                }
            }
            Slot::Borrowed(_) => panic!(
                "SoftThreshold::set_s on a layer that shares another layer's threshold; set it on the owner"
            ),
        }
    }

    /// s as a variable on `tape` (one variable per tape, however many layers use it).
    pub fn s_on<'t>(&self, tape: &'t Tape<F>) -> Var<'t, F> {
        match &self.slot {
            Slot::Own { s, .. } => tape.param(s),
            Slot::Borrowed(h) => h.on(tape),
        }
    }
}

impl<F: Float> WeightTransform<F> for SoftThreshold<F> {
    fn name(&self) -> &'static str {
        "str"
    }

    fn apply<'t>(&self, raw: Var<'t, F>) -> Var<'t, F> {
        raw.soft_threshold(self.s_on(raw.tape()), &self.g)
    }

    /// g(s) for a one-element s (per layer or global); per-channel and per-weight thresholds
    /// have no single value (use [`SoftThreshold::threshold_value`]).
    fn threshold(&self) -> Option<f64> {
        let s = self.s();
        (s.len() == 1).then(|| self.g.value(s.iter().next().expect("one element").f64()))
    }

    fn effective(&self, raw: &Tensor<F>) -> Tensor<F> {
        let tape = Tape::new();
        let _no_grad = tape.no_grad();
        let w = tape.constant(raw.clone());
        (*self.apply(w).value()).clone()
    }

    fn visit<'a>(&'a self, weight: &str, f: &mut dyn FnMut(&str, &'a Param<F>)) {
        if let Slot::Own { s, .. } = &self.slot {
            f(&format!("{weight}_threshold"), s);
        }
    }

    fn visit_mut(&mut self, weight: &str, f: &mut dyn FnMut(&str, &mut Param<F>)) {
        if let Slot::Own { s, shared } = &mut self.slot {
            f(&format!("{weight}_threshold"), s);
            // The optimiser (or a checkpoint load) may have replaced the buffer: re-publish.
            if let Some(h) = shared {
                h.publish(s);
            }
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
