//! The loops of STR's soft threshold (`Var::soft_threshold` in `sparsity.rs`) with one
//! threshold per layer over contiguous weights, compiled for the CPU's widest vectors
//! (`simd`, the same bits as the scalar loop).

use std::mem::MaybeUninit;

use ndarray::Zip;

use crate::float::Float;
use crate::kernels::parallel::{chunks_written, map_slices};
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

/// The soft threshold's backward with one threshold `t` over contiguous `ws` and upstream `gs`,
/// in chunks over threads, each chunk's two loops over the same cached operands: the weight
/// gradient `g 1[|w| > t]` if `want_dw`, and `sum_i g_i sign(w_i) 1[|w_i| > t]` in f64 (0 unless
/// `want_sum`). The sum is fixed in order whatever the thread count and vector width: per chunk,
/// 32 f64 partial sums over the element index mod 32, added up, then the chunks' sums in order.
pub(super) fn one_threshold_backward<F: Float>(
    w: &Tensor<F>,
    ws: &[F],
    gs: &[F],
    t: F,
    want_dw: bool,
    want_sum: bool,
) -> (Option<Tensor<F>>, f64) {
    let gs = &gs[..ws.len()];
    // Every chunk's kernel writes each element of its `out` (`PassAlive`).
    let chunk = |i: usize, out: &mut [MaybeUninit<F>]| {
        let (ws, gs) = (&ws[i * CHUNK..], &gs[i * CHUNK..]);
        let len = out.len();
        match want_sum {
            true => widest(ThresholdBackward::<F, true> { ws, gs, t, out }),
            false => {
                widest(PassAlive {
                    ws: &ws[..len],
                    gs,
                    t,
                    out,
                });
                0.0
            }
        }
    };
    let (dw, sums) = if want_dw {
        // SAFETY: `chunk` writes every element of its chunk (above).
        let (out, sums) = unsafe { chunks_written(ws.len(), CHUNK, chunk) };
        let dw = Tensor::from_shape_vec(w.raw_dim(), out).expect("the weight's size");
        (Some(dw), sums)
    } else if want_sum {
        let sums = (0..ws.len().div_ceil(CHUNK))
            .map(|i| {
                let (ws, gs) = (&ws[i * CHUNK..], &gs[i * CHUNK..]);
                let len = ws.len().min(CHUNK);
                widest(ThresholdBackward::<F, false> {
                    ws: &ws[..len],
                    gs,
                    t,
                    out: &mut [],
                })
            })
            .collect();
        (None, sums)
    } else {
        (None, Vec::new())
    };
    (dw, sums.iter().sum())
}

/// `out = g 1[|w| > t]` over one chunk (every element of `out` written).
struct PassAlive<'a, F> {
    ws: &'a [F],
    gs: &'a [F],
    t: F,
    out: &'a mut [MaybeUninit<F>],
}

impl<F: Float> Kernel for PassAlive<'_, F> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let gs = &self.gs[..self.ws.len()];
        for (out, (&g, &w)) in self.out.iter_mut().zip(gs.iter().zip(self.ws)) {
            out.write(pass_alive(g, w, self.t));
        }
    }
}

/// One chunk of [`one_threshold_backward`] with the sum: the weight gradient first (when `DW`,
/// into `out`, of the chunk's length), then the sum over the chunk (`ws`'s length without `DW`).
/// Two loops, not one: one loop doing both measured slower (its loads were scalarised).
struct ThresholdBackward<'a, F, const DW: bool> {
    ws: &'a [F],
    gs: &'a [F],
    t: F,
    out: &'a mut [MaybeUninit<F>],
}

impl<F: Float, const DW: bool> Kernel for ThresholdBackward<'_, F, DW> {
    type Output = f64;

    #[inline(always)]
    fn run(self) -> f64 {
        // 32, not 8: eight f64 are one AVX-512 register, whose one chain of dependent adds
        // would bound the loop by the add's latency.
        const LANES: usize = 32;
        let ThresholdBackward { ws, gs, t, out } = self;
        let n = if DW { out.len() } else { ws.len() };
        let (ws, gs) = (&ws[..n], &gs[..n]);
        if DW {
            PassAlive { ws, gs, t, out }.run();
        }
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
        partial.iter().sum::<f64>() + tail
    }
}
