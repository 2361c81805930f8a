//! Parameters: leaves that persist across steps.
//!
//! A [`Param`] owns its value behind an `Arc`, so putting it on a tape shares the buffer instead of
//! copying it. After `backward()` has consumed the tape the optimiser is the only owner again and
//! updates the buffer in place (`Arc::make_mut` copies only if someone still holds the old value).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::float::Float;
use crate::tensor::Tensor;

/// Process-unique identity of a parameter (not its name; names come from the module tree).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParamId(u64);

impl ParamId {
    fn fresh() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        ParamId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// A persistent tensor: a trainable weight, or a buffer such as batchnorm's running mean.
pub struct Param<F: Float> {
    id: ParamId,
    value: Arc<Tensor<F>>,
    /// Bumped by every mutable access to the value, so a cache of something computed from the
    /// value (the sparse kernels' kept weights, `nn::sparse`) knows when it is stale.
    version: u64,
    buffer: bool,
    frozen: bool,
}

impl<F: Float> Clone for Param<F> {
    /// A copy with a fresh identity, so the original and the copy can be on one tape.
    fn clone(&self) -> Self {
        Param {
            id: ParamId::fresh(),
            value: Arc::new((*self.value).clone()),
            version: 0,
            buffer: self.buffer,
            frozen: self.frozen,
        }
    }
}

impl<F: Float> std::fmt::Debug for Param<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Param({:?}, shape {:?}, trainable {})",
            self.id,
            self.value.shape(),
            self.trainable()
        )
    }
}

impl<F: Float> Param<F> {
    /// A trainable parameter.
    pub fn new(value: Tensor<F>) -> Self {
        Param {
            id: ParamId::fresh(),
            value: Arc::new(value),
            version: 0,
            buffer: false,
            frozen: false,
        }
    }

    /// A non-trainable buffer (saved in checkpoints, never given a gradient).
    pub fn buffer(value: Tensor<F>) -> Self {
        Param {
            buffer: true,
            ..Param::new(value)
        }
    }

    pub fn id(&self) -> ParamId {
        self.id
    }

    pub fn value(&self) -> &Tensor<F> {
        &self.value
    }

    /// Mutable access for in-place updates; copies first only if a tape still shares the buffer.
    pub fn value_mut(&mut self) -> &mut Tensor<F> {
        self.version += 1;
        Arc::make_mut(&mut self.value)
    }

    /// Replaces the value (the shape may change only when loading or reparameterising).
    pub fn set_value(&mut self, value: Tensor<F>) {
        self.version += 1;
        self.value = Arc::new(value);
    }

    /// A second handle to this parameter: the same identity and the same value buffer (no copy).
    /// On a tape both handles are one variable, so gradients from every use accumulate in one
    /// place. Used for a parameter shared by several layers (STR's global threshold): the owner
    /// keeps the real parameter and re-publishes an alias after each update.
    pub(crate) fn alias(&self) -> Param<F> {
        Param {
            id: self.id,
            value: self.value.clone(),
            version: self.version,
            buffer: self.buffer,
            frozen: self.frozen,
        }
    }

    pub(crate) fn shared(&self) -> Arc<Tensor<F>> {
        self.value.clone()
    }

    /// Changes whenever the value may have changed ([`Param::value_mut`], [`Param::set_value`]);
    /// with [`Param::id`] it names one value.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn shape(&self) -> &[usize] {
        self.value.shape()
    }

    pub fn len(&self) -> usize {
        self.value.len()
    }

    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }

    /// Trainable parameters get gradients; buffers and frozen parameters do not.
    pub fn trainable(&self) -> bool {
        !self.buffer && !self.frozen
    }

    /// Buffers (running statistics) are state, not parameters: optimisers skip them.
    pub fn is_buffer(&self) -> bool {
        self.buffer
    }

    /// Freezes (false) or unfreezes (true) a parameter; a buffer stays untrainable.
    pub fn set_trainable(&mut self, trainable: bool) {
        self.frozen = !trainable;
    }
}
