//! FastGRNN cell (Kusupati et al., NeurIPS 2018) with Microsoft EdgeML's PyTorch parameter names,
//! shapes and defaults (`edgeml_pytorch.graph.rnn.FastGRNNCell`, sigmoid gate, tanh update):
//!
//! ```text
//! z  = sigmoid(W x + U h + bias_gate)
//! h~ = tanh(W x + U h + bias_update)
//! h' = (sigmoid(zeta) * (1 - z) + sigmoid(nu)) * h~ + z * h
//! ```
//!
//! W [H, I] and U [H, H] are full rank (`W`, `U`) or low rank as in EdgeML: `W = W2 W1` with
//! `W1` [r_w, I] and `W2` [H, r_w], `U = U2 U1` with `U1` [r_u, H] and `U2` [H, r_u]; the product is
//! never formed, x W^T is computed as (x W1^T) W2^T. `bias_gate` and `bias_update` are [1, H],
//! `zeta` and `nu` are [1, 1] raw scalars that enter through a sigmoid.
//!
//! Defaults (EdgeML): every W*/U* matrix N(0, 0.1^2), biases 1, zeta 1, nu -4.

use crate::error::{Error, Result};
use crate::float::Float;
use crate::nn::init::{constant, normal_init};
use crate::nn::module::{Module, join};
use crate::nn::recurrent::{RecurrentCell, check_step_shapes, zero_state};
use crate::nn::weight::Weight;
use crate::param::Param;
use crate::rng::Rng;
use crate::tape::{Tape, Var};

/// Sizes and initial values of a [`FastGrnnCell`]; [`FastGrnnConfig::new`] gives EdgeML's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct FastGrnnConfig {
    pub input_size: usize,
    pub hidden_size: usize,
    /// Rank r_w of W = W2 W1; `None` for a full-rank W.
    pub w_rank: Option<usize>,
    /// Rank r_u of U = U2 U1; `None` for a full-rank U.
    pub u_rank: Option<usize>,
    /// Initial raw zeta (EdgeML `zetaInit`, 1.0).
    pub zeta_init: f64,
    /// Initial raw nu (EdgeML `nuInit`, -4.0).
    pub nu_init: f64,
    /// Standard deviation of the W*/U* initialisation (EdgeML: 0.1).
    pub weight_std: f64,
}

impl FastGrnnConfig {
    /// Full rank, EdgeML's initial values.
    pub fn new(input_size: usize, hidden_size: usize) -> Self {
        FastGrnnConfig {
            input_size,
            hidden_size,
            w_rank: None,
            u_rank: None,
            zeta_init: 1.0,
            nu_init: -4.0,
            weight_std: 0.1,
        }
    }

    /// Low-rank W and U with ranks `w_rank` and `u_rank`.
    pub fn low_rank(mut self, w_rank: usize, u_rank: usize) -> Self {
        self.w_rank = Some(w_rank);
        self.u_rank = Some(u_rank);
        self
    }
}

/// A FastGRNN weight matrix (W or U): one matrix, or two low-rank factors.
pub enum Projection<F: Float> {
    /// `W` [H, in].
    Full(Weight<F>),
    /// `W = second first`: `W1` [r, in] (`first`) and `W2` [H, r] (`second`), EdgeML's names.
    LowRank { first: Weight<F>, second: Weight<F> },
}

/// A [`Projection`] on one tape.
pub enum ProjectionOn<'t, F: Float> {
    Full(Var<'t, F>),
    LowRank {
        first: Var<'t, F>,
        second: Var<'t, F>,
    },
}

impl<'t, F: Float> ProjectionOn<'t, F> {
    /// x W^T, as (x W1^T) W2^T when low rank.
    pub fn apply(&self, x: Var<'t, F>) -> Var<'t, F> {
        match *self {
            ProjectionOn::Full(w) => x.matmul_nt(w),
            ProjectionOn::LowRank { first, second } => x.matmul_nt(first).matmul_nt(second),
        }
    }
}

impl<F: Float> Projection<F> {
    /// N(0, std^2) entries; EdgeML draws `W1` before `W2`.
    fn new(
        name: &str,
        rows: usize,
        cols: usize,
        rank: Option<usize>,
        std: f64,
        rng: &mut Rng,
    ) -> Result<Self> {
        Ok(match rank {
            None => Projection::Full(Weight::new(normal_init(&[rows, cols], std, rng))),
            Some(0) => {
                return Err(Error::invalid(format!(
                    "FastGRNN: the rank of {name} must be at least 1 (got 0); use full rank instead"
                )));
            }
            Some(r) => {
                let first = Weight::new(normal_init(&[r, cols], std, rng));
                let second = Weight::new(normal_init(&[rows, r], std, rng));
                Projection::LowRank { first, second }
            }
        })
    }

    fn on<'t>(&self, tape: &'t Tape<F>) -> ProjectionOn<'t, F> {
        match self {
            Projection::Full(w) => ProjectionOn::Full(w.on(tape)),
            Projection::LowRank { first, second } => ProjectionOn::LowRank {
                first: first.on(tape),
                second: second.on(tape),
            },
        }
    }

    /// (name, weight) pairs under EdgeML's names: `W` or `W1`, `W2` (with `letter` = "W").
    fn named<'a>(&'a self, letter: &str) -> Vec<(String, &'a Weight<F>)> {
        match self {
            Projection::Full(w) => vec![(letter.to_string(), w)],
            Projection::LowRank { first, second } => {
                vec![
                    (format!("{letter}1"), first),
                    (format!("{letter}2"), second),
                ]
            }
        }
    }

    fn named_mut<'a>(&'a mut self, letter: &str) -> Vec<(String, &'a mut Weight<F>)> {
        match self {
            Projection::Full(w) => vec![(letter.to_string(), w)],
            Projection::LowRank { first, second } => {
                vec![
                    (format!("{letter}1"), first),
                    (format!("{letter}2"), second),
                ]
            }
        }
    }
}

pub struct FastGrnnCell<F: Float> {
    /// Input projection W (x -> H).
    pub w: Projection<F>,
    /// Recurrent projection U (h -> H).
    pub u: Projection<F>,
    /// [1, H], inside the gate's sigmoid.
    pub bias_gate: Param<F>,
    /// [1, H], inside the candidate's tanh.
    pub bias_update: Param<F>,
    /// [1, 1] raw zeta; the cell uses sigmoid(zeta).
    pub zeta: Param<F>,
    /// [1, 1] raw nu; the cell uses sigmoid(nu).
    pub nu: Param<F>,
    input_size: usize,
    hidden_size: usize,
}

/// A [`FastGrnnCell`]'s parameters on one tape, with sigmoid(zeta) and sigmoid(nu) computed once.
pub struct FastGrnnWeights<'t, F: Float> {
    pub w: ProjectionOn<'t, F>,
    pub u: ProjectionOn<'t, F>,
    pub bias_gate: Var<'t, F>,
    pub bias_update: Var<'t, F>,
    zeta: Var<'t, F>,
    nu: Var<'t, F>,
}

impl<'t, F: Float> FastGrnnWeights<'t, F> {
    /// From values already on a tape; `zeta_raw` and `nu_raw` go through a sigmoid here.
    pub fn new(
        w: ProjectionOn<'t, F>,
        u: ProjectionOn<'t, F>,
        bias_gate: Var<'t, F>,
        bias_update: Var<'t, F>,
        zeta_raw: Var<'t, F>,
        nu_raw: Var<'t, F>,
    ) -> Self {
        FastGrnnWeights {
            w,
            u,
            bias_gate,
            bias_update,
            zeta: zeta_raw.sigmoid(),
            nu: nu_raw.sigmoid(),
        }
    }
}

impl<F: Float> FastGrnnCell<F> {
    /// Draws the matrices in EdgeML's order (W or W1, W2; then U or U1, U2). Fails when a size
    /// or a rank is 0.
    pub fn new(config: &FastGrnnConfig, rng: &mut Rng) -> Result<Self> {
        let (i, h) = (config.input_size, config.hidden_size);
        if i == 0 || h == 0 {
            return Err(Error::invalid(format!(
                "FastGRNN: input size ({i}) and hidden size ({h}) must be at least 1"
            )));
        }
        let std = config.weight_std;
        let w = Projection::new("W", h, i, config.w_rank, std, rng)?;
        let u = Projection::new("U", h, h, config.u_rank, std, rng)?;
        Ok(FastGrnnCell {
            w,
            u,
            bias_gate: Param::new(constant(&[1, h], 1.0)),
            bias_update: Param::new(constant(&[1, h], 1.0)),
            zeta: Param::new(constant(&[1, 1], config.zeta_init)),
            nu: Param::new(constant(&[1, 1], config.nu_init)),
            input_size: i,
            hidden_size: h,
        })
    }

    /// The weight matrices under EdgeML's names, in state_dict order.
    fn weights(&self) -> Vec<(String, &Weight<F>)> {
        let mut all = self.w.named("W");
        all.extend(self.u.named("U"));
        all
    }

    fn weights_mut(&mut self) -> Vec<(String, &mut Weight<F>)> {
        let mut all = self.w.named_mut("W");
        all.extend(self.u.named_mut("U"));
        all
    }

    fn scalars(&self) -> [(&'static str, &Param<F>); 4] {
        [
            ("bias_gate", &self.bias_gate),
            ("bias_update", &self.bias_update),
            ("zeta", &self.zeta),
            ("nu", &self.nu),
        ]
    }

    fn scalars_mut(&mut self) -> [(&'static str, &mut Param<F>); 4] {
        [
            ("bias_gate", &mut self.bias_gate),
            ("bias_update", &mut self.bias_update),
            ("zeta", &mut self.zeta),
            ("nu", &mut self.nu),
        ]
    }
}

impl<F: Float> RecurrentCell<F> for FastGrnnCell<F> {
    type Weights<'t> = FastGrnnWeights<'t, F>;

    fn weights_on<'t>(&self, tape: &'t Tape<F>) -> FastGrnnWeights<'t, F> {
        FastGrnnWeights::new(
            self.w.on(tape),
            self.u.on(tape),
            tape.param(&self.bias_gate),
            tape.param(&self.bias_update),
            tape.param(&self.zeta),
            tape.param(&self.nu),
        )
    }

    fn step_on<'t>(&self, p: &FastGrnnWeights<'t, F>, x: Var<'t, F>, h: Var<'t, F>) -> Var<'t, F> {
        check_step_shapes("FastGrnnCell", self.input_size, self.hidden_size, &x, &h);
        // Gate and candidate share one pre-activation W x + U h; only their biases differ.
        let pre = p.w.apply(x) + p.u.apply(h);
        let z = (pre + p.bias_gate).sigmoid();
        let candidate = (pre + p.bias_update).tanh();
        let one_minus_z = z.neg().add_scalar(1.0);
        // h' = (sigmoid(zeta) (1 - z) + sigmoid(nu)) h~ + z h
        (p.zeta * one_minus_z + p.nu) * candidate + z * h
    }

    fn input_size(&self) -> usize {
        self.input_size
    }

    fn hidden_size(&self) -> usize {
        self.hidden_size
    }
}

impl<F: Float> Module<F> for FastGrnnCell<F> {
    /// One step from a zero state: x [N, I] -> [N, H].
    fn forward<'t>(&mut self, x: Var<'t, F>) -> Var<'t, F> {
        let h0 = zero_state(x.tape(), x.shape()[0], self.hidden_size);
        self.step(x, h0)
    }

    fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(&str, &'a Param<F>)) {
        for (name, w) in self.weights() {
            w.visit(&join(prefix, &name), f);
        }
        for (name, p) in self.scalars() {
            f(&join(prefix, name), p);
        }
    }

    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<F>)) {
        for (name, w) in self.weights_mut() {
            w.visit_mut(&join(prefix, &name), f);
        }
        for (name, p) in self.scalars_mut() {
            f(&join(prefix, name), p);
        }
    }

    fn visit_weights_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Weight<F>)) {
        for (name, w) in self.weights_mut() {
            f(&join(prefix, &name), w);
        }
    }

    fn visit_weights<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(&str, &'a Weight<F>)) {
        for (name, w) in self.weights() {
            f(&join(prefix, &name), w);
        }
    }

    /// W = W2 W1 and U = U2 U1 when low rank (EdgeML's names).
    fn visit_low_rank(&self, prefix: &str, f: &mut dyn FnMut(&str, &str, &str)) {
        for (letter, projection) in [("W", &self.w), ("U", &self.u)] {
            if let Projection::LowRank { .. } = projection {
                f(
                    &join(prefix, letter),
                    &join(prefix, &format!("{letter}1")),
                    &join(prefix, &format!("{letter}2")),
                );
            }
        }
    }
}
