//! Matrix transposes into and out of the sparse kernels' batch-innermost layout, and of GEMM
//! operands stored the other way round (`transpose_raw`, used by `packed_gemm`).
//!
//! A plain scalar transpose runs at about 2 cycles per element here (0.6-0.8 ns on the Xeon of
//! `docs/sparse.md`, 128 x 784 f32: 78 us), as slow as the 95%-sparse forward it feeds. For f32 on
//! AVX2 CPUs an 8 x 8 block is transposed in registers (8 loads, 24 shuffles, 8 stores), about 5x
//! faster; other types, CPUs and the ragged edges use the scalar loop. Both copy values exactly,
//! so the result never depends on the path.

use std::any::TypeId;

use crate::float::Float;
use crate::kernels::parallel::par_chunks_zeroed;

/// Rows of the output handled by one parallel task.
const BAND: usize = 64;

/// `x` (`rows x cols`, row-major) transposed into `cols x ld` (`ld >= rows`), zero beyond `rows`.
pub fn transpose_padded<F: Float>(x: &[F], rows: usize, cols: usize, ld: usize) -> Vec<F> {
    assert_eq!(x.len(), rows * cols, "transpose_padded: input length");
    assert!(ld >= rows, "transpose_padded: ld {ld} < rows {rows}");
    if rows == 0 || cols == 0 {
        return vec![F::zero(); cols * ld];
    }
    // Output band `b` holds output rows (input columns) b*BAND.. of every input row. Each band is
    // zeroed by the task that fills it (the padding columns must be zero): a serial zero fill of
    // the whole output was 5-7% of fc1's 98%-sparse forward+backward on 2 threads.
    par_chunks_zeroed(cols * ld, BAND * ld, |b, band| {
        let c0 = b * BAND;
        let c_len = band.len() / ld;
        transpose_block(x, cols, c0, c_len, 0, rows, band, ld);
    })
    .0
}

/// The first `rows` columns of `xt` (`cols x ld`), transposed back to `rows x cols` row-major.
pub fn transpose_back<F: Float>(xt: &[F], rows: usize, cols: usize, ld: usize) -> Vec<F> {
    assert_eq!(xt.len(), cols * ld, "transpose_back: input length");
    if rows == 0 || cols == 0 {
        return vec![F::zero(); rows * cols];
    }
    par_chunks_zeroed(rows * cols, BAND * cols, |b, band| {
        let r0 = b * BAND;
        let r_len = band.len() / cols;
        transpose_block(xt, ld, r0, r_len, 0, cols, band, cols);
    })
    .0
}

/// `dst[c * ld_dst + r] = src[r * ld_src + c0 + c]` for `c < c_len`, `r` in `r0..r1`.
#[allow(clippy::too_many_arguments)]
fn transpose_block<F: Float>(
    src: &[F],
    ld_src: usize,
    c0: usize,
    c_len: usize,
    r0: usize,
    r1: usize,
    dst: &mut [F],
    ld_dst: usize,
) {
    if c_len == 0 || r1 <= r0 {
        return;
    }
    if TypeId::of::<F>() == TypeId::of::<f32>() {
        // The whole block on both sides, checked once before the unchecked copies.
        assert!(
            (r1 - 1) * ld_src + c0 + c_len <= src.len(),
            "transpose: source"
        );
        assert!(
            (c_len - 1) * ld_dst + r1 <= dst.len(),
            "transpose: destination"
        );
        // SAFETY: F is f32 (checked above); the block is in bounds (asserted above) and `src`
        // and `dst` are distinct borrows.
        unsafe {
            transpose_raw(
                src.as_ptr().cast::<f32>().add(r0 * ld_src + c0),
                ld_src,
                r1 - r0,
                c_len,
                dst.as_mut_ptr().cast::<f32>().add(r0),
                ld_dst,
            )
        };
        return;
    }
    scalar(src, ld_src, c0, 0..c_len, r0..r1, dst, ld_dst);
}

/// `dst[c * ld_dst + r] = src[r * ld_src + c]` for `r < rows`, `c < cols`: a strided f32 block
/// transposed: the f32 path of the sparse kernels' transposes, and the packing of a GEMM operand
/// stored the other way round (`kernels::packed_gemm`).
/// 8 x 8 register blocks on AVX2 CPUs (measured on LeNet-300's `x W^T`: the element-by-element
/// gather it replaces was 9% of a training step), the ragged edges element by element; exact
/// copies either way.
///
/// # Safety
/// Every `src[r * ld_src + c]` must be readable and every `dst[c * ld_dst + r]` writable, and
/// the two must not overlap.
pub(crate) unsafe fn transpose_raw(
    src: *const f32,
    ld_src: usize,
    rows: usize,
    cols: usize,
    dst: *mut f32,
    ld_dst: usize,
) {
    let (mut rows8, mut cols8) = (0, 0);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        (rows8, cols8) = (rows / 8 * 8, cols / 8 * 8);
        for r in (0..rows8).step_by(8) {
            for c in (0..cols8).step_by(8) {
                // SAFETY: AVX2 detected; the block's 8 rows on both sides lie inside the
                // caller's ranges.
                unsafe {
                    avx2::transpose8x8(
                        src.add(r * ld_src + c),
                        ld_src,
                        dst.add(c * ld_dst + r),
                        ld_dst,
                    )
                };
            }
        }
    }
    // The ragged edges: columns past the last whole block of the block rows, then the rest.
    for r in 0..rows {
        let first = if r < rows8 { cols8 } else { 0 };
        for c in first..cols {
            // SAFETY: inside the caller's ranges.
            unsafe { *dst.add(c * ld_dst + r) = *src.add(r * ld_src + c) };
        }
    }
}

fn scalar<F: Float>(
    src: &[F],
    ld_src: usize,
    c0: usize,
    cols: std::ops::Range<usize>,
    rows: std::ops::Range<usize>,
    dst: &mut [F],
    ld_dst: usize,
) {
    for r in rows {
        let row = &src[r * ld_src + c0..];
        for c in cols.clone() {
            dst[c * ld_dst + r] = row[c];
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// Transposes the 8 x 8 block at `src` (row stride `ld_src`) into `dst` (row stride `ld_dst`).
    ///
    /// # Safety
    /// AVX2 must be available; 8 rows of 8 floats must be readable at `src` and writable at `dst`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn transpose8x8(src: *const f32, ld_src: usize, dst: *mut f32, ld_dst: usize) {
        // SAFETY: the caller guarantees the 8 rows at `src` and `dst`.
        unsafe {
            let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(src.add(i * ld_src)));
            // Interleave pairs of rows, then pairs of pairs, then swap 128-bit halves.
            let t0 = _mm256_unpacklo_ps(r[0], r[1]);
            let t1 = _mm256_unpackhi_ps(r[0], r[1]);
            let t2 = _mm256_unpacklo_ps(r[2], r[3]);
            let t3 = _mm256_unpackhi_ps(r[2], r[3]);
            let t4 = _mm256_unpacklo_ps(r[4], r[5]);
            let t5 = _mm256_unpackhi_ps(r[4], r[5]);
            let t6 = _mm256_unpacklo_ps(r[6], r[7]);
            let t7 = _mm256_unpackhi_ps(r[6], r[7]);
            let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            let out = [
                _mm256_permute2f128_ps::<0x20>(s0, s4),
                _mm256_permute2f128_ps::<0x20>(s1, s5),
                _mm256_permute2f128_ps::<0x20>(s2, s6),
                _mm256_permute2f128_ps::<0x20>(s3, s7),
                _mm256_permute2f128_ps::<0x31>(s0, s4),
                _mm256_permute2f128_ps::<0x31>(s1, s5),
                _mm256_permute2f128_ps::<0x31>(s2, s6),
                _mm256_permute2f128_ps::<0x31>(s3, s7),
            ];
            for (i, v) in out.into_iter().enumerate() {
                _mm256_storeu_ps(dst.add(i * ld_dst), v);
            }
        }
    }
}
