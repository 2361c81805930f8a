//! The one GEMM wrapper everything calls: strided views in, `matrixmultiply` underneath.
//!
//! Large products are split over their longer side (rows or columns) with `rayon::join`.
//! Splitting M or N never changes the order in which any output element's K-sum is accumulated,
//! so results are bit-identical for every thread count. K is never split here (see
//! `docs/architecture.md`: weight-gradient GEMMs reduce over the batch in a fixed order instead).

use ndarray::{ArrayView2, ArrayViewMut2, Axis};

use crate::float::Float;

/// Below this many multiply-adds a product runs on the calling thread.
const PARALLEL_MIN_MACS: usize = 1 << 20;
/// Split points are multiples of this (a micro-kernel's row/column count), so no tile is ragged.
const SPLIT_ALIGN: usize = 16;

/// `c <- alpha * a b + beta * c`. Any strides; `c` must not alias `a` or `b` (guaranteed by the
/// borrow rules). With `beta = 0`, `c` may hold garbage (even NaN) on entry.
pub fn gemm<F: Float>(
    alpha: F,
    a: ArrayView2<'_, F>,
    b: ArrayView2<'_, F>,
    beta: F,
    c: ArrayViewMut2<'_, F>,
) {
    let (m, k) = a.dim();
    let (k2, n) = b.dim();
    assert_eq!(
        k, k2,
        "gemm: inner dimensions differ ({m}x{k} times {k2}x{n})"
    );
    assert_eq!(
        c.dim(),
        (m, n),
        "gemm: output is {:?}, expected ({m}, {n})",
        c.dim()
    );
    // The threads of the pool we run in (the global pool outside any): inside
    // `ThreadPool::install` the caller is itself a worker, and must still split.
    let threads = rayon::current_num_threads();
    let depth = if m * n * k >= PARALLEL_MIN_MACS {
        usize::BITS - (threads.max(1) - 1).leading_zeros()
    } else {
        0
    };
    gemm_split(alpha, a, b, beta, c, depth);
}

fn gemm_split<F: Float>(
    alpha: F,
    a: ArrayView2<'_, F>,
    b: ArrayView2<'_, F>,
    beta: F,
    c: ArrayViewMut2<'_, F>,
    depth: u32,
) {
    let (m, n) = c.dim();
    // Each half packs the operand it shares in full (matrixmultiply packs per call): splitting
    // rows repacks b (k x n), splitting columns repacks a (m x k). Split the longer side, so the
    // repacked operand is the smaller one.
    let split_rows = m >= 2 * SPLIT_ALIGN && (m >= n || n < 2 * SPLIT_ALIGN);
    if depth > 0 && split_rows {
        let mid = (m / 2).div_ceil(SPLIT_ALIGN) * SPLIT_ALIGN;
        let (a1, a2) = a.split_at(Axis(0), mid);
        let (c1, c2) = c.split_at(Axis(0), mid);
        rayon::join(
            || gemm_split(alpha, a1, b, beta, c1, depth - 1),
            || gemm_split(alpha, a2, b, beta, c2, depth - 1),
        );
    } else if depth > 0 && n >= 2 * SPLIT_ALIGN {
        let mid = (n / 2).div_ceil(SPLIT_ALIGN) * SPLIT_ALIGN;
        let (b1, b2) = b.split_at(Axis(1), mid);
        let (c1, c2) = c.split_at(Axis(1), mid);
        rayon::join(
            || gemm_split(alpha, a, b1, beta, c1, depth - 1),
            || gemm_split(alpha, a, b2, beta, c2, depth - 1),
        );
    } else {
        gemm_serial(alpha, a, b, beta, c);
    }
}

/// Single-threaded `c <- alpha * a b + beta * c`.
pub fn gemm_serial<F: Float>(
    alpha: F,
    a: ArrayView2<'_, F>,
    b: ArrayView2<'_, F>,
    beta: F,
    mut c: ArrayViewMut2<'_, F>,
) {
    let (m, k) = a.dim();
    let n = b.dim().1;
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // matrixmultiply would still scale by beta; do it here without reading garbage when beta = 0.
        if beta == F::zero() {
            c.fill(F::zero());
        } else {
            c.mapv_inplace(|v| v * beta);
        }
        return;
    }
    let (sa, sb) = (a.strides(), b.strides());
    let (rsc, csc) = (c.strides()[0], c.strides()[1]);
    // SAFETY: the views are valid for their dims and strides; `c` is a unique borrow, so it
    // aliases neither input.
    unsafe {
        F::gemm(
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            sa[0],
            sa[1],
            b.as_ptr(),
            sb[0],
            sb[1],
            beta,
            c.as_mut_ptr(),
            rsc,
            csc,
        );
    }
}
