//! Max pooling over 2x2, stride-2, unpadded windows, the path `max_pool_plane` in `pool.rs`
//! takes for them.

#[cfg(target_arch = "x86_64")]
use std::any::TypeId;

use crate::float::Float;
use crate::simd::{Kernel, widest};

/// `max_pool_plane` for the 2x2, stride-2, unpadded windows of LeNet-style pools, as a
/// tournament (explicit AVX-512 for f32 where the CPU has it, else compiled for the CPU's widest
/// vectors by `simd`): first each column pair of a window (top against bottom), then the two
/// column winners. Picking "the larger value, on a
/// tie the earlier element; any NaN over any number, of two NaNs the later" is associative and
/// gives what the scan of `max_pool_plane_any` gives, bits and arg-max (property-tested
/// in `pool.rs`). One plane of width `w` (at least `2 wo`), `wo` outputs per row, as many rows
/// as `y` holds. The arg-max is written only when `arg` is given (it is only needed for the
/// gradient); the values are the same either way.
pub(crate) fn max_pool_plane_2x2<F: Float>(
    w: usize,
    wo: usize,
    x: &[F],
    y: &mut [F],
    arg: Option<&mut [u32]>,
) {
    #[cfg(target_arch = "x86_64")]
    if TypeId::of::<F>() == TypeId::of::<f32>() && std::arch::is_x86_feature_detected!("avx512f") {
        let rows = y.len() / wo.max(1);
        assert!(
            x.len() >= 2 * rows * w && w >= 2 * wo,
            "max_pool_plane_2x2: plane size"
        );
        assert!(arg.as_ref().is_none_or(|a| a.len() == y.len()));
        // SAFETY: F is f32 (checked above), so the casts are identities; AVX-512F detected; the
        // sizes are checked above.
        unsafe {
            let x = std::slice::from_raw_parts(x.as_ptr().cast::<f32>(), x.len());
            let y = std::slice::from_raw_parts_mut(y.as_mut_ptr().cast::<f32>(), y.len());
            match arg {
                Some(arg) => avx512::plane_f32(w, wo, x, y, Some(arg)),
                None => avx512::values_f32(w, wo, x, y),
            }
        }
        return;
    }
    max_pool_plane_2x2_portable(w, wo, x, y, arg);
}

/// [`max_pool_plane_2x2`] without the explicit AVX-512 path (any element type and CPU).
pub(super) fn max_pool_plane_2x2_portable<F: Float>(
    w: usize,
    wo: usize,
    x: &[F],
    y: &mut [F],
    arg: Option<&mut [u32]>,
) {
    match arg {
        Some(arg) => widest(MaxPool2x2::<F, true> { w, wo, x, y, arg }),
        None => widest(MaxPool2x2::<F, false> {
            w,
            wo,
            x,
            y,
            arg: &mut [],
        }),
    }
}

/// One plane of [`max_pool_plane_2x2`], writing the arg-max when `ARG`.
struct MaxPool2x2<'a, F, const ARG: bool> {
    w: usize,
    wo: usize,
    x: &'a [F],
    y: &'a mut [F],
    arg: &'a mut [u32],
}

/// The winner of one window column, top `t` (at `t_at`) against bottom `b` (at `t_at + w`): the
/// bottom element wins only as a NaN or when strictly greater than a top that is not NaN (it
/// comes later in the scan).
#[inline(always)]
fn column_winner<F: Float>(t: F, b: F, t_at: u32, w: u32) -> (F, u32) {
    let bottom_wins = b.is_nan() | (!t.is_nan() & (b > t));
    (
        if bottom_wins { b } else { t },
        t_at + if bottom_wins { w } else { 0 },
    )
}

impl<F: Float, const ARG: bool> Kernel for MaxPool2x2<'_, F, ARG> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let MaxPool2x2 { w, wo, x, y, arg } = self;
        let rows = y.len() / wo.max(1);
        for r in 0..rows {
            let top_at = 2 * r * w;
            let (top, bottom) = (&x[top_at..][..2 * wo], &x[top_at + w..][..2 * wo]);
            let y = &mut y[r * wo..][..wo];
            let arg = if ARG {
                &mut arg[r * wo..][..wo]
            } else {
                &mut [][..]
            };
            for o in 0..wo {
                let c = 2 * o;
                let at = (top_at + c) as u32;
                let (p, p_at) = column_winner(top[c], bottom[c], at, w as u32);
                let (q, q_at) = column_winner(top[c + 1], bottom[c + 1], at + 1, w as u32);
                // Left winner against right winner, either of which may come first in the
                // scan. `&` and `|`, not `&&` and `||`: selects, not mispredicted branches (the
                // compiler still leaves this step scalar, hence the explicit AVX-512 path).
                let (p_nan, q_nan) = (p.is_nan(), q.is_nan());
                let q_wins = (q_nan & (!p_nan | (q_at > p_at)))
                    | (!p_nan & !q_nan & ((q > p) | ((q == p) & (q_at < p_at))));
                y[o] = if q_wins { q } else { p };
                if ARG {
                    arg[o] = if q_wins { q_at } else { p_at };
                }
            }
        }
    }
}

/// The 2x2 tournament on f32 with explicit AVX-512 (the compiler does not vectorise the
/// de-interleaving of column winners into left and right): per row of up to 16 outputs, two
/// vectors of columns, top against bottom lane by lane, then the even lanes (left columns)
/// against the odd lanes (right columns). The comparisons are those of [`column_winner`] and
/// `MaxPool2x2::run`, so the values and arg-maxes are the same bits.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// Column winners of 16 columns starting at `top` (the bottom row at `top + w`), masked to
    /// `lanes`, as values and flat indices (`at` is the index of the first top element).
    ///
    /// # Safety
    /// AVX-512F; the masked lanes of both rows must be inside the plane.
    #[inline(always)]
    unsafe fn column_winners(
        top: *const f32,
        w: usize,
        lanes: __mmask16,
        at: __m512i,
        wv: __m512i,
    ) -> (__m512, __m512i) {
        // SAFETY: forwarded (masked loads read only the given lanes).
        unsafe {
            let t = _mm512_maskz_loadu_ps(lanes, top);
            let b = _mm512_maskz_loadu_ps(lanes, top.add(w));
            let b_nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(b, b);
            let t_ord = _mm512_cmp_ps_mask::<_CMP_ORD_Q>(t, t);
            let b_gt = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(b, t);
            let bottom_wins = b_nan | (t_ord & b_gt);
            (
                _mm512_mask_blend_ps(bottom_wins, t, b),
                _mm512_mask_add_epi32(at, bottom_wins, at, wv),
            )
        }
    }

    /// `q` (later in the scan) against `p`: `q` wins as a NaN or when strictly greater than a
    /// `p` that is not NaN (`q > p` is false against a NaN `p`), as in [`super::column_winner`].
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn later_wins(p: __m512, q: __m512) -> __m512 {
        let q_nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(q, q);
        let q_gt = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(q, p);
        _mm512_mask_blend_ps(q_nan | q_gt, p, q)
    }

    /// The even and odd columns of 32 (masked to `lo`, `hi`) starting at `p`.
    ///
    /// # Safety
    /// AVX-512F; the masked lanes must be readable.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn split_columns(
        p: *const f32,
        lo: __mmask16,
        hi: __mmask16,
        even: __m512i,
        odd: __m512i,
    ) -> (__m512, __m512) {
        // SAFETY: forwarded.
        let (a, b) = unsafe {
            (
                _mm512_maskz_loadu_ps(lo, p),
                _mm512_maskz_loadu_ps(hi, p.add(16)),
            )
        };
        (
            _mm512_permutex2var_ps(a, even, b),
            _mm512_permutex2var_ps(a, odd, b),
        )
    }

    /// [`plane_f32`] without the arg-max (inference): the values only, as a left fold over each
    /// window in scan order (top-left, top-right, bottom-left, bottom-right) of [`later_wins`],
    /// which needs no positions: the rule is the scan's, so the bits are those of the
    /// tournament. A third of the instructions of the tournament with positions, which was a
    /// quarter of the 95%-sparse LeNet-5 forward on 2 threads.
    ///
    /// # Safety
    /// As [`plane_f32`].
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn values_f32(w: usize, wo: usize, x: &[f32], y: &mut [f32]) {
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
        let mask = |n: usize| -> __mmask16 { if n >= 16 { 0xffff } else { (1u16 << n) - 1 } };
        let rows = y.len() / wo.max(1);
        for r in 0..rows {
            for o in (0..wo).step_by(16) {
                let n = (wo - o).min(16);
                let (lo, hi) = (mask(2 * n), mask((2 * n).saturating_sub(16)));
                // SAFETY: columns 2o .. 2(o + n) of rows 2r and 2r + 1 are inside the plane
                // (2 (o + n) <= 2 wo <= w); the loads are masked to them.
                let split =
                    |at: usize| unsafe { split_columns(x.as_ptr().add(at), lo, hi, even, odd) };
                let top_at = 2 * r * w + 2 * o;
                let (t0, t1) = split(top_at);
                let (b0, b1) = split(top_at + w);
                let v = later_wins(later_wins(later_wins(t0, t1), b0), b1);
                // SAFETY: outputs r wo + o .. + n are inside y.
                unsafe { _mm512_mask_storeu_ps(y.as_mut_ptr().add(r * wo + o), mask(n), v) };
            }
        }
    }

    /// # Safety
    /// AVX-512F; `x` holds `2 * rows * w` elements with `w >= 2 * wo`, `y` (and `arg`) `rows *
    /// wo`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn plane_f32(
        w: usize,
        wo: usize,
        x: &[f32],
        y: &mut [f32],
        mut arg: Option<&mut [u32]>,
    ) {
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
        let lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let wv = _mm512_set1_epi32(w as i32);
        let mask = |n: usize| -> __mmask16 { if n >= 16 { 0xffff } else { (1u16 << n) - 1 } };
        let rows = y.len() / wo.max(1);
        for r in 0..rows {
            let top_at = 2 * r * w;
            for o in (0..wo).step_by(16) {
                let n = (wo - o).min(16);
                let c = top_at + 2 * o;
                let at = _mm512_add_epi32(_mm512_set1_epi32(c as i32), lane);
                // SAFETY: columns c .. c + 2n of both rows are inside the plane (2 (o + n) <=
                // 2 wo <= w); the loads are masked to them.
                let ((v0, a0), (v1, a1)) = unsafe {
                    let p = x.as_ptr().add(c);
                    let hi_at = _mm512_add_epi32(at, _mm512_set1_epi32(16));
                    (
                        column_winners(p, w, mask(2 * n), at, wv),
                        column_winners(p.add(16), w, mask((2 * n).saturating_sub(16)), hi_at, wv),
                    )
                };
                let (p, q) = (
                    _mm512_permutex2var_ps(v0, even, v1),
                    _mm512_permutex2var_ps(v0, odd, v1),
                );
                let (p_at, q_at) = (
                    _mm512_permutex2var_epi32(a0, even, a1),
                    _mm512_permutex2var_epi32(a0, odd, a1),
                );
                let p_nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(p, p);
                let q_nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(q, q);
                let q_later = _mm512_cmpgt_epu32_mask(q_at, p_at);
                let q_earlier = _mm512_cmplt_epu32_mask(q_at, p_at);
                let q_gt = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(q, p);
                let q_eq = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(q, p);
                let q_wins =
                    (q_nan & (!p_nan | q_later)) | (!p_nan & !q_nan & (q_gt | (q_eq & q_earlier)));
                let out = mask(n);
                let at = r * wo + o;
                // SAFETY: outputs at .. at + n are inside y (and arg).
                unsafe {
                    _mm512_mask_storeu_ps(
                        y.as_mut_ptr().add(at),
                        out,
                        _mm512_mask_blend_ps(q_wins, p, q),
                    );
                    if let Some(arg) = arg.as_deref_mut() {
                        _mm512_mask_storeu_epi32(
                            arg.as_mut_ptr().add(at).cast(),
                            out,
                            _mm512_mask_blend_epi32(q_wins, p_at, q_at),
                        );
                    }
                }
            }
        }
    }
}
