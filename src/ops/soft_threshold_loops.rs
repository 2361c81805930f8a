//! The loops of STR's soft threshold (`Var::soft_threshold` in `sparsity.rs`) with one
//! threshold per layer over contiguous weights, compiled for the CPU's widest vectors
//! (`simd`, the same bits as the scalar loop).

use std::mem::MaybeUninit;

use ndarray::Zip;

use crate::float::Float;
use crate::ops::elementwise::sign_scalar;
use crate::simd::{Kernel, widest};
use crate::tape::Tensor;

/// `sign(w) relu(|w| - t)`, the soft threshold of one entry.
#[inline(always)]
pub(super) fn shrink<F: Float>(w: F, t: F) -> F {
    sign_scalar(w) * (w.abs() - t).max(F::zero())
}

/// sum_i g_i sign(w_i) 1[|w_i| > t] in f64. Over contiguous row-major operands it runs in
/// fixed chunks with independent partial sums (which vectorises, and is the same order for any
/// thread count); otherwise in element order.
pub(super) fn alive_signed_sum<F: Float>(grad: &Tensor<F>, w: &Tensor<F>, t: F) -> f64 {
    let term = |g: F, w: F| alive_signed_term(g, w, t);
    match (grad.as_slice(), w.as_slice()) {
        (Some(gs), Some(ws)) => widest(AliveSignedSum { gs, ws, t }),
        _ => Zip::from(grad)
            .and(w)
            .fold(0.0, |acc, &g, &w| acc + term(g, w)),
    }
}

/// One entry of [`alive_signed_sum`], written as selects without early exits so loops of it
/// vectorise.
#[inline(always)]
fn alive_signed_term<F: Float>(g: F, w: F, t: F) -> f64 {
    let alive = if w.abs() > t { g } else { F::zero() };
    let signed = if w > F::zero() { alive } else { -alive };
    (if w == F::zero() { F::zero() } else { signed }).f64()
}

/// [`alive_signed_sum`] over contiguous slices: eight f64 partial sums, then their sum (a fixed
/// order, whatever vector width runs it).
struct AliveSignedSum<'a, F> {
    gs: &'a [F],
    ws: &'a [F],
    t: F,
}

impl<F: Float> Kernel for AliveSignedSum<'_, F> {
    type Output = f64;

    #[inline(always)]
    fn run(self) -> f64 {
        const LANES: usize = 8;
        let AliveSignedSum { gs, ws, t } = self;
        let mut partial = [0.0f64; LANES];
        let (gc, wc) = (gs.chunks_exact(LANES), ws.chunks_exact(LANES));
        let tail: f64 = gc
            .remainder()
            .iter()
            .zip(wc.remainder())
            .map(|(&g, &w)| alive_signed_term(g, w, t))
            .sum();
        for (g8, w8) in gc.zip(wc) {
            for k in 0..LANES {
                partial[k] += alive_signed_term(g8[k], w8[k], t);
            }
        }
        partial.iter().sum::<f64>() + tail
    }
}

/// The soft threshold with one threshold `t` over a contiguous weight `ws` (of `w`'s shape):
/// with `grad`, the weight gradient `grad 1[|w| > t]`, without, the value
/// `sign(w) relu(|w| - t)`. Compiled for the CPU's widest vectors (`simd`, same bits).
pub(super) fn one_threshold<F: Float>(
    w: &Tensor<F>,
    ws: &[F],
    grad: Option<&[F]>,
    t: F,
) -> Tensor<F> {
    let mut out = Vec::with_capacity(ws.len());
    widest(OneThreshold {
        ws,
        grad,
        t,
        out: &mut out.spare_capacity_mut()[..ws.len()],
    });
    // SAFETY: the kernel wrote all `ws.len()` elements.
    unsafe { out.set_len(ws.len()) };
    Tensor::from_shape_vec(w.raw_dim(), out).expect("the weight's size")
}

struct OneThreshold<'a, F> {
    ws: &'a [F],
    grad: Option<&'a [F]>,
    t: F,
    out: &'a mut [MaybeUninit<F>],
}

impl<F: Float> Kernel for OneThreshold<'_, F> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let OneThreshold { ws, grad, t, out } = self;
        let n = ws.len();
        let out = &mut out[..n];
        match grad {
            None => {
                for i in 0..n {
                    out[i].write(shrink(ws[i], t));
                }
            }
            Some(gs) => {
                let gs = &gs[..n];
                for i in 0..n {
                    out[i].write(if ws[i].abs() > t { gs[i] } else { F::zero() });
                }
            }
        }
    }
}
