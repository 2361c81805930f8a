//! GRU cell with PyTorch `nn.GRUCell`'s parameters, layout and equations.
//!
//! Parameters (state_dict order): `weight_ih` `[3H, I]`, `weight_hh` `[3H, H]`, `bias_ih` `[3H]`,
//! `bias_hh` `[3H]`; the three gate blocks of each are stacked in the order (r, z, n):
//!
//! ```text
//! r  = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
//! z  = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
//! n  = tanh(W_in x + b_in + r * (W_hn h + b_hn))
//! h' = (1 - z) * n + z * h
//! ```
//!
//! As in PyTorch, the three gate products of each input are one GEMM (`x W_ih^T`, `h W_hh^T`, each
//! [N, 3H]) and the gates are column blocks of the results.

use crate::float::Float;
use crate::nn::init::uniform_init;
use crate::nn::module::{Module, join};
use crate::nn::recurrent::{RecurrentCell, check_step_shapes, zero_state};
use crate::nn::weight::Weight;
use crate::param::Param;
use crate::rng::Rng;
use crate::tape::{Tape, Var};

pub struct GruCell<F: Float> {
    /// [3H, I]: rows (W_ir; W_iz; W_in).
    pub weight_ih: Weight<F>,
    /// [3H, H]: rows (W_hr; W_hz; W_hn).
    pub weight_hh: Weight<F>,
    /// `[3H]` each: (b_ir; b_iz; b_in) and (b_hr; b_hz; b_hn); absent when built without bias.
    pub bias_ih: Option<Param<F>>,
    pub bias_hh: Option<Param<F>>,
}

/// A [`GruCell`]'s parameters on one tape (see [`RecurrentCell::weights_on`]).
pub struct GruWeights<'t, F: Float> {
    pub weight_ih: Var<'t, F>,
    pub weight_hh: Var<'t, F>,
    pub bias_ih: Option<Var<'t, F>>,
    pub bias_hh: Option<Var<'t, F>>,
}

impl<F: Float> GruCell<F> {
    /// PyTorch's initialisation: every parameter U(-1/sqrt(H), 1/sqrt(H)), drawn in state_dict order.
    pub fn new(input_size: usize, hidden_size: usize, bias: bool, rng: &mut Rng) -> Self {
        let bound = 1.0 / (hidden_size as f64).sqrt();
        let weight_ih = Weight::new(uniform_init(&[3 * hidden_size, input_size], bound, rng));
        let weight_hh = Weight::new(uniform_init(&[3 * hidden_size, hidden_size], bound, rng));
        let mut bias_param =
            || bias.then(|| Param::new(uniform_init(&[3 * hidden_size], bound, rng)));
        let bias_ih = bias_param();
        let bias_hh = bias_param();
        GruCell {
            weight_ih,
            weight_hh,
            bias_ih,
            bias_hh,
        }
    }
}

impl<F: Float> RecurrentCell<F> for GruCell<F> {
    type Weights<'t> = GruWeights<'t, F>;

    fn weights_on<'t>(&self, tape: &'t Tape<F>) -> GruWeights<'t, F> {
        GruWeights {
            weight_ih: self.weight_ih.on(tape),
            weight_hh: self.weight_hh.on(tape),
            bias_ih: self.bias_ih.as_ref().map(|b| tape.param(b)),
            bias_hh: self.bias_hh.as_ref().map(|b| tape.param(b)),
        }
    }

    fn step_on<'t>(&self, w: &GruWeights<'t, F>, x: Var<'t, F>, h: Var<'t, F>) -> Var<'t, F> {
        check_step_shapes("GruCell", self.input_size(), self.hidden_size(), &x, &h);
        // One GEMM per input for all three gates, as PyTorch: [N, 3H] blocks (r | z | n).
        let gi = x.linear(w.weight_ih, w.bias_ih);
        let gh = h.linear(w.weight_hh, w.bias_hh);
        // The gate arithmetic in one op (`ops::recurrent`): b_hn sits inside the reset
        // product, n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), and h' = n + z (h - n) as
        // PyTorch's GRUCell computes it.
        gi.gru_gates(gh, h)
    }

    fn input_size(&self) -> usize {
        self.weight_ih.raw.shape()[1]
    }

    fn hidden_size(&self) -> usize {
        self.weight_hh.raw.shape()[1]
    }
}

impl<F: Float> Module<F> for GruCell<F> {
    /// One step from a zero state, as PyTorch's `GRUCell(x)` without `hx`: x [N, I] -> [N, H].
    fn forward<'t>(&mut self, x: Var<'t, F>) -> Var<'t, F> {
        let h0 = zero_state(x.tape(), x.shape()[0], self.hidden_size());
        self.step(x, h0)
    }

    fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(&str, &'a Param<F>)) {
        self.weight_ih.visit(&join(prefix, "weight_ih"), f);
        self.weight_hh.visit(&join(prefix, "weight_hh"), f);
        if let Some(b) = &self.bias_ih {
            f(&join(prefix, "bias_ih"), b);
        }
        if let Some(b) = &self.bias_hh {
            f(&join(prefix, "bias_hh"), b);
        }
    }

    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<F>)) {
        self.weight_ih.visit_mut(&join(prefix, "weight_ih"), f);
        self.weight_hh.visit_mut(&join(prefix, "weight_hh"), f);
        if let Some(b) = &mut self.bias_ih {
            f(&join(prefix, "bias_ih"), b);
        }
        if let Some(b) = &mut self.bias_hh {
            f(&join(prefix, "bias_hh"), b);
        }
    }

    fn visit_weights_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Weight<F>)) {
        f(&join(prefix, "weight_ih"), &mut self.weight_ih);
        f(&join(prefix, "weight_hh"), &mut self.weight_hh);
    }

    fn visit_weights<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(&str, &'a Weight<F>)) {
        f(&join(prefix, "weight_ih"), &self.weight_ih);
        f(&join(prefix, "weight_hh"), &self.weight_hh);
    }
}
