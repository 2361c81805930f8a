//! Single-threaded packed f32 GEMM (the BLIS loop structure) around the `microkernel` tiles.
//!
//! `C <- alpha * A B + beta * C` for strided A (`m x k`), B (`k x n`) and C. B is packed in
//! blocks of `KC` x `NC` into panels `nr` columns wide (`p`-major, zero-padded to whole
//! vectors), A in blocks of `MC` x `KC` into panels of `mr` rows; every pair of panels is one
//! micro-kernel call. Packing makes every operand layout (row-major, transposed view) run the
//! same fast kernel, and turns the strided reads into one pass per block.
//!
//! Summation order: element `C[i, j]` is `sum_p A[i, p] B[p, j]` accumulated in order `p = 0, 1,
//! ...` with one FMA per step inside each `KC` block, and the blocks added onto C in order. That
//! order depends only on `k` (never on `m`, `n`, the tile an element falls in, or a split of C
//! over threads), so splitting C over threads is bit-identical to running it whole, and AVX-512
//! and AVX2 give identical bits too (both fuse every multiply-add).

use std::cell::RefCell;
use std::sync::OnceLock;

use crate::kernels::gemm_pack::{pack_a, pack_b};
use crate::kernels::microkernel::{Isa, Panels, Rows, TileOut, kernel};

/// Depth of one packed block (the `p` extent a micro-kernel runs over before writing C).
/// A 256 x 48 B panel (48 KiB) streams from L2 with the A panel in L1.
pub const KC: usize = 256;
/// Rows of A packed at once (a multiple of both kernels' row counts, 8 and 6).
const MC: usize = 144;
/// Columns of B packed at once (a multiple of 48 and 16): a KC x NC block is 1.5 MiB, in L2.
const NC: usize = 1536;
/// An operand is read in place instead of packed when the other operand's extent (the number of
/// times each of its elements is used) is at most this: packing would cost about as much as
/// the multiply-adds it serves (ResNet-20's 16-channel convolutions: M = 16 for the forward
/// GEMM, N = 16 for the transposed weight gradient).
const DIRECT_MAX_REUSE: usize = 64;
/// B is read in place only when its rows span at most this many elements (1 MiB).
const DIRECT_MAX_B: usize = 1 << 18;
/// ...or, for a product with at most `SMALL_OUTPUT` elements of C (a weight gradient's K chunk:
/// `gemm` splits K exactly when the output is this small), at most this many (4 MiB). Reading
/// B in place there skips a packing pass that streams the whole column matrix from memory:
/// ResNet-20's weight-gradient shapes, AMD EPYC Zen 4, alternated runs, 1 / 2 threads: 32@16
/// (B spans 1024 x 288) 11.3-11.8 -> 9.6-10.3 ms and 5.8-6.2 -> 4.9-5.6 ms; 64@8 (1024 x 576)
/// 8.5-9.1 -> 7.6-8.6 ms and 4.3-4.5 -> 3.7-4.2 ms. Raising `DIRECT_MAX_B` itself instead made
/// the ResNet-20 step slower (its stride-2 im2col forwards, with large outputs, then read B in
/// place).
const SMALL_OUTPUT_MAX_B: usize = 1 << 20;
/// See `SMALL_OUTPUT_MAX_B`; also `gemm`'s bound for splitting K (so every K chunk qualifies).
pub(crate) const SMALL_OUTPUT: usize = 64 * 1024;

/// The instruction set the packed kernels use on this CPU, detected once (`None`: no SIMD
/// kernel, callers fall back to `matrixmultiply`).
pub fn isa() -> Option<Isa> {
    static ISA: OnceLock<Option<Isa>> = OnceLock::new();
    *ISA.get_or_init(Isa::detect)
}

/// A strided read-only matrix: element `(i, j)` at `ptr + i * rs + j * cs`.
#[derive(Clone, Copy, Debug)]
pub struct Strided {
    pub ptr: *const f32,
    pub rs: isize,
    pub cs: isize,
}

impl Strided {
    /// # Safety
    /// `(i, j)` must be inside the matrix.
    #[inline(always)]
    pub(crate) unsafe fn at(&self, i: usize, j: usize) -> *const f32 {
        // SAFETY: forwarded.
        unsafe { self.ptr.offset(i as isize * self.rs + j as isize * self.cs) }
    }
}

/// A reusable 64-byte-aligned scratch buffer.
#[derive(Default)]
struct Scratch {
    buf: Vec<f32>,
}

impl Scratch {
    fn get(&mut self, len: usize) -> &mut [f32] {
        if self.buf.len() < len + 16 {
            self.buf = vec![0.0; len + 16];
        }
        let skip = self.buf.as_ptr().align_offset(64).min(15);
        &mut self.buf[skip..skip + len]
    }
}

thread_local! {
    static PACKED_A: RefCell<Scratch> = RefCell::default();
    static PACKED_B: RefCell<Scratch> = RefCell::default();
}

/// `C <- alpha * A B + beta * C` on one thread with the packed kernels of `isa`.
///
/// # Safety
/// `a` (`m x k`), `b` (`k x n`) and `c` (`m x n`, strides `rsc`, `csc`) must be valid, `c` must
/// not alias `a` or `b`, and `isa` must be supported by the CPU. `k >= 1`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm(
    isa: Isa,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: Strided,
    b: Strided,
    beta: f32,
    c: *mut f32,
    rsc: isize,
    csc: isize,
) {
    if b.rs == 1 && b.cs != 1 && n > m && m <= DIRECT_MAX_REUSE {
        // B is stored K-contiguous (a transposed view) and is the larger operand, used by few
        // rows of A: packing it would cost about as much as the multiply-adds it serves (a
        // long-K weight gradient). Compute C^T = B^T A^T instead, where B^T is read in place
        // (measured on ResNet-20's weight gradients, 16x8192x144: 0.7x -> 1.0x of
        // matrixmultiply). With many rows (LeNet-300's `x W^T` at batch 128) B is packed with
        // 8 x 8 transposes, and C is stored along its rows rather than transposed.
        let t = |x: Strided| Strided {
            ptr: x.ptr,
            rs: x.cs,
            cs: x.rs,
        };
        // SAFETY: the same matrices, transposed.
        return unsafe { sgemm(isa, n, k, m, alpha, t(b), t(a), beta, c, csc, rsc) };
    }
    let (a, b) = (Operand::Strided(a), Operand::Strided(b));
    // SAFETY: forwarded.
    unsafe { sgemm_operands(isa, m, k, n, alpha, a, b, beta, c, rsc, csc) }
}

/// A GEMM operand: a strided matrix, or the shifted rows of a zero-padded image (`shift_conv`),
/// row `r` being contiguous elements at `base + offsets[r]`. A shifted operand is read in place,
/// never packed.
#[derive(Clone, Copy)]
pub enum Operand<'a> {
    Strided(Strided),
    Shifted {
        base: *const f32,
        offsets: &'a [isize],
    },
}

/// `C <- alpha * A B + beta * C` with the BLIS loops of the module documentation; at most one
/// operand shifted. [`sgemm`] is this with strided operands (after choosing the orientation).
///
/// # Safety
/// As [`sgemm`]. A shifted A has `m` offsets and each row is readable for `k` elements; a
/// shifted B has `k` offsets and each row is readable for `n` rounded up to a whole number of
/// vectors of `isa` (the last panel loads whole vectors; the extra columns are not stored).
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_operands(
    isa: Isa,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: Operand<'_>,
    b: Operand<'_>,
    beta: f32,
    c: *mut f32,
    rsc: isize,
    csc: isize,
) {
    let strided = |x: Operand| match x {
        Operand::Strided(x) => Some(x),
        Operand::Shifted { .. } => None,
    };
    let (strided_a, strided_b) = (strided(a), strided(b));
    assert!(
        strided_a.is_some() || strided_b.is_some(),
        "sgemm: at most one shifted operand"
    );
    let (mr, nv) = isa.max_tile();
    let lanes = isa.lanes();
    let nr = nv * lanes;
    // An operand used by few tiles of the other is read in place (see `DIRECT_MAX_REUSE`).
    let direct_a = strided_a.is_none_or(|a| a.cs == 1 && n <= DIRECT_MAX_REUSE);
    // B in place only while it is cache-sized (an im2col tile): a large B read in place costs
    // TLB misses and cache-set conflicts at every row (measured 0.6x on 16x144x8192).
    let direct_b = strided_b.is_none_or(|b| {
        let span = k * b.rs.unsigned_abs();
        b.cs == 1
            && m <= DIRECT_MAX_REUSE
            && (span <= DIRECT_MAX_B || (m * n <= SMALL_OUTPUT && span <= SMALL_OUTPUT_MAX_B))
    });
    PACKED_B.with_borrow_mut(|pb| {
        PACKED_A.with_borrow_mut(|pa| {
            let bp = pb.get(KC * NC.min(n.next_multiple_of(lanes)));
            let ap = pa.get(if direct_a { 0 } else { KC * MC.min(m) });
            for jc in (0..n).step_by(NC) {
                let nc = NC.min(n - jc);
                // The last panel, when it is not a whole number of vectors: packed (zero-padded)
                // even when B is read in place, so no vector load runs past B's last row.
                let ragged = strided_b.is_some() && (nc % nr).next_multiple_of(lanes) != nc % nr;
                let last_jr = nc - nc % nr;
                for pc in (0..k).step_by(KC) {
                    let kc = KC.min(k - pc);
                    // SAFETY: the block lies inside B; bp holds kc x (nc rounded up to lanes).
                    unsafe {
                        if let Some(b) = strided_b.filter(|_| !direct_b) {
                            pack_b(b, pc, kc, jc, nc, nr, lanes, bp);
                        } else if let Some(b) = strided_b.filter(|_| ragged) {
                            let edge = &mut bp[last_jr * kc..];
                            pack_b(b, pc, kc, jc + last_jr, nc - last_jr, nr, lanes, edge);
                        }
                    }
                    let beta = if pc == 0 { beta } else { 1.0 };
                    for ic in (0..m).step_by(MC) {
                        let mc = MC.min(m - ic);
                        if let Some(a) = strided_a.filter(|_| !direct_a) {
                            // SAFETY: the block lies inside A; ap holds mc x kc.
                            unsafe { pack_a(a, ic, mc, pc, kc, mr, ap) };
                        }
                        let tile = |ir: usize, jr: usize| {
                            let rows = mr.min(mc - ir);
                            let none = std::ptr::null();
                            let (a_panel, a_rs, a_cs, a_rows) = match a {
                                // SAFETY: column pc of each of the rows is readable.
                                Operand::Shifted { base, offsets } => {
                                    let rows = offsets[ic + ir..].as_ptr();
                                    (unsafe { base.add(pc) }, 0, 1, rows)
                                }
                                // SAFETY: (ic + ir, pc) is inside A.
                                Operand::Strided(a) if direct_a => {
                                    (unsafe { a.at(ic + ir, pc) }, a.rs, 1, none)
                                }
                                Operand::Strided(_) => {
                                    (ap[ir * kc..].as_ptr(), 1, rows as isize, none)
                                }
                            };
                            let cols = nr.min(nc - jr);
                            let (b_panel, b_rs, b_rows) = match b {
                                // SAFETY: column jc + jr of every row is readable.
                                Operand::Shifted { base, offsets } => {
                                    let rows = offsets[pc..].as_ptr();
                                    (unsafe { base.add(jc + jr) }, 0, rows)
                                }
                                // SAFETY: (pc, jc + jr) is inside B.
                                Operand::Strided(b) if direct_b && !(ragged && jr == last_jr) => {
                                    (unsafe { b.at(pc, jc + jr) }, b.rs, none)
                                }
                                Operand::Strided(_) => {
                                    let w = cols.next_multiple_of(lanes) as isize;
                                    (bp[jr * kc..].as_ptr(), w, none)
                                }
                            };
                            let tables = match (strided_a, strided_b) {
                                (None, _) => Rows::TableA,
                                (_, None) => Rows::TableB,
                                _ => Rows::Strided,
                            };
                            let panels = Panels {
                                a: a_panel,
                                a_rs,
                                a_cs,
                                b: b_panel,
                                b_rs,
                                a_rows,
                                b_rows,
                            };
                            let out = TileOut {
                                // SAFETY: (ic + ir, jc + jr) is inside C.
                                c: unsafe {
                                    c.offset((ic + ir) as isize * rsc + (jc + jr) as isize * csc)
                                },
                                rsc,
                                csc,
                                rows,
                                cols,
                                alpha,
                                beta,
                            };
                            let micro = kernel(isa, rows, cols.div_ceil(lanes), tables);
                            // SAFETY: the panels hold kc steps; the tile is inside C; the
                            // kernel's ISA was detected on this CPU.
                            unsafe { micro(kc, &panels, &out) };
                        };
                        // B read in place (few rows of A use it): each B panel (kc x nr rows
                        // of B, strided or shifted) outer, fetched once and reused from L1 by
                        // every A panel of the block. ResNet-20's weight gradients, AMD EPYC
                        // Zen 4, alternated runs, 1 / 2 threads, ms: 32@16 10.0-10.5 -> 8.6-9.3
                        // and 5.1-5.8 -> 4.5-4.7; 64@8 7.4-7.8 -> 6.9-7.1 and 4.3-4.6 -> 3.7;
                        // the 1-thread step about 2% faster. A packed B: an A panel (mr x kc,
                        // L1) outer, B panels (L2) inner, C written along its rows. (The order
                        // of the tiles never changes a sum: each is a whole kc block.)
                        if direct_b {
                            for jr in (0..nc).step_by(nr) {
                                for ir in (0..mc).step_by(mr) {
                                    tile(ir, jr);
                                }
                            }
                        } else {
                            for ir in (0..mc).step_by(mr) {
                                for jr in (0..nc).step_by(nr) {
                                    tile(ir, jr);
                                }
                            }
                        }
                    }
                }
            }
        })
    });
}

#[cfg(test)]
#[path = "packed_gemm_tests.rs"]
pub(crate) mod tests;
