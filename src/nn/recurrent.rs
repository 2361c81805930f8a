//! Recurrent cells and running them over a sequence.
//!
//! A cell maps (input x_t [N, I], state h_{t-1} [N, H]) to h_t [N, H]. Every cell here is a
//! composition of gradient-checked ops, so backpropagation through time needs no code of its own:
//! unrolling records T steps on one tape and `backward()` walks them in reverse.
//!
//! A cell puts its weights on the tape once per sequence ([`RecurrentCell::weights_on`]) and then
//! steps with them ([`RecurrentCell::step_on`]). That matters for reparameterised weights: a
//! [`WeightTransform`](crate::nn::WeightTransform) (soft threshold, mask, ...) is applied once per
//! sequence, not once per step, and the transformed weight's gradient from every step is summed
//! by the engine. The cells: [`GruCell`](crate::nn::GruCell), [`FastGrnnCell`](crate::nn::FastGrnnCell).

use crate::float::Float;
use crate::tape::{Tape, Tensor, Var};

/// One step of a recurrent network, generic so models and [`unroll`] work with any cell.
pub trait RecurrentCell<F: Float> {
    /// The cell's parameters as values on one tape (effective weights, already transformed).
    type Weights<'t>;

    /// Records the cell's effective weights on `tape`; call once per sequence.
    fn weights_on<'t>(&self, tape: &'t Tape<F>) -> Self::Weights<'t>;

    /// h_t from x_t [N, I] and h_{t-1} [N, H], using weights from [`RecurrentCell::weights_on`].
    fn step_on<'t>(&self, weights: &Self::Weights<'t>, x: Var<'t, F>, h: Var<'t, F>) -> Var<'t, F>;

    /// Features per input step (I).
    fn input_size(&self) -> usize;

    /// Features of the hidden state (H).
    fn hidden_size(&self) -> usize;

    /// One step on its own (puts the weights on the tape first; to run a sequence use [`unroll`]).
    fn step<'t>(&self, x: Var<'t, F>, h: Var<'t, F>) -> Var<'t, F> {
        let weights = self.weights_on(x.tape());
        self.step_on(&weights, x, h)
    }
}

/// The hidden states of an unrolled sequence.
pub struct Unrolled<'t, F: Float> {
    /// h_1 .. h_T, each [N, H] (h_0 is not included, as in PyTorch's `nn.GRU` output).
    pub states: Vec<Var<'t, F>>,
    /// h_T (h_0 when the sequence is empty).
    pub last: Var<'t, F>,
}

impl<'t, F: Float> Unrolled<'t, F> {
    /// All states as one [T, N, H] value (PyTorch `nn.GRU` output layout).
    pub fn stacked(&self) -> Var<'t, F> {
        Var::stack(&self.states, 0)
    }
}

/// A zero initial state [batch, hidden] (PyTorch's default when `hx` is not given).
pub fn zero_state<'t, F: Float>(tape: &'t Tape<F>, batch: usize, hidden: usize) -> Var<'t, F> {
    tape.constant(Tensor::zeros(ndarray::IxDyn(&[batch, hidden])))
}

/// Runs `cell` over `xs` (T steps, each [N, I]) from `h0` (zeros when `None`):
/// h_t = step(x_t, h_{t-1}). The weights go on the tape once; gradients flow back through time
/// to every x_t, to h0 and to the parameters.
pub fn unroll<'t, F: Float, C: RecurrentCell<F> + ?Sized>(
    cell: &C,
    xs: &[Var<'t, F>],
    h0: Option<Var<'t, F>>,
) -> Unrolled<'t, F> {
    let h0 = h0.unwrap_or_else(|| {
        let first = xs
            .first()
            .expect("unroll: an empty sequence needs an explicit h0 (the batch size is unknown)");
        zero_state(first.tape(), first.shape()[0], cell.hidden_size())
    });
    let weights = cell.weights_on(h0.tape());
    unroll_on(cell, &weights, xs, h0)
}

/// [`unroll`] with weights already on the tape (shared by several sequences, or built from
/// leaves by a gradient check).
pub fn unroll_on<'t, F: Float, C: RecurrentCell<F> + ?Sized>(
    cell: &C,
    weights: &C::Weights<'t>,
    xs: &[Var<'t, F>],
    h0: Var<'t, F>,
) -> Unrolled<'t, F> {
    let mut states = Vec::with_capacity(xs.len());
    let mut h = h0;
    for &x in xs {
        h = cell.step_on(weights, x, h);
        states.push(h);
    }
    Unrolled { states, last: h }
}

/// [`unroll`] over one [T, N, I] value (PyTorch `nn.GRU` input layout, `batch_first=False`).
pub fn unroll_sequence<'t, F: Float, C: RecurrentCell<F> + ?Sized>(
    cell: &C,
    xs: Var<'t, F>,
    h0: Option<Var<'t, F>>,
) -> Unrolled<'t, F> {
    unroll(cell, &split_steps(xs), h0)
}

/// The T steps [N, I] of a [T, N, I] value. The value is viewed as [T * N, I] and step t is rows
/// t*N .. (t+1)*N, one op per step. When `xs` needs a gradient each step's backward writes a
/// full-size [T * N, I] gradient (the `slice` op's rule), O(T^2 N I) in total: fine for data
/// (constants record no backward) and short sequences; a stacked RNN should pass the lower
/// layer's `states` to [`unroll`] directly instead.
pub fn split_steps<'t, F: Float>(xs: Var<'t, F>) -> Vec<Var<'t, F>> {
    let shape = xs.shape();
    assert_eq!(
        shape.len(),
        3,
        "split_steps: expected a sequence of shape [T, N, I], got {shape:?}"
    );
    let (steps, batch, features) = (shape[0], shape[1], shape[2]);
    let rows = xs.reshape(&[steps * batch, features]);
    (0..steps)
        .map(|t| rows.narrow(0, t * batch, batch))
        .collect()
}

/// Panics with the cell's name and the shapes when x or h do not fit the cell.
pub(crate) fn check_step_shapes<F: Float>(
    cell: &str,
    input_size: usize,
    hidden_size: usize,
    x: &Var<'_, F>,
    h: &Var<'_, F>,
) {
    let (xs, hs) = (x.shape(), h.shape());
    assert!(
        xs.len() == 2 && hs.len() == 2 && xs[1] == input_size && hs == [xs[0], hidden_size],
        "{cell}: expected x [N, {input_size}] and h [N, {hidden_size}], got x {xs:?} and h {hs:?}"
    );
}
