//! The loops of STR's soft threshold (`Var::soft_threshold` in `sparsity.rs`) with one
//! threshold per layer over contiguous weights, compiled for the CPU's widest vectors
//! (`simd`, the same bits as the scalar loop).

use ndarray::Zip;
use rayon::prelude::*;

use crate::float::Float;
use crate::kernels::parallel::{map_slices, worth_splitting};
use crate::ops::elementwise::sign_scalar;
use crate::simd::{Kernel, widest};
use crate::tape::Tensor;

/// `sign(w) relu(|w| - t)`, the soft threshold of one entry.
#[inline(always)]
pub(super) fn shrink<F: Float>(w: F, t: F) -> F {
    sign_scalar(w) * (w.abs() - t).max(F::zero())
}

/// The weight gradient `g 1[|w| > t]` of one entry.
#[inline(always)]
fn pass_alive<F: Float>(g: F, w: F, t: F) -> F {
    if w.abs() > t { g } else { F::zero() }
}

/// sum_i g_i sign(w_i) 1[|w_i| > t] in f64, in element order (the fallback of
/// [`one_threshold_backward`] for operands that are not contiguous).
pub(super) fn alive_signed_sum<F: Float>(grad: &Tensor<F>, w: &Tensor<F>, t: F) -> f64 {
    Zip::from(grad)
        .and(w)
        .fold(0.0, |acc, &g, &w| acc + alive_signed_term(g, w, t))
}

/// One entry of the threshold's gradient sum, written as selects without early exits so loops
/// of it vectorise.
#[inline(always)]
fn alive_signed_term<F: Float>(g: F, w: F, t: F) -> f64 {
    let alive = pass_alive(g, w, t);
    let signed = if w > F::zero() { alive } else { -alive };
    (if w == F::zero() { F::zero() } else { signed }).f64()
}

/// Elements per task of the backward below: 16 KiB of each operand, so the backward's second loop
/// over a chunk reads it from L1. Fixed, so the order of the threshold gradient's sum (chunk by
/// chunk) never depends on the thread count.
const CHUNK: usize = 4096;

/// The soft threshold `sign(w) relu(|w| - t)` with one threshold `t` over a contiguous weight
/// `ws` (of `w`'s shape), one vectorised loop in chunks over threads.
pub(super) fn one_threshold<F: Float>(w: &Tensor<F>, ws: &[F], t: F) -> Tensor<F> {
    let out = map_slices([ws], |[w]| shrink(w, t));
    Tensor::from_shape_vec(w.raw_dim(), out).expect("the weight's size")
}

/// The soft threshold's backward with one threshold `t` over contiguous `ws`, in place on the
/// upstream gradient `gs` (which the op owns), in chunks over threads, each chunk's loops over
/// the same cached operands: first `sum_i g_i sign(w_i) 1[|w_i| > t]` in f64 if `want_sum`
/// (else 0), then `gs` becomes the weight gradient `g 1[|w| > t]` if `want_dw`. The sum is
/// fixed in order whatever the thread count and vector width: per chunk, 32 f64 partial sums
/// over the element index mod 32, added up, then the chunks' sums in order.
pub(super) fn one_threshold_backward<F: Float>(
    ws: &[F],
    gs: &mut [F],
    t: F,
    want_dw: bool,
    want_sum: bool,
) -> f64 {
    assert_eq!(ws.len(), gs.len(), "soft_threshold: gradient length");
    let chunk = |(ws, gs): (&[F], &mut [F])| {
        widest(ThresholdBackward {
            ws,
            gs,
            t,
            want_dw,
            want_sum,
        })
    };
    let sums: Vec<f64> = if worth_splitting(ws.len()) {
        ws.par_chunks(CHUNK)
            .zip(gs.par_chunks_mut(CHUNK))
            .map(chunk)
            .collect()
    } else {
        ws.chunks(CHUNK)
            .zip(gs.chunks_mut(CHUNK))
            .map(chunk)
            .collect()
    };
    sums.iter().sum()
}

/// One chunk of [`one_threshold_backward`]: the sum, then the weight gradient in place. Two
/// loops, not one: one loop doing both measured slower (its loads were scalarised).
struct ThresholdBackward<'a, F> {
    ws: &'a [F],
    gs: &'a mut [F],
    t: F,
    want_dw: bool,
    want_sum: bool,
}

impl<F: Float> Kernel for ThresholdBackward<'_, F> {
    type Output = f64;

    #[inline(always)]
    fn run(self) -> f64 {
        // 32, not 8: eight f64 are one AVX-512 register, whose one chain of dependent adds
        // would bound the loop by the add's latency.
        const LANES: usize = 32;
        let ThresholdBackward {
            ws,
            gs,
            t,
            want_dw,
            want_sum,
        } = self;
        let ws = &ws[..gs.len()];
        let mut sum = 0.0;
        if want_sum {
            let mut partial = [0.0f64; LANES];
            let (gc, wc) = (gs.chunks_exact(LANES), ws.chunks_exact(LANES));
            // -0.0, the neutral element `Iterator::sum` starts from.
            let mut tail = -0.0f64;
            for (&g, &w) in gc.remainder().iter().zip(wc.remainder()) {
                tail += alive_signed_term(g, w, t);
            }
            for (gc, wc) in gc.zip(wc) {
                for k in 0..LANES {
                    partial[k] += alive_signed_term(gc[k], wc[k], t);
                }
            }
            sum = partial.iter().sum::<f64>() + tail;
        }
        if want_dw {
            for (g, &w) in gs.iter_mut().zip(ws) {
                *g = pass_alive(*g, w, t);
            }
        }
        sum
    }
}
