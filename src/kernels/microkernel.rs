//! f32 GEMM micro-kernels for x86-64: AVX-512 and AVX2+FMA, chosen once at run time from the
//! CPU's features (see `packed_gemm` for the blocking around them and the measured numbers).
//!
//! A micro-kernel multiplies one `mr x kc` panel of A by one `kc x nr` panel of B (packed, or
//! read in place when that saves a copy; see [`Panels`]),
//! holding the `mr x nr` tile of C in vector registers, and writes the tile to C once:
//! `C <- alpha * acc + beta * C` (C is not read when `beta == 0`). Packed layouts (see
//! `packed_gemm`): A panel element `(i, p)` at `a[p * mr + i]`, B panel element `(p, j)` at
//! `b[p * nr + j]`, with `nr` a whole number of vectors (B is zero-padded to it). Each C element
//! is a plain sequential sum over `p` (one FMA per `p`, in order): the result does not depend on
//! the tile shape or position, only on the instruction set (FMA rounds once per step).
//!
//! Tiles: AVX-512 holds up to 8 rows x 3 vectors of 16 (24 of the 32 zmm registers), AVX2 up to
//! 6 rows x 2 vectors of 8 (12 of the 16 ymm registers). Edge tiles use the same code with fewer
//! rows or vectors (const generics), so no tile is padded in M and at most one vector in N.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Which vector instruction set the kernels use on this CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512F: 16 f32 lanes, 32 registers.
    Avx512,
    /// AVX2 with FMA: 8 f32 lanes, 16 registers.
    Avx2,
}

impl Isa {
    /// The best instruction set this CPU supports, or `None` (then `matrixmultiply` is used).
    pub fn detect() -> Option<Isa> {
        #[cfg(target_arch = "x86_64")]
        {
            if std::env::var_os("SPARSEGRAD_GEMM").is_some_and(|v| v == "portable") {
                return None;
            }
            if is_x86_feature_detected!("avx512f") {
                return Some(Isa::Avx512);
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Some(Isa::Avx2);
            }
        }
        None
    }

    /// f32 lanes per vector.
    pub fn lanes(self) -> usize {
        match self {
            Isa::Avx512 => 16,
            Isa::Avx2 => 8,
        }
    }

    /// Largest tile: rows (MR) and vectors per row (NR / lanes).
    pub fn max_tile(self) -> (usize, usize) {
        match self {
            Isa::Avx512 => (8, 3),
            Isa::Avx2 => (6, 2),
        }
    }
}

/// One tile's output: where it goes in C and how to combine.
#[derive(Clone, Copy)]
pub struct TileOut {
    pub c: *mut f32,
    pub rsc: isize,
    pub csc: isize,
    /// Valid rows and columns of the tile (the rest is padding and is not written).
    pub rows: usize,
    pub cols: usize,
    pub alpha: f32,
    pub beta: f32,
}

/// Where a kernel reads its A and B panels: element `(i, p)` of A at `a + i * a_rs + p * a_cs`,
/// row `p` of B (whole vectors) at `b + p * b_rs`. Packed panels have `a_rs = 1, a_cs = mr` and
/// `b_rs` = the panel width; an operand read in place has its own strides. The kernels of a
/// [`Rows`] table read one operand's rows at their own offsets instead.
#[derive(Clone, Copy)]
pub struct Panels {
    pub a: *const f32,
    pub a_rs: isize,
    pub a_cs: isize,
    pub b: *const f32,
    pub b_rs: isize,
    /// [`Rows::TableA`]: row `i` of A at `a + a_rows[i]` (columns contiguous); else unused.
    pub a_rows: *const isize,
    /// [`Rows::TableB`]: row `p` of B at `b + b_rows[p]` (`kc` offsets); else unused.
    pub b_rows: *const isize,
}

/// How a kernel finds the rows of its operands. The tables serve the shifted rows of a
/// zero-padded image, which make a stride-1 convolution a GEMM without an im2col matrix
/// (`shift_conv`): B's rows in the forward pass, A's in the weight gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rows {
    /// Fixed strides (packed panels, or matrices read in place).
    Strided,
    /// B's rows at `b_rows` offsets.
    TableB,
    /// A's rows at `a_rows` offsets.
    TableA,
}

/// [`Rows`] as the kernels' const parameter.
const STRIDED: u8 = 0;
const TABLE_B: u8 = 1;
const TABLE_A: u8 = 2;

/// A micro-kernel: `(kc, panels, out)`.
pub type Kernel = unsafe fn(usize, &Panels, &TileOut);

/// The kernel for a tile of `rows` rows and `vecs` vectors on `isa` (`rows <= MR`, `vecs <= NV`).
pub fn kernel(isa: Isa, rows: usize, vecs: usize, tables: Rows) -> Kernel {
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! table {
            ($f:ident, $t:ident; $($r:literal),*; $($v:literal),*) => {
                table!(@rows $f, $t; [$($v),*]; $($r),*)
            };
            (@rows $f:ident, $t:ident; $vs:tt; $($r:literal),*) => {
                [$(table!(@vecs $f, $t; $r; $vs)),*]
            };
            (@vecs $f:ident, $t:ident; $r:literal; [$($v:literal),*]) => {
                [$($f::<$r, $v, $t> as Kernel),*]
            };
        }
        match (isa, tables) {
            (Isa::Avx512, Rows::Strided) => {
                const K: [[Kernel; 3]; 8] =
                    table!(avx512, STRIDED; 1, 2, 3, 4, 5, 6, 7, 8; 1, 2, 3);
                K[rows - 1][vecs - 1]
            }
            (Isa::Avx512, Rows::TableB) => {
                const K: [[Kernel; 3]; 8] =
                    table!(avx512, TABLE_B; 1, 2, 3, 4, 5, 6, 7, 8; 1, 2, 3);
                K[rows - 1][vecs - 1]
            }
            (Isa::Avx512, Rows::TableA) => {
                const K: [[Kernel; 3]; 8] =
                    table!(avx512, TABLE_A; 1, 2, 3, 4, 5, 6, 7, 8; 1, 2, 3);
                K[rows - 1][vecs - 1]
            }
            (Isa::Avx2, Rows::Strided) => {
                const K: [[Kernel; 2]; 6] = table!(avx2, STRIDED; 1, 2, 3, 4, 5, 6; 1, 2);
                K[rows - 1][vecs - 1]
            }
            (Isa::Avx2, Rows::TableB) => {
                const K: [[Kernel; 2]; 6] = table!(avx2, TABLE_B; 1, 2, 3, 4, 5, 6; 1, 2);
                K[rows - 1][vecs - 1]
            }
            (Isa::Avx2, Rows::TableA) => {
                const K: [[Kernel; 2]; 6] = table!(avx2, TABLE_A; 1, 2, 3, 4, 5, 6; 1, 2);
                K[rows - 1][vecs - 1]
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (isa, rows, vecs, tables);
        unreachable!("no SIMD kernels on this architecture")
    }
}

/// Writes a finished tile held in `acc` (row-major, `nr` wide) to C, element by element: the
/// path for edge tiles and non-unit column strides.
#[inline(always)]
unsafe fn store_scalar(acc: &[f32], nr: usize, out: &TileOut) {
    for i in 0..out.rows {
        for j in 0..out.cols {
            // SAFETY: (i, j) is inside the valid part of the tile, which lies inside C.
            unsafe {
                let c = out.c.offset(i as isize * out.rsc + j as isize * out.csc);
                let v = out.alpha * acc[i * nr + j];
                // Fused, as the vector path, so an element rounds the same in every tile.
                *c = if out.beta == 0.0 {
                    v
                } else {
                    out.beta.mul_add(*c, v)
                };
            }
        }
    }
}

/// AVX-512 tile of `R` rows x `V` vectors of 16.
///
/// # Safety
/// AVX-512F must be available; the panels must hold `kc` steps; `out` must describe a valid
/// region of C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512<const R: usize, const V: usize, const ROWS: u8>(
    kc: usize,
    panels: &Panels,
    out: &TileOut,
) {
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    let (mut a, mut b) = (panels.a, panels.b);
    let (a_rs, a_cs, b_rs) = (panels.a_rs, panels.a_cs, panels.b_rs);
    // SAFETY: a TableA kernel gets R row offsets inside A.
    let a_row: [*const f32; R] = if ROWS == TABLE_A {
        std::array::from_fn(|i| unsafe { panels.a.offset(*panels.a_rows.add(i)) })
    } else {
        [a; R]
    };
    for p in 0..kc {
        // SAFETY: each step reads R values of A and 16 V values of B inside the panels (for a
        // table, at the caller's row offsets).
        unsafe {
            let row = if ROWS == TABLE_B {
                panels.b.offset(*panels.b_rows.add(p))
            } else {
                b
            };
            let mut bv = [_mm512_setzero_ps(); V];
            for (v, bv) in bv.iter_mut().enumerate() {
                *bv = _mm512_loadu_ps(row.add(16 * v));
            }
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = _mm512_set1_ps(if ROWS == TABLE_A {
                    *a_row[i].add(p)
                } else {
                    *a.offset(i as isize * a_rs)
                });
                for (acc, &bv) in row.iter_mut().zip(&bv) {
                    *acc = _mm512_fmadd_ps(ai, bv, *acc);
                }
            }
            if ROWS != TABLE_A {
                a = a.offset(a_cs);
            }
            if ROWS != TABLE_B {
                b = b.offset(b_rs);
            }
        }
    }
    let full = out.csc == 1 && out.cols > 16 * (V - 1);
    if !full {
        let mut buf = [[0.0f32; 48]; 8];
        for (i, row) in acc.iter().enumerate() {
            for (v, &x) in row.iter().enumerate() {
                // SAFETY: 16 lanes at 16 v < 48.
                unsafe { _mm512_storeu_ps(buf[i].as_mut_ptr().add(16 * v), x) };
            }
        }
        if out.rsc == 1 {
            // SAFETY: forwarded.
            unsafe { store_transposed(&buf, out) };
        } else {
            // SAFETY: forwarded.
            unsafe { store_scalar(buf.as_flattened(), 48, out) };
        }
        return;
    }
    // Unit column stride and only the last vector may be partial: masked vector stores.
    let tail = out.cols - 16 * (V - 1);
    let last_mask: __mmask16 = if tail >= 16 {
        0xffff
    } else {
        (1u16 << tail) - 1
    };
    let alpha = _mm512_set1_ps(out.alpha);
    let beta = _mm512_set1_ps(out.beta);
    for (i, row) in acc.iter().enumerate().take(out.rows) {
        // SAFETY: row i < rows and the masked columns are inside the tile.
        unsafe {
            let c = out.c.offset(i as isize * out.rsc);
            for (v, &x) in row.iter().enumerate() {
                let mask = if v + 1 == V { last_mask } else { 0xffff };
                let p = c.add(16 * v);
                let mut y = _mm512_mul_ps(alpha, x);
                if out.beta != 0.0 {
                    y = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(mask, p), y);
                }
                _mm512_mask_storeu_ps(p, mask, y);
            }
        }
    }
}

/// Writes a finished AVX-512 tile (in `buf`, row-major, 48 wide) to a C whose rows are
/// contiguous in memory (`rsc == 1`, a transposed product such as `packed_gemm`'s `C^T = B^T
/// A^T`): one tile column is then up to 8 consecutive elements of C, read from `buf` with one
/// gather and written with one masked store, instead of one scalar store per element. Each
/// element is computed as in [`store_scalar`] (`beta * c + alpha * acc`, fused), so the bits are
/// the same.
///
/// # Safety
/// AVX-512F must be available and `out` must describe a valid region of C with `rsc == 1`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn store_transposed(buf: &[[f32; 48]; 8], out: &TileOut) {
    let rows: __mmask16 = (1u16 << out.rows) - 1;
    // Offsets of column 0's rows in `buf`.
    let down = _mm512_setr_epi32(0, 48, 96, 144, 192, 240, 288, 336, 0, 0, 0, 0, 0, 0, 0, 0);
    let alpha = _mm512_set1_ps(out.alpha);
    let beta = _mm512_set1_ps(out.beta);
    let base = buf.as_flattened().as_ptr();
    for j in 0..out.cols {
        // SAFETY: buf holds 8 x 48 values and j < 48; column j of the tile lies inside C.
        unsafe {
            let x = _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), rows, down, base.add(j));
            let p = out.c.offset(j as isize * out.csc);
            let mut y = _mm512_mul_ps(alpha, x);
            if out.beta != 0.0 {
                y = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(rows, p), y);
            }
            _mm512_mask_storeu_ps(p, rows, y);
        }
    }
}

/// AVX2 tile of `R` rows x `V` vectors of 8.
///
/// # Safety
/// AVX2 and FMA must be available; otherwise as [`avx512`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2<const R: usize, const V: usize, const ROWS: u8>(
    kc: usize,
    panels: &Panels,
    out: &TileOut,
) {
    let mut acc = [[_mm256_setzero_ps(); V]; R];
    let (mut a, mut b) = (panels.a, panels.b);
    let (a_rs, a_cs, b_rs) = (panels.a_rs, panels.a_cs, panels.b_rs);
    // SAFETY: a TableA kernel gets R row offsets inside A.
    let a_row: [*const f32; R] = if ROWS == TABLE_A {
        std::array::from_fn(|i| unsafe { panels.a.offset(*panels.a_rows.add(i)) })
    } else {
        [a; R]
    };
    for p in 0..kc {
        // SAFETY: as in `avx512`.
        unsafe {
            let row = if ROWS == TABLE_B {
                panels.b.offset(*panels.b_rows.add(p))
            } else {
                b
            };
            let mut bv = [_mm256_setzero_ps(); V];
            for (v, bv) in bv.iter_mut().enumerate() {
                *bv = _mm256_loadu_ps(row.add(8 * v));
            }
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = _mm256_broadcast_ss(&*if ROWS == TABLE_A {
                    a_row[i].add(p)
                } else {
                    a.offset(i as isize * a_rs)
                });
                for (acc, &bv) in row.iter_mut().zip(&bv) {
                    *acc = _mm256_fmadd_ps(ai, bv, *acc);
                }
            }
            if ROWS != TABLE_A {
                a = a.offset(a_cs);
            }
            if ROWS != TABLE_B {
                b = b.offset(b_rs);
            }
        }
    }
    if out.csc == 1 && out.cols == 8 * V {
        let alpha = _mm256_set1_ps(out.alpha);
        let beta = _mm256_set1_ps(out.beta);
        for (i, row) in acc.iter().enumerate().take(out.rows) {
            // SAFETY: full-width rows inside the tile.
            unsafe {
                let c = out.c.offset(i as isize * out.rsc);
                for (v, &x) in row.iter().enumerate() {
                    let p = c.add(8 * v);
                    let mut y = _mm256_mul_ps(alpha, x);
                    if out.beta != 0.0 {
                        y = _mm256_fmadd_ps(beta, _mm256_loadu_ps(p), y);
                    }
                    _mm256_storeu_ps(p, y);
                }
            }
        }
        return;
    }
    let mut buf = [[0.0f32; 16]; 6];
    for (i, row) in acc.iter().enumerate() {
        for (v, &x) in row.iter().enumerate() {
            // SAFETY: 8 lanes at 8 v < 16.
            unsafe { _mm256_storeu_ps(buf[i].as_mut_ptr().add(8 * v), x) };
        }
    }
    // SAFETY: forwarded.
    unsafe { store_scalar(buf.as_flattened(), 16, out) };
}
