//! [`SparsePattern`]: where a weight's nonzeros are, in compressed sparse rows (CSR) and, for the
//! input-gradient kernels, compressed sparse columns (CSC) of the same matrix.
//!
//! A weight is seen as a `[rows, cols]` matrix: `[out, in]` for a linear layer, `[C_out,
//! C_in/groups * kh * kw]` for a convolution (its OIHW layout flattened after the first axis).
//! Entries are numbered in CSR order (row-major order of the kept entries), and values travel in
//! that order; [`SparsePattern::transposed_values`] reorders them for the CSC side.
//!
//! **Why CSR and not a constant fan-in (ELL) layout.** Masks here come from the method (magnitude
//! pruning, SNIP, RigL ...), so row lengths vary: a random 95% mask of LeNet-300's fc1 has rows of
//! 39 +- 6 nonzeros, up to about 60. ELL pads every row to the longest, wasting those FMAs; CSR
//! costs one extra index per row, which nothing measures (the kernels spend 8 vector FMAs per
//! nonzero). Measured with the `sparse` bench (`sparse_layout` group, f32, batch 128, forward of
//! fc1, 1 thread, interleaved on a loaded 2-core Xeon): CSR 0.69 ms vs ELL 1.18 ms at 90% (ELL
//! width 101 against a mean of 78), 0.38 vs 0.48 ms at 95% (width 54 against 39). A constant
//! fan-in mask is simply a CSR pattern with equal rows, so CSR loses nothing there.
//!
//! Indices are `u32` (half the memory traffic of `usize`); a pattern refuses more than
//! `u32::MAX` entries or columns.

use crate::float::Float;
use crate::kernels::parallel::{PARALLEL_CHUNK, par_chunks_zeroed, worth_splitting};

/// The kept entries of a `[rows, cols]` matrix. See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SparsePattern {
    rows: usize,
    cols: usize,
    /// Row `r`'s entries are `row_ptr[r]..row_ptr[r + 1]` (CSR).
    row_ptr: Vec<usize>,
    /// Column of each entry, in CSR order.
    col_idx: Vec<u32>,
    /// Column `c`'s entries are `col_ptr[c]..col_ptr[c + 1]` in the CSC arrays.
    col_ptr: Vec<usize>,
    /// Row of each CSC entry (rows ascending within a column).
    row_idx: Vec<u32>,
    /// CSR position of each CSC entry.
    csr_pos: Vec<u32>,
}

impl SparsePattern {
    /// The pattern of the nonzero entries of `mask`, a row-major `[rows, cols]` matrix (any
    /// nonzero counts as kept). Panics if `mask.len() != rows * cols` or a count exceeds `u32`.
    pub fn from_mask<F: Float>(rows: usize, cols: usize, mask: &[F]) -> SparsePattern {
        assert_eq!(
            mask.len(),
            rows * cols,
            "SparsePattern: mask of {} entries for a {rows} x {cols} matrix",
            mask.len()
        );
        assert!(
            u32::try_from(cols).is_ok() && u32::try_from(rows).is_ok(),
            "SparsePattern: {rows} x {cols} is too large for u32 indices"
        );
        let mut row_ptr = Vec::with_capacity(rows + 1);
        let mut col_idx = Vec::new();
        row_ptr.push(0);
        for row in mask.chunks_exact(cols.max(1)).take(rows) {
            col_idx.extend(
                row.iter()
                    .enumerate()
                    .filter(|&(_, &m)| m != F::zero())
                    .map(|(c, _)| c as u32),
            );
            row_ptr.push(col_idx.len());
        }
        row_ptr.resize(rows + 1, col_idx.len()); // cols == 0: every row is empty
        assert!(
            u32::try_from(col_idx.len()).is_ok(),
            "SparsePattern: too many entries for u32 positions"
        );
        // CSC by a counting sort over columns (stable: rows stay ascending).
        let mut col_ptr = vec![0usize; cols + 1];
        for &c in &col_idx {
            col_ptr[c as usize + 1] += 1;
        }
        for c in 0..cols {
            col_ptr[c + 1] += col_ptr[c];
        }
        let mut next = col_ptr.clone();
        let mut row_idx = vec![0u32; col_idx.len()];
        let mut csr_pos = vec![0u32; col_idx.len()];
        for r in 0..rows {
            for k in row_ptr[r]..row_ptr[r + 1] {
                let slot = &mut next[col_idx[k] as usize];
                row_idx[*slot] = r as u32;
                csr_pos[*slot] = k as u32;
                *slot += 1;
            }
        }
        SparsePattern {
            rows,
            cols,
            row_ptr,
            col_idx,
            col_ptr,
            row_idx,
            csr_pos,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Number of kept entries.
    pub fn nnz(&self) -> usize {
        self.col_idx.len()
    }

    /// Kept fraction of the entries (1 for an empty matrix).
    pub fn density(&self) -> f64 {
        let total = self.rows * self.cols;
        if total == 0 {
            1.0
        } else {
            self.nnz() as f64 / total as f64
        }
    }

    /// CSR positions of row `r`'s entries.
    pub fn row_range(&self, r: usize) -> std::ops::Range<usize> {
        self.row_ptr[r]..self.row_ptr[r + 1]
    }

    /// Columns of all entries in CSR order.
    pub fn col_indices(&self) -> &[u32] {
        &self.col_idx
    }

    /// CSC positions of column `c`'s entries.
    pub fn col_range(&self, c: usize) -> std::ops::Range<usize> {
        self.col_ptr[c]..self.col_ptr[c + 1]
    }

    /// Rows of all entries in CSC order.
    pub fn row_indices(&self) -> &[u32] {
        &self.row_idx
    }

    /// CSR position of each entry in CSC order.
    pub fn csr_positions(&self) -> &[u32] {
        &self.csr_pos
    }

    /// The kept entries of a row-major `[rows, cols]` matrix, in CSR order.
    pub fn gather<F: Float>(&self, dense: &[F]) -> Vec<F> {
        assert_eq!(dense.len(), self.rows * self.cols, "SparsePattern::gather");
        // Row by row over slices (a `flat_map` chain measured 6 ns per entry, most of a 95%
        // sparse fc1's forward besides the kernel itself).
        let mut values = Vec::with_capacity(self.nnz());
        for (r, row) in dense.chunks_exact(self.cols.max(1)).enumerate() {
            let cols = &self.col_idx[self.row_range(r)];
            values.extend(cols.iter().map(|&c| row[c as usize]));
        }
        values
    }

    /// The row-major `[rows, cols]` matrix holding `values` (CSR order) at the kept entries and
    /// +0.0 elsewhere.
    pub fn scatter<F: Float>(&self, values: &[F]) -> Vec<F> {
        assert_eq!(values.len(), self.nnz(), "SparsePattern::scatter");
        let len = self.rows * self.cols;
        let scatter_rows = |first: usize, part: &mut [F]| {
            for (i, row) in part.chunks_exact_mut(self.cols).enumerate() {
                for k in self.row_range(first + i) {
                    row[self.col_idx[k] as usize] = values[k];
                }
            }
        };
        if self.cols == 0 || !worth_splitting(len) {
            let mut dense = vec![F::zero(); len];
            scatter_rows(0, &mut dense);
            return dense;
        }
        // Large (fc1's 940 KB gradient): blocks of rows zeroed and filled in parallel; zeroing it
        // on the calling thread was 4% of fc1's 98%-sparse forward+backward on 2 threads.
        let block = (PARALLEL_CHUNK / self.cols).max(1);
        par_chunks_zeroed(len, block * self.cols, |b, part| {
            scatter_rows(b * block, part)
        })
        .0
    }

    /// `values` (CSR order) reordered to CSC order.
    pub fn transposed_values<F: Float>(&self, values: &[F]) -> Vec<F> {
        assert_eq!(values.len(), self.nnz(), "SparsePattern::transposed_values");
        self.csr_pos.iter().map(|&k| values[k as usize]).collect()
    }
}
