//! The one GEMM entry point everything calls: strided views in; for f32 on x86-64 with AVX-512
//! or AVX2+FMA our own packed kernels (`packed_gemm`, `microkernel`), otherwise (f64, other
//! CPUs, or `SPARSEGRAD_GEMM=portable`) `matrixmultiply`, the portable default.
//!
//! **Why own kernels.** Measured on an Intel Xeon (Sapphire-Rapids class, family 6 model 207,
//! AVX-512 + AMX, 2 cores; machine shared with compiles, so preliminary): single-thread CPU time
//! (best of 7), GFLOP/s over two sittings, for `matrixmultiply` / the `gemm` crate 0.19 with
//! `x86-v4` / ours (AVX-512), shapes M x K x N:
//!
//! | shape | matrixmultiply | gemm 0.19 | ours |
//! |---|---|---|---|
//! | square 1024 | 68-111 | 103-137 | 100-128 |
//! | ResNet-20 fwd, whole batch, 16x144x8192 | 32-52 | 31-43 | 45-58 |
//! | same, one im2col tile, 16x144x352 | 52-83 | 128-139 | 77-125 |
//! | weight gradient 16x8192x144 (`G X^T`) | 41-55 | 17-21 | 41-62 |
//! | weight gradient 64x2048x576 | 74-99 | 42-56 | 49-97 |
//! | input gradient 144x16x8192 (`W^T G`) | 50-58 | 52-73 | 82 |
//! | input gradient 576x64x2048 | 45-132 | 77-116 | 66-135 |
//! | LeNet-300 fc1 fwd 128x784x300 (`x W^T`) | 53-124 | 74-121 | 47-96 |
//! | LeNet-300 fc1 weight gradient 300x128x784 | 61-80 | 85-128 | 76-97 |
//!
//! (Measured before transposed operands were packed with 8 x 8 register transposes, which took
//! the packing of `x W^T` from 12% to 6% of a LeNet-300 step; see `packed_gemm`.)
//!
//! No candidate wins everywhere inside the noise; the `gemm` crate loses 2-3x on the long-K
//! weight-gradient shapes and would add ~1.5 min of CI build and blocking heuristics of its own
//! (its rounding could change with the sub-problem sizes our thread split produces). Ours add no
//! dependency, keep every element's rounding a function of K alone, read a small operand in
//! place instead of packing it (the weight gradient, an im2col tile), and read an operand's rows
//! through an offset table: the shifted rows of a zero-padded image, with which `shift_conv` runs
//! stride-1 convolutions without an im2col matrix.
//!
//! **Against MKL** (`torch.mm` from the PyTorch peer, one quiet sitting on the same CPU,
//! 2026-11-30, medians; this VM drifts about +-20% between minutes): square 1024 19.5 / 20.7 ms
//! on 1 thread (1.06x), 13.2 / 9.9 ms on 2 (0.75x); a second sitting 45 minutes later gave 0.71x
//! and 0.96x, so the square case is level with MKL give or take that spread. ResNet-20's shapes on
//! 1 thread (first sitting): forward
//! 0.95x / 1.02x / 0.81x (16, 32, 64 channels), input gradient 0.63x / 0.84x / 0.97x, weight
//! gradient 0.63x / 0.57x / 0.40x. The weight gradient is where MKL pulls ahead: its B operand is
//! the whole im2col matrix (8192 x 576 for 64 channels), used by only M = 64 rows, so packing it
//! costs a quarter of the product (measured with `perf`). Reading it in place instead measured
//! slower (strided rows). For stride-1 convolutions `shift_conv` now reads the padded image
//! itself instead of an im2col matrix (no column matrix, no packing of it).
//!
//! **Threads and determinism.** Large products are split over their longer side (rows or
//! columns) with `rayon::join`. Splitting M or N never changes the order in which any output
//! element's K-sum is accumulated (the packed kernels sum in `p` order in fixed `KC` blocks,
//! whatever the tile), so results are bit-identical for every thread count. A product with a
//! small output and a long K (a weight gradient, e.g. 16 x 131072 x 144) is instead cut along K
//! into fixed chunks of `K_SPLIT_CHUNK` (a function of the shape, never of the thread count),
//! computed in parallel and added in chunk order. Results can differ in the last bits between
//! the portable path and the SIMD path (they round differently), but AVX-512 and AVX2 give the
//! same bits, and no CPU changes with the number of threads.

use std::any::TypeId;

use ndarray::{ArrayView2, ArrayViewMut2, Axis};

use crate::float::Float;
use crate::kernels::packed_gemm::{self, Strided};

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
    if let Some(chunk) = k_split_chunk(m, k, n) {
        return gemm_k_split(alpha, a, b, beta, c, chunk);
    }
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

/// K is split when the output is small and K long (a weight gradient `G X^T` over many
/// positions): at least this many multiply-adds per output element...
const K_SPLIT_MIN_DEPTH: usize = 4096;
/// ...and an output of at most this many elements (so the partial sums stay in cache).
const K_SPLIT_MAX_OUTPUT: usize = packed_gemm::SMALL_OUTPUT;
/// The length of one K chunk: a multiple of the packed kernel's `KC`, so chunking does not add
/// a block boundary inside a chunk.
const K_SPLIT_CHUNK: usize = 4 * packed_gemm::KC;

/// The K chunk length when `gemm` splits K, or `None`. A function of the shape alone (never of
/// the thread count), so the rounding of the result is the same on any number of threads.
fn k_split_chunk(m: usize, k: usize, n: usize) -> Option<usize> {
    let split = m * n * k >= PARALLEL_MIN_MACS
        && m * n <= K_SPLIT_MAX_OUTPUT
        && k >= K_SPLIT_MIN_DEPTH.max(2 * K_SPLIT_CHUNK);
    split.then_some(K_SPLIT_CHUNK)
}

/// `c <- alpha * sum_chunks(a_chunk b_chunk) + beta * c` with K cut into fixed chunks computed in
/// parallel, and the partial products added in chunk order.
fn gemm_k_split<F: Float>(
    alpha: F,
    a: ArrayView2<'_, F>,
    b: ArrayView2<'_, F>,
    beta: F,
    mut c: ArrayViewMut2<'_, F>,
    chunk: usize,
) {
    use rayon::prelude::*;
    let (m, k) = a.dim();
    let n = b.dim().1;
    let partials: Vec<ndarray::Array2<F>> = (0..k.div_ceil(chunk))
        .into_par_iter()
        .map(|i| {
            let range = i * chunk..((i + 1) * chunk).min(k);
            let mut part = ndarray::Array2::<F>::zeros((m, n));
            gemm_serial(
                F::one(),
                a.slice(ndarray::s![.., range.clone()]),
                b.slice(ndarray::s![range, ..]),
                F::zero(),
                part.view_mut(),
            );
            part
        })
        .collect();
    let mut sum = partials[0].clone();
    for part in &partials[1..] {
        sum += part;
    }
    if beta == F::zero() {
        c.zip_mut_with(&sum, |c, &s| *c = alpha * s);
    } else {
        c.zip_mut_with(&sum, |c, &s| *c = alpha * s + beta * *c);
    }
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

thread_local! {
    static SERIAL_CALLS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// How many [`gemm_serial`] calls ran on the calling thread so far: lets a test see how many
/// blocks a product was split into (summed over a pool's threads).
#[doc(hidden)]
pub fn serial_calls_on_this_thread() -> usize {
    SERIAL_CALLS.with(std::cell::Cell::get)
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
    SERIAL_CALLS.with(|calls| calls.set(calls.get() + 1));
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
    if let (Some(isa), true) = (packed_gemm::isa(), TypeId::of::<F>() == TypeId::of::<f32>()) {
        let f32_of = |x: F| x.to_f32().expect("f32 is f32");
        let strided = |ptr: *const F, s: &[isize]| Strided {
            ptr: ptr.cast::<f32>(),
            rs: s[0],
            cs: s[1],
        };
        // SAFETY: F is f32 (checked above), so the casts are identities; the views are valid
        // for their dims and strides, `c` is a unique borrow aliasing neither input, k >= 1, and
        // `isa` was detected on this CPU.
        unsafe {
            packed_gemm::sgemm(
                isa,
                m,
                k,
                n,
                f32_of(alpha),
                strided(a.as_ptr(), sa),
                strided(b.as_ptr(), sb),
                f32_of(beta),
                c.as_mut_ptr().cast::<f32>(),
                rsc,
                csc,
            );
        }
        return;
    }
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
