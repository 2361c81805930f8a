//! The tape: an eager Wengert list of every value computed in one training step.
//!
//! Each op computes its value immediately and pushes a `Node` holding the value, the ids of its
//! inputs and a backward closure. Nodes are pushed in creation order, so walking the list backwards
//! is a valid reverse topological order: no graph search is needed.
//!
//! The engine does three things once, for every op:
//! - skips the backward closure (and frees what it captured) when no input needs a gradient,
//! - reduces a gradient that came back in a broadcast shape to its input's shape ([`sum_to_shape`]),
//! - sums the contributions of every use of a value.
//!
//! [`Var::backward`] drains the tape, freeing each node as soon as its gradient is propagated, and
//! returns the gradients of the leaves in a [`Grads`] store. A tape is meant for one step: make a
//! new one for the next step, so memory cannot grow across steps.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;

use ndarray::ArrayD;

use crate::float::Float;
use crate::grads::Grads;
use crate::param::{Param, ParamId};

pub use crate::tensor::Tensor;

mod backward;
mod broadcast;
pub use broadcast::{broadcast_shape, sum_to_shape};

/// An op's backward: given the gradient of its output and which inputs need a gradient, returns
/// one entry per input (`None` where not needed). A returned gradient may have the broadcast
/// (output) shape; the engine reduces it to the input's shape.
pub type BackwardFn<F> = Box<dyn FnOnce(&Tensor<F>, &[bool]) -> Vec<Option<Tensor<F>>>>;

/// A [`BackwardFn`] that owns the gradient of its output ([`Tape::record_owned`]): it may
/// return that buffer, overwritten, as an input's gradient. Every backward is stored this way.
type OwnedBackwardFn<F> = Box<dyn FnOnce(Tensor<F>, &[bool]) -> Vec<Option<Tensor<F>>>>;

enum Origin {
    /// A leaf created with [`Tape::leaf`]: its gradient is kept in [`Grads`].
    Leaf,
    /// A parameter leaf: its gradient is kept in [`Grads`] and also found by parameter id.
    Param(ParamId),
    /// A constant or an op output.
    Computed,
}

struct Node<F: Float> {
    op: &'static str,
    value: Arc<Tensor<F>>,
    inputs: Vec<usize>,
    backward: Option<OwnedBackwardFn<F>>,
    requires_grad: bool,
    origin: Origin,
    /// Keep this value's gradient in [`Grads`] (see [`Tape::retain_grad`]).
    retain: bool,
}

/// The recording of one forward pass. See the module documentation.
pub struct Tape<F: Float = f32> {
    nodes: RefCell<Vec<Node<F>>>,
    params: RefCell<HashMap<ParamId, usize>>,
    no_grad_depth: Cell<usize>,
    consumed: Cell<bool>,
}

/// A handle to a value on a tape. Cheap to copy; valid for the tape's lifetime.
pub struct Var<'t, F: Float = f32> {
    tape: &'t Tape<F>,
    id: usize,
}

impl<F: Float> Clone for Var<'_, F> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<F: Float> Copy for Var<'_, F> {}

impl<F: Float> std::fmt::Debug for Var<'_, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Var#{}{:?}", self.id, self.shape())
    }
}

/// While alive, ops on its tape record values but no backward closures (evaluation, mask updates).
pub struct NoGradGuard<'t> {
    depth: &'t Cell<usize>,
}

impl Drop for NoGradGuard<'_> {
    fn drop(&mut self) {
        self.depth.set(self.depth.get() - 1);
    }
}

impl<F: Float> Default for Tape<F> {
    fn default() -> Self {
        Self::new()
    }
}

impl<F: Float> Tape<F> {
    pub fn new() -> Self {
        Tape {
            nodes: RefCell::new(Vec::new()),
            params: RefCell::new(HashMap::new()),
            no_grad_depth: Cell::new(0),
            consumed: Cell::new(false),
        }
    }

    /// Number of values recorded so far.
    pub fn len(&self) -> usize {
        self.nodes.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The op name of every value recorded so far, in order (`"leaf"`, `"param"` and
    /// `"constant"` included). [`crate::hvp`] uses it to refuse ops its dual numbers cannot pass.
    pub fn ops(&self) -> Vec<&'static str> {
        self.nodes.borrow().iter().map(|n| n.op).collect()
    }

    /// Whether ops currently record backward closures.
    pub fn grad_enabled(&self) -> bool {
        self.no_grad_depth.get() == 0
    }

    /// Records nothing differentiable until the guard is dropped.
    pub fn no_grad(&self) -> NoGradGuard<'_> {
        self.no_grad_depth.set(self.no_grad_depth.get() + 1);
        NoGradGuard {
            depth: &self.no_grad_depth,
        }
    }

    /// A leaf whose gradient [`Var::backward`] returns (inputs of a gradient check, for example).
    pub fn leaf(&self, value: Tensor<F>) -> Var<'_, F> {
        let requires_grad = self.grad_enabled();
        self.push(Node {
            op: "leaf",
            value: Arc::new(value),
            inputs: Vec::new(),
            backward: None,
            requires_grad,
            origin: Origin::Leaf,
            retain: false,
        })
    }

    /// A value that never receives a gradient (data, labels, masks).
    pub fn constant(&self, value: Tensor<F>) -> Var<'_, F> {
        self.constant_shared(Arc::new(value))
    }

    /// Like [`Tape::constant`], sharing an existing buffer instead of copying it.
    pub fn constant_shared(&self, value: Arc<Tensor<F>>) -> Var<'_, F> {
        self.push(Node {
            op: "constant",
            value,
            inputs: Vec::new(),
            backward: None,
            requires_grad: false,
            origin: Origin::Computed,
            retain: false,
        })
    }

    /// The parameter's current value as a leaf. The buffer is shared, not copied; asking twice for
    /// the same parameter returns the same variable, so its gradient is accumulated once.
    /// Frozen parameters (see [`Param::set_trainable`]) enter as constants.
    pub fn param(&self, param: &Param<F>) -> Var<'_, F> {
        if let Some(&id) = self.params.borrow().get(&param.id()) {
            return Var { tape: self, id };
        }
        let requires_grad = self.grad_enabled() && param.trainable();
        let var = self.push(Node {
            op: "param",
            value: param.shared(),
            inputs: Vec::new(),
            backward: None,
            requires_grad,
            origin: Origin::Param(param.id()),
            retain: false,
        });
        self.params.borrow_mut().insert(param.id(), var.id);
        var
    }

    /// Records an op's output. This is the one entry point every op uses (or
    /// [`Tape::record_owned`]); user-defined ops may use it too. `backward` is dropped at once
    /// (freeing what it captured) if no input needs a gradient. `value` may be an `Arc` the
    /// backward closure also holds (ops whose derivative uses their output).
    pub fn record<B>(
        &self,
        op: &'static str,
        value: impl Into<Arc<Tensor<F>>>,
        inputs: &[Var<'_, F>],
        backward: B,
    ) -> Var<'_, F>
    where
        B: FnOnce(&Tensor<F>, &[bool]) -> Vec<Option<Tensor<F>>> + 'static,
    {
        self.record_owned(op, value, inputs, move |g, needs| backward(&g, needs))
    }

    /// [`Tape::record`] with a backward that takes the output's gradient by value, so that an
    /// elementwise op can write an input's gradient into that buffer instead of a new one (one
    /// pass over memory fewer: a masked or thresholded weight's gradient, relu's). The buffer
    /// is the op's alone: the engine hands over a retained gradient's copy, never the kept one.
    pub fn record_owned<B>(
        &self,
        op: &'static str,
        value: impl Into<Arc<Tensor<F>>>,
        inputs: &[Var<'_, F>],
        backward: B,
    ) -> Var<'_, F>
    where
        B: FnOnce(Tensor<F>, &[bool]) -> Vec<Option<Tensor<F>>> + 'static,
    {
        let ids: Vec<usize> = inputs
            .iter()
            .map(|v| {
                assert!(
                    std::ptr::eq(v.tape, self),
                    "op `{op}`: inputs come from different tapes"
                );
                v.id
            })
            .collect();
        let requires_grad = self.grad_enabled() && {
            let nodes = self.nodes.borrow();
            ids.iter().any(|&i| nodes[i].requires_grad)
        };
        let backward: Option<OwnedBackwardFn<F>> = match requires_grad {
            true => Some(Box::new(backward)),
            false => None,
        };
        self.push(Node {
            op,
            value: value.into(),
            inputs: ids,
            backward,
            requires_grad,
            origin: Origin::Computed,
            retain: false,
        })
    }

    /// Keeps the gradient of an intermediate value (an op output) in the [`Grads`] that
    /// `backward` returns, found with [`Grads::wrt`]. Leaves and parameters keep theirs anyway.
    /// This is how a method sees the gradient with respect to an *effective* weight, e.g. the
    /// dense gradient dL/d(W * m) of a masked weight that RigL grows by (`nn::Weight`).
    pub fn retain_grad(&self, var: Var<'_, F>) {
        assert!(
            std::ptr::eq(var.tape, self),
            "retain_grad: the variable is on another tape"
        );
        self.nodes.borrow_mut()[var.id].retain = true;
    }

    fn push(&self, node: Node<F>) -> Var<'_, F> {
        assert!(
            !self.consumed.get(),
            "this tape was consumed by backward(); make a new Tape for the next step"
        );
        let mut nodes = self.nodes.borrow_mut();
        nodes.push(node);
        Var {
            tape: self,
            id: nodes.len() - 1,
        }
    }

    fn node_value(&self, id: usize) -> Arc<Tensor<F>> {
        let nodes = self.nodes.borrow();
        assert!(
            id < nodes.len(),
            "variable #{id} is gone: its tape was consumed by backward()"
        );
        nodes[id].value.clone()
    }

    fn requires_grad(&self, id: usize) -> bool {
        self.nodes.borrow()[id].requires_grad
    }
}

impl<'t, F: Float> Var<'t, F> {
    /// The tape this variable lives on (ops use it to record their outputs).
    pub fn tape(&self) -> &'t Tape<F> {
        self.tape
    }

    /// Position on the tape; [`Grads`] is keyed by it.
    pub fn id(&self) -> usize {
        self.id
    }

    /// The value, shared (no copy).
    pub fn value(&self) -> Arc<Tensor<F>> {
        self.tape.node_value(self.id)
    }

    pub fn shape(&self) -> Vec<usize> {
        self.value().shape().to_vec()
    }

    pub fn ndim(&self) -> usize {
        self.value().ndim()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.value().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The single element of a one-element value (a loss, for example).
    pub fn item(&self) -> F {
        let v = self.value();
        assert_eq!(
            v.len(),
            1,
            "item() needs a one-element value, got shape {:?}",
            v.shape()
        );
        *v.iter().next().expect("one element")
    }

    /// Whether a gradient flows back through this value.
    pub fn requires_grad(&self) -> bool {
        self.tape.requires_grad(self.id)
    }

    /// Reverse-mode gradient of this one-element value with respect to every leaf and parameter
    /// that contributed to it. Consumes the tape.
    pub fn backward(self) -> Grads<F> {
        let value = self.value();
        assert_eq!(
            value.len(),
            1,
            "backward() needs a one-element value (use backward_with for shape {:?})",
            value.shape()
        );
        let seed = ArrayD::from_elem(value.raw_dim(), F::one());
        self.backward_with(seed)
    }

    /// Vector-Jacobian product: backward seeded with `seed` (same shape as this value).
    pub fn backward_with(self, seed: Tensor<F>) -> Grads<F> {
        assert_eq!(
            seed.shape(),
            self.value().shape(),
            "backward_with: seed shape differs from the value's"
        );
        self.tape.run_backward(self.id, seed)
    }
}
