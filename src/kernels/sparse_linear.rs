//! A linear layer `y = x (W ⊙ M)^T + b` whose weight is kept only on a fixed [`SparsePattern`]
//! `M`: forward, input gradient and weight gradient at the kept entries, without touching the
//! pruned ones.
//!
//! **Layout: batch innermost.** The input `x` (`[N, in]`, row-major) is transposed once to
//! `X^T` (`[in, Np]`, `Np` = N rounded up to
//! [`LANES`](crate::kernels::sparse_micro::LANES) with zero columns), so that one nonzero
//! `w[o, c]` touches a contiguous row of `Np` batch elements:
//!
//! - forward:         `Y^T[o, :] = sum_{c in row o} w[o, c] X^T[c, :]`   (CSR rows, `gather_accumulate`)
//! - input gradient:  `dX^T[c, :] = sum_{o in col c} w[o, c] G^T[o, :]`  (CSC columns, same kernel)
//! - weight gradient: `dW[o, c] = <G^T[o, :], X^T[c, :]>` at the kept entries only (`dot_reduce`)
//! - bias gradient:   `db[o] = sum_n g[n, o]`
//!
//! Each output row is accumulated in registers while its nonzeros stream past (no scatter, no
//! atomics): the input gradient uses the CSC side of the pattern instead of scattering rows of
//! `G^T` (SparseProp's backward adds into `dX` per nonzero; here each `dX^T` row is written once).
//! Keeping `x` row-major and gathering per example instead would give one scalar gather per
//! multiply-add; the transposes cost `O(N (in + out))` copies against `O(N nnz)` multiply-adds.
//!
//! **Work split and determinism.** Rows of `Y^T`, `dX^T` and `dW` are split into fixed blocks
//! processed in parallel; every element is computed by one task in a fixed order, so results are
//! bit-identical for every thread count.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::float::Float;
use crate::kernels::parallel::par_chunks_zeroed;
use crate::kernels::sparse_micro::{dot_reduce, gather_accumulate, round_up_lanes};
use crate::kernels::sparse_pattern::SparsePattern;
use crate::kernels::transpose::{
    transpose_back, transpose_into, transpose_padded, transpose_to_ptr,
};

/// Rows per parallel task: enough work (about 300 FMAs per row at 95% sparsity on fc1) to
/// amortise a task, while leaving 16+ tasks for two threads on the smallest layers.
const ROW_BLOCK: usize = 16;

/// The input in the kernels' layout: `X^T`, `[in, Np]`, kept by the op between forward and
/// backward.
pub struct BatchInner<F> {
    pub batch: usize,
    /// `batch` rounded up to [`LANES`](crate::kernels::sparse_micro::LANES).
    pub ld: usize,
    pub data: Vec<F>,
}

impl<F: Float> BatchInner<F> {
    /// `x` (`[batch, features]`, row-major) transposed to `[features, ld]`.
    pub fn from_rows(x: &[F], batch: usize, features: usize) -> Self {
        let ld = round_up_lanes(batch);
        BatchInner {
            batch,
            ld,
            data: transpose_padded(x, batch, features, ld),
        }
    }
}

/// `rows` results of `ld` lanes each: row `r` from `row_fn(r, out_row)`, in parallel blocks of
/// [`ROW_BLOCK`] rows, each block zeroed by the task that fills it (a serial zero fill first was
/// 2-3% of fc1's 98%-sparse forward+backward on 2 threads).
fn rows_of<F: Float>(
    rows: usize,
    ld: usize,
    row_fn: impl Fn(usize, &mut [F]) + Sync + Send,
) -> Vec<F> {
    if ld == 0 {
        return Vec::new();
    }
    par_chunks_zeroed(rows * ld, ROW_BLOCK * ld, |b, block| {
        for (i, row) in block.chunks_exact_mut(ld).enumerate() {
            row_fn(b * ROW_BLOCK + i, row);
        }
    })
    .0
}

/// `y = x (W ⊙ M)^T + b`, `[N, out]` row-major, from `X^T` and the kept weights `values` (CSR
/// order of `pattern`, which is `[out, in]`).
///
/// One task per block of `ROW_BLOCK` output rows computes its `Y^T` rows in a small buffer
/// (L1), adds the bias and writes them transposed into its columns of `y`: no `Y^T` matrix and
/// no separate transpose and bias passes (serial passes leave the second thread idle).
pub fn sparse_linear_forward<F: Float>(
    pattern: &SparsePattern,
    values: &[F],
    xt: &BatchInner<F>,
    bias: Option<&[F]>,
) -> Vec<F> {
    let (out_f, in_f, ld, batch) = (pattern.rows(), pattern.cols(), xt.ld, xt.batch);
    check(pattern, values, bias);
    assert_eq!(xt.data.len(), in_f * ld, "sparse_linear: input length");
    if batch == 0 || out_f == 0 {
        return vec![F::zero(); batch * out_f];
    }
    let len = batch * out_f;
    let mut y: Vec<F> = Vec::with_capacity(len);
    let y_ptr = SharedOut(y.as_mut_ptr());
    let block = |yt: &mut Vec<F>, b: usize| {
        let rows = b * ROW_BLOCK..((b + 1) * ROW_BLOCK).min(out_f);
        let kernel = RowKernel {
            pattern,
            values,
            bias,
            src: &xt.data,
            ld,
            batch,
        };
        kernel.rows(rows.clone(), yt);
        // SAFETY: this task is the only writer of columns `rows` of `y` (`batch x out_f`,
        // allocated above), and every element of those columns is written here.
        unsafe { transpose_to_ptr(yt, ld, rows.len(), batch, y_ptr.at(rows.start), out_f) };
    };
    (0..out_f.div_ceil(ROW_BLOCK))
        .into_par_iter()
        .for_each_init(Vec::new, block);
    // SAFETY: the blocks cover the columns `0..out_f` of every row of `y`, each written in full.
    unsafe { y.set_len(len) };
    y
}

/// Examples per task of [`sparse_linear_inference`]: LeNet's batch of 128 makes two tasks, one
/// per thread on two. Fixed, so the split never depends on the thread count.
pub const BATCH_CHUNK: usize = 64;

/// [`sparse_linear_forward`] from the row-major input `x` (`[batch, in]`) when no gradient will
/// be taken (inference), with the same bits.
///
/// The batch is split instead of the output rows: each task transposes its own [`BATCH_CHUNK`]
/// examples, computes all their outputs and writes its own rows of `y`. So the input, `X^T` and
/// the output of an example stay in one core's cache and there is one parallel pass per layer,
/// where splitting the rows needs all of `X^T` on every core, built by both (on the 2-core
/// EPYC VM the forward on 2 threads was hardly faster than on 1). No `X^T` is kept for a
/// backward pass.
pub fn sparse_linear_inference<F: Float>(
    pattern: &SparsePattern,
    values: &[F],
    x: &[F],
    bias: Option<&[F]>,
) -> Vec<F> {
    let (out_f, in_f) = (pattern.rows(), pattern.cols());
    check(pattern, values, bias);
    assert!(
        in_f > 0 && x.len().is_multiple_of(in_f),
        "sparse_linear: input length"
    );
    let batch = x.len() / in_f;
    if batch == 0 || out_f == 0 {
        return vec![F::zero(); batch * out_f];
    }
    let len = batch * out_f;
    let mut y: Vec<F> = Vec::with_capacity(len);
    let chunk = |(xt, yt): &mut (Vec<F>, Vec<F>), (y, x): (&mut [MaybeUninit<F>], &[F])| {
        let nb = x.len() / in_f;
        let ld = round_up_lanes(nb);
        transpose_into(x, nb, in_f, xt, ld);
        let kernel = RowKernel {
            pattern,
            values,
            bias,
            src: xt,
            ld,
            batch: nb,
        };
        for start in (0..out_f).step_by(ROW_BLOCK) {
            let rows = start..(start + ROW_BLOCK).min(out_f);
            kernel.rows(rows.clone(), yt);
            // SAFETY: `y` is this task's `nb x out_f` rows; columns `rows` of each are written.
            unsafe {
                transpose_to_ptr(
                    yt,
                    ld,
                    rows.len(),
                    nb,
                    y.as_mut_ptr().cast::<F>().add(start),
                    out_f,
                )
            };
        }
    };
    y.spare_capacity_mut()[..len]
        .par_chunks_mut(BATCH_CHUNK * out_f)
        .zip(x.par_chunks(BATCH_CHUNK * in_f))
        .for_each_init(|| (Vec::new(), Vec::new()), chunk);
    // SAFETY: the chunks cover every row of `y`, and each chunk's row blocks cover its columns.
    unsafe { y.set_len(len) };
    y
}

fn check<F: Float>(pattern: &SparsePattern, values: &[F], bias: Option<&[F]>) {
    assert_eq!(values.len(), pattern.nnz(), "sparse_linear: values");
    assert!(
        bias.is_none_or(|b| b.len() == pattern.rows()),
        "sparse_linear: bias length"
    );
}

/// The forward's inner work: rows of `Y^T` from the batch-innermost input `src` (`[in, ld]`,
/// `batch` real lanes).
struct RowKernel<'a, F> {
    pattern: &'a SparsePattern,
    values: &'a [F],
    bias: Option<&'a [F]>,
    src: &'a [F],
    ld: usize,
    batch: usize,
}

impl<F: Float> RowKernel<'_, F> {
    /// `Y^T` rows `rows` into `yt` (`rows.len() x ld`), bias added.
    fn rows(&self, rows: std::ops::Range<usize>, yt: &mut Vec<F>) {
        let (ld, cols) = (self.ld, self.pattern.col_indices());
        yt.resize(rows.len() * ld, F::zero());
        for (o, row) in rows.zip(yt.chunks_exact_mut(ld)) {
            let k = self.pattern.row_range(o);
            gather_accumulate(&self.values[k.clone()], &cols[k], ld, self.src, 0, row);
            if let Some(b) = self.bias {
                // The bias after the sum, as the dense path adds it: the same bits.
                for v in &mut row[..self.batch] {
                    *v += b[o];
                }
            }
        }
    }
}

/// The output of [`sparse_linear_forward`], shared by the tasks that write its disjoint columns.
#[derive(Clone, Copy)]
struct SharedOut<F>(*mut F);

// SAFETY: the tasks write disjoint elements (their own columns) and nothing reads them until the
// parallel loop has joined.
unsafe impl<F: Send> Send for SharedOut<F> {}
unsafe impl<F: Send> Sync for SharedOut<F> {}

impl<F> SharedOut<F> {
    /// The element at `offset` (a method, so closures capture the `Sync` wrapper, not the field).
    fn at(self, offset: usize) -> *mut F {
        // SAFETY: the callers pass offsets inside the allocation.
        unsafe { self.0.add(offset) }
    }
}

/// Gradients of [`sparse_linear_forward`]; `None` where not asked for.
pub struct LinearGrads<F> {
    /// `[N, in]`.
    pub input: Option<Vec<F>>,
    /// At the kept entries, in CSR order.
    pub weight_values: Option<Vec<F>>,
    /// `[out]`.
    pub bias: Option<Vec<F>>,
}

/// Input, weight (at the kept entries) and bias gradients from the output gradient `g`
/// (`[N, out]`), computing those with `need[i]` set (`[input, weight, bias]`).
pub fn sparse_linear_backward<F: Float>(
    pattern: &SparsePattern,
    values: &[F],
    xt: &BatchInner<F>,
    g: &[F],
    need: [bool; 3],
) -> LinearGrads<F> {
    let (out_f, in_f, ld, batch) = (pattern.rows(), pattern.cols(), xt.ld, xt.batch);
    assert_eq!(
        g.len(),
        batch * out_f,
        "sparse_linear: output gradient length"
    );
    let gt = (need[0] || need[1]).then(|| transpose_padded(g, batch, out_f, ld));
    let input = need[0].then(|| {
        let gt = gt.as_deref().expect("computed above");
        let tvalues = pattern.transposed_values(values);
        let rows = pattern.row_indices();
        let dxt = rows_of(in_f, ld, |c, row| {
            let k = pattern.col_range(c);
            gather_accumulate(&tvalues[k.clone()], &rows[k], ld, gt, 0, row);
        });
        transpose_back(&dxt, batch, in_f, ld)
    });
    let weight_values = need[1].then(|| {
        let gt = gt.as_deref().expect("computed above");
        let cols = pattern.col_indices();
        // Each block of ROW_BLOCK rows writes its own run of the CSR-ordered values.
        let mut dw = vec![F::zero(); pattern.nnz()];
        let mut blocks = Vec::with_capacity(out_f.div_ceil(ROW_BLOCK));
        let mut rest = &mut dw[..];
        for start in (0..out_f).step_by(ROW_BLOCK) {
            let rows = start..(start + ROW_BLOCK).min(out_f);
            let len = pattern.row_range(rows.end - 1).end - pattern.row_range(start).start;
            let (run, tail) = std::mem::take(&mut rest).split_at_mut(len);
            blocks.push((rows, run));
            rest = tail;
        }
        blocks.into_par_iter().for_each(|(rows, run)| {
            let first = pattern.row_range(rows.start).start;
            for o in rows {
                let k = pattern.row_range(o);
                let g_row = &gt[o * ld..(o + 1) * ld];
                let out = &mut run[k.start - first..k.end - first];
                dot_reduce(g_row, &cols[k], ld, &xt.data, 0, out);
            }
        });
        dw
    });
    let bias = need[2].then(|| {
        let mut db = vec![F::zero(); out_f];
        for row in g.chunks_exact(out_f.max(1)) {
            for (d, &v) in db.iter_mut().zip(row) {
                *d += v;
            }
        }
        db
    });
    LinearGrads {
        input,
        weight_values,
        bias,
    }
}
