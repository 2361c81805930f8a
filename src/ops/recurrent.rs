//! The GRU cell's gate arithmetic as one op (PyTorch `nn.GRUCell`'s equations), so a step is two
//! GEMMs and one pass over memory forward and one backward, instead of about fifteen
//! elementwise ops each allocating and writing an `[N, H]` value (and as many backward).
//!
//! With `gi = x W_ih^T + b_ih` and `gh = h W_hh^T + b_hh`, each `[N, 3H]` in gate blocks
//! `(r | z | n)`:
//!
//! ```text
//! r  = sigmoid(gi_r + gh_r)
//! z  = sigmoid(gi_z + gh_z)
//! n  = tanh(gi_n + r * gh_n)
//! h' = n + z * (h - n)                 (= (1 - z) n + z h)
//! ```
//!
//! Backward, with `g = dL/dh'`: `dh = g z`; `a_z = g (h - n) z (1 - z)`; `a_n = g (1 - z)(1 - n^2)`;
//! `a_r = a_n gh_n r (1 - r)`; then `dgi = (a_r | a_z | a_n)` and `dgh = (a_r | a_z | a_n r)`.
//! Each row of the batch is independent, so the op is one sequential pass (results do not
//! depend on the thread count).

use ndarray::{Array2, ArrayView2, Ix2};

use crate::float::Float;
use crate::ops::elementwise::sigmoid_scalar;
use crate::tape::{Tensor, Var};

fn matrix<'a, F: Float>(what: &str, x: &'a Tensor<F>) -> ArrayView2<'a, F> {
    x.view().into_dimensionality::<Ix2>().unwrap_or_else(|_| {
        panic!(
            "op `gru_gates`: {what} must be a matrix, got shape {:?}",
            x.shape()
        )
    })
}

impl<'t, F: Float> Var<'t, F> {
    /// The GRU state update `h'` [N, H] from the gate pre-activations `self = gi` [N, 3H],
    /// `gh` [N, 3H] and the previous state `h` [N, H] (see the module documentation).
    pub fn gru_gates(self, gh: Self, h: Self) -> Self {
        let (giv, ghv, hv) = (self.value(), gh.value(), h.value());
        let (gi2, gh2, h2) = (matrix("gi", &giv), matrix("gh", &ghv), matrix("h", &hv));
        let (batch, hidden) = h2.dim();
        assert!(
            gi2.dim() == (batch, 3 * hidden) && gh2.dim() == (batch, 3 * hidden),
            "op `gru_gates`: gi {:?} and gh {:?} must be [N, 3H] for h {:?}",
            giv.shape(),
            ghv.shape(),
            hv.shape()
        );
        // Saved for backward: (r | z | n) per row.
        let mut gates = Array2::<F>::zeros((batch, 3 * hidden));
        let mut out = Array2::<F>::zeros((batch, hidden));
        for (((gi, gh), h), (mut gates, mut out)) in gi2
            .rows()
            .into_iter()
            .zip(gh2.rows())
            .zip(h2.rows())
            .zip(gates.rows_mut().into_iter().zip(out.rows_mut()))
        {
            for j in 0..hidden {
                let r = sigmoid_scalar(gi[j] + gh[j]);
                let z = sigmoid_scalar(gi[hidden + j] + gh[hidden + j]);
                let n = (gi[2 * hidden + j] + r * gh[2 * hidden + j]).tanh_op();
                gates[j] = r;
                gates[hidden + j] = z;
                gates[2 * hidden + j] = n;
                out[j] = n + z * (h[j] - n);
            }
        }
        let y = out.into_dyn();
        self.tape()
            .record("gru_gates", y, &[self, gh, h], move |g, needs| {
                let (gh2, h2, g2) = (matrix("gh", &ghv), matrix("h", &hv), matrix("g", g));
                let mut dgi = Array2::<F>::zeros((batch, 3 * hidden));
                let mut dgh = Array2::<F>::zeros((batch, 3 * hidden));
                let mut dh = Array2::<F>::zeros((batch, hidden));
                for (row, gates) in gates.rows().into_iter().enumerate() {
                    let (gh, h, g) = (gh2.row(row), h2.row(row), g2.row(row));
                    for j in 0..hidden {
                        let (r, z, n) = (gates[j], gates[hidden + j], gates[2 * hidden + j]);
                        let one = F::one();
                        let a_z = g[j] * (h[j] - n) * z * (one - z);
                        let a_n = g[j] * (one - z) * (one - n * n);
                        let a_r = a_n * gh[2 * hidden + j] * r * (one - r);
                        dgi[[row, j]] = a_r;
                        dgi[[row, hidden + j]] = a_z;
                        dgi[[row, 2 * hidden + j]] = a_n;
                        dgh[[row, j]] = a_r;
                        dgh[[row, hidden + j]] = a_z;
                        dgh[[row, 2 * hidden + j]] = a_n * r;
                        dh[[row, j]] = g[j] * z;
                    }
                }
                vec![
                    needs[0].then(|| dgi.into_dyn()),
                    needs[1].then(|| dgh.into_dyn()),
                    needs[2].then(|| dh.into_dyn()),
                ]
            })
    }
}
