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

use ndarray::{Array2, ArrayBase, ArrayView2, Data, Ix2};

use crate::float::Float;
use crate::tape::{Tensor, Var};

fn matrix<'a, F: Float>(what: &str, x: &'a Tensor<F>) -> ArrayView2<'a, F> {
    x.view().into_dimensionality::<Ix2>().unwrap_or_else(|_| {
        panic!(
            "op `gru_gates`: {what} must be a matrix, got shape {:?}",
            x.shape()
        )
    })
}

/// The rows of a standard-layout matrix as slices.
fn rows<F: Float, S: Data<Elem = F>>(m: &ArrayBase<S, Ix2>) -> impl Iterator<Item = &[F]> {
    let width = m.ncols().max(1);
    m.as_slice().expect("standard layout").chunks_exact(width)
}

/// The rows of a standard-layout matrix as mutable slices.
fn rows_mut<F: Float>(m: &mut Array2<F>) -> impl Iterator<Item = &mut [F]> {
    let width = m.ncols().max(1);
    m.as_slice_mut()
        .expect("standard layout")
        .chunks_exact_mut(width)
}

/// A row's three gate blocks `(r | z | n)` of `hidden` elements each.
fn split3<F>(row: &[F], hidden: usize) -> (&[F], &[F], &[F]) {
    let (r, zn) = row.split_at(hidden);
    let (z, n) = zn.split_at(hidden);
    (r, z, n)
}

fn split3_mut<F>(row: &mut [F], hidden: usize) -> (&mut [F], &mut [F], &mut [F]) {
    let (r, zn) = row.split_at_mut(hidden);
    let (z, n) = zn.split_at_mut(hidden);
    (r, z, n)
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
        // Saved for backward: (r | z | n) per row. Each gate block is a contiguous run of a row,
        // so its nonlinearity is one vectorised call (`Float::sigmoid_in_place`).
        let (gis, ghs, hs) = (
            gi2.as_standard_layout(),
            gh2.as_standard_layout(),
            h2.as_standard_layout(),
        );
        let mut gates = Array2::<F>::zeros((batch, 3 * hidden));
        let mut out = Array2::<F>::zeros((batch, hidden));
        for (((gi, gh), h), (gates, out)) in rows(&gis)
            .zip(rows(&ghs))
            .zip(rows(&hs))
            .zip(rows_mut(&mut gates).zip(rows_mut(&mut out)))
        {
            let (rz, n) = gates.split_at_mut(2 * hidden);
            for ((g, &a), &b) in rz.iter_mut().zip(&gi[..2 * hidden]).zip(&gh[..2 * hidden]) {
                *g = a + b;
            }
            F::sigmoid_in_place(rz);
            let r = &rz[..hidden];
            for (((n, &a), &b), &r) in n
                .iter_mut()
                .zip(&gi[2 * hidden..])
                .zip(&gh[2 * hidden..])
                .zip(r)
            {
                *n = a + r * b;
            }
            F::tanh_in_place(n);
            let z = &rz[hidden..];
            for (((o, &n), &z), &h) in out.iter_mut().zip(&*n).zip(z).zip(h) {
                *o = n + z * (h - n);
            }
        }
        let y = out.into_dyn();
        self.tape()
            .record("gru_gates", y, &[self, gh, h], move |g, needs| {
                let (gh2, h2, g2) = (matrix("gh", &ghv), matrix("h", &hv), matrix("g", g));
                let (ghs, hs, gs) = (
                    gh2.as_standard_layout(),
                    h2.as_standard_layout(),
                    g2.as_standard_layout(),
                );
                let mut dgi = Array2::<F>::zeros((batch, 3 * hidden));
                let mut dgh = Array2::<F>::zeros((batch, 3 * hidden));
                let mut dh = Array2::<F>::zeros((batch, hidden));
                let one = F::one();
                for (((gates, gh), (h, g)), ((dgi, dgh), dh)) in rows(&gates)
                    .zip(rows(&ghs))
                    .zip(rows(&hs).zip(rows(&gs)))
                    .zip(
                        rows_mut(&mut dgi)
                            .zip(rows_mut(&mut dgh))
                            .zip(rows_mut(&mut dh)),
                    )
                {
                    let (r, z, n) = split3(gates, hidden);
                    let gh_n = &gh[2 * hidden..];
                    let (dgi_r, dgi_z, dgi_n) = split3_mut(dgi, hidden);
                    let (dgh_r, dgh_z, dgh_n) = split3_mut(dgh, hidden);
                    for j in 0..hidden {
                        let (r, z, n) = (r[j], z[j], n[j]);
                        let a_z = g[j] * (h[j] - n) * z * (one - z);
                        let a_n = g[j] * (one - z) * (one - n * n);
                        let a_r = a_n * gh_n[j] * r * (one - r);
                        (dgi_r[j], dgi_z[j], dgi_n[j]) = (a_r, a_z, a_n);
                        (dgh_r[j], dgh_z[j], dgh_n[j]) = (a_r, a_z, a_n * r);
                        dh[j] = g[j] * z;
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
