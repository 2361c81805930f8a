//! Matrix transposes into and out of the sparse kernels' batch-innermost layout, and of GEMM
//! operands stored the other way round (`transpose_raw`, used by `packed_gemm`).
//!
//! A plain scalar transpose runs at about 2 cycles per element here (0.6-0.8 ns on the Xeon of
//! `docs/sparse.md`, 128 x 784 f32: 78 us), as slow as the 95%-sparse forward it feeds. For f32 on
//! AVX2 CPUs an 8 x 8 block is transposed in registers (8 loads, 24 shuffles, 8 stores), about 5x
//! faster; other types, CPUs and the ragged edges use the scalar loop. Both copy values exactly,
//! so the result never depends on the path.

use std::any::TypeId;
use std::mem::MaybeUninit;

use crate::float::Float;
use crate::kernels::parallel::par_chunks_written;

/// Rows of the output handled by one parallel task.
const BAND: usize = 64;

/// `x` (`rows x cols`, row-major) transposed into `cols x ld` (`ld >= rows`), zero beyond `rows`.
pub fn transpose_padded<F: Float>(x: &[F], rows: usize, cols: usize, ld: usize) -> Vec<F> {
    assert_eq!(x.len(), rows * cols, "transpose_padded: input length");
    assert!(ld >= rows, "transpose_padded: ld {ld} < rows {rows}");
    if rows == 0 || cols == 0 {
        return vec![F::zero(); cols * ld];
    }
    // Output band `b` holds output rows (input columns) b*BAND.. of every input row. Only the
    // padding columns are zeroed: zeroing the whole band before overwriting it was a tenth of
    // LeNet-300's 95%-sparse forward on 2 threads.
    let fill = |b: usize, band: &mut [MaybeUninit<F>]| {
        let c_len = band.len() / ld;
        // SAFETY: `band` holds `c_len` rows of `ld`; the block writes columns `0..rows` of each.
        unsafe {
            transpose_to_ptr(
                &x[b * BAND..],
                cols,
                rows,
                c_len,
                band.as_mut_ptr().cast(),
                ld,
            )
        };
        for row in band.chunks_exact_mut(ld) {
            for v in &mut row[rows..] {
                v.write(F::zero());
            }
        }
    };
    // SAFETY: `fill` writes every element of its band (columns `0..rows` above, the rest zero).
    unsafe { par_chunks_written(cols * ld, BAND * ld, fill).0 }
}

/// [`transpose_padded`] into a reused buffer, on the calling thread: `dst` becomes `x`
/// (`rows x cols`) transposed to `cols x ld`, zero beyond `rows`. Written in place of its old
/// contents, not zero-filled first (a fresh 784 x 64 buffer's zero fill was 5% of LeNet-300's
/// sparse inference on 2 threads).
pub fn transpose_into<F: Float>(x: &[F], rows: usize, cols: usize, dst: &mut Vec<F>, ld: usize) {
    assert_eq!(x.len(), rows * cols, "transpose_into: input length");
    assert!(ld >= rows, "transpose_into: ld {ld} < rows {rows}");
    let len = cols * ld;
    dst.clear();
    dst.reserve(len);
    let out = &mut dst.spare_capacity_mut()[..len];
    if rows > 0 {
        // SAFETY: `out` holds `cols` rows of `ld >= rows` (asserted above); the block writes
        // columns `0..rows` of each.
        unsafe { transpose_to_ptr(x, cols, rows, cols, out.as_mut_ptr().cast(), ld) };
    }
    for row in out.chunks_exact_mut(ld.max(1)) {
        for v in &mut row[rows..] {
            v.write(F::zero());
        }
    }
    // SAFETY: every element of `0..len` was written: columns `0..rows` by the transpose (none
    // when `rows` is 0), the rest by the loop above.
    unsafe { dst.set_len(len) };
}

/// The first `rows` columns of `xt` (`cols x ld`), transposed back to `rows x cols` row-major.
pub fn transpose_back<F: Float>(xt: &[F], rows: usize, cols: usize, ld: usize) -> Vec<F> {
    assert_eq!(xt.len(), cols * ld, "transpose_back: input length");
    if rows == 0 || cols == 0 {
        return vec![F::zero(); rows * cols];
    }
    let fill = |b: usize, band: &mut [MaybeUninit<F>]| {
        let r_len = band.len() / cols;
        // SAFETY: `band` holds rows `b*BAND..b*BAND + r_len` of the output, `cols` each, and
        // `xt` has those columns in each of its `cols` rows.
        unsafe {
            transpose_to_ptr(
                &xt[b * BAND..],
                ld,
                cols,
                r_len,
                band.as_mut_ptr().cast(),
                cols,
            )
        };
    };
    // SAFETY: `fill` writes every element of its band.
    unsafe { par_chunks_written(rows * cols, BAND * cols, fill).0 }
}

/// `dst[c * ld_dst + r] = src[r * ld_src + c]` for `r < rows`, `c < cols`, for any float type
/// (the f32 path is [`transpose_raw`], the others element by element). Exact copies.
///
/// # Safety
/// `src` must hold every `src[r * ld_src + c]` (checked), every `dst[c * ld_dst + r]` must be
/// writable, and no other thread may access those elements meanwhile.
pub(crate) unsafe fn transpose_to_ptr<F: Float>(
    src: &[F],
    ld_src: usize,
    rows: usize,
    cols: usize,
    dst: *mut F,
    ld_dst: usize,
) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!((rows - 1) * ld_src + cols <= src.len(), "transpose: source");
    if TypeId::of::<F>() == TypeId::of::<f32>() {
        // SAFETY: F is f32 (checked above); the source is in bounds (asserted above), the
        // destination is the caller's.
        unsafe {
            transpose_raw(
                src.as_ptr().cast::<f32>(),
                ld_src,
                rows,
                cols,
                dst.cast(),
                ld_dst,
            )
        };
        return;
    }
    for r in 0..rows {
        let row = &src[r * ld_src..][..cols];
        for (c, &v) in row.iter().enumerate() {
            // SAFETY: the caller's.
            unsafe { dst.add(c * ld_dst + r).write(v) };
        }
    }
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
