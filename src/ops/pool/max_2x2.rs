//! Max pooling over 2x2, stride-2, unpadded windows, the path `max_pool_plane` in `pool.rs`
//! takes for them.

use std::mem::MaybeUninit;

use crate::float::Float;
use crate::simd::{Kernel, widest};

/// `max_pool_plane` for the 2x2, stride-2, unpadded windows of LeNet-style pools, as a
/// tournament compiled for the CPU's widest vectors (`simd`): first each column pair of
/// a window (top against bottom), then the two column winners. Picking "the larger value, on a
/// tie the earlier element; any NaN over any number, of two NaNs the later" is associative and
/// gives what the scan of `max_pool_plane_any` gives, bits and arg-max (property-tested
/// in `pool.rs`). One plane of width `w` (at least `2 wo`), `wo` outputs per row, as many rows
/// as `y` holds; only for planes that [`fits`].
pub(super) fn max_pool_plane_2x2<F: Float>(
    w: usize,
    wo: usize,
    x: &[F],
    y: &mut [F],
    arg: &mut [u32],
) {
    assert!(fits(wo), "max_pool_plane_2x2: {wo} outputs per row");
    widest(MaxPool2x2 { w, wo, x, y, arg });
}

/// Whether rows of `wo` outputs fit the stack buffer of column winners (planes up to 512 wide).
pub(super) fn fits(wo: usize) -> bool {
    2 * wo <= BAND
}

/// Column winners held at once (on the stack) by [`max_pool_plane_2x2`].
const BAND: usize = 512;

/// `&[MaybeUninit<T>]` as `&[T]`.
///
/// # Safety
/// Every element must be initialised.
unsafe fn slice_assume_init<T>(s: &[MaybeUninit<T>]) -> &[T] {
    // SAFETY: `MaybeUninit<T>` has `T`'s layout; the caller guarantees initialisation.
    unsafe { &*(s as *const [MaybeUninit<T>] as *const [T]) }
}

/// One plane of [`max_pool_plane_2x2`].
struct MaxPool2x2<'a, F> {
    w: usize,
    wo: usize,
    x: &'a [F],
    y: &'a mut [F],
    arg: &'a mut [u32],
}

impl<F: Float> Kernel for MaxPool2x2<'_, F> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let MaxPool2x2 { w, wo, x, y, arg } = self;
        let pair = 2 * wo; // input columns a row of windows reads
        let band_rows = BAND / pair.max(1);
        // Uninitialised (zeroing 4 KiB per plane measured 6% of a sparse LeNet-5 forward): a
        // band's column winners are all written before the second pass reads them.
        let mut value = [const { MaybeUninit::<F>::uninit() }; BAND];
        let mut at = [const { MaybeUninit::<u32>::uninit() }; BAND];
        let rows = y.len() / wo.max(1);
        for first_row in (0..rows).step_by(band_rows.max(1)) {
            let band = band_rows.min(rows - first_row);
            // Top against bottom: the bottom element wins only as a NaN or when strictly greater
            // than a top that is not NaN (it comes later in the scan).
            for r in 0..band {
                let top_at = 2 * (first_row + r) * w;
                let (top, bottom) = (&x[top_at..top_at + pair], &x[top_at + w..top_at + w + pair]);
                let (value, at) = (&mut value[r * pair..][..pair], &mut at[r * pair..][..pair]);
                for c in 0..pair {
                    let (t, b) = (top[c], bottom[c]);
                    let bottom_wins = b.is_nan() | (!t.is_nan() & (b > t));
                    value[c].write(if bottom_wins { b } else { t });
                    at[c].write((top_at + c) as u32 + if bottom_wins { w as u32 } else { 0 });
                }
            }
            // Left winner against right winner, either of which may come first in the scan.
            let outputs = band * wo;
            let out = first_row * wo;
            let (y, arg) = (&mut y[out..out + outputs], &mut arg[out..out + outputs]);
            // SAFETY: the first pass wrote elements 0 .. band * pair = 2 * outputs.
            let (value, at) = unsafe {
                (
                    slice_assume_init(&value[..2 * outputs]),
                    slice_assume_init(&at[..2 * outputs]),
                )
            };
            for o in 0..outputs {
                let (p, p_at, q, q_at) = (value[2 * o], at[2 * o], value[2 * o + 1], at[2 * o + 1]);
                let (p_nan, q_nan) = (p.is_nan(), q.is_nan());
                // `&` and `|`, not `&&` and `||`: no branches, so the loop vectorises.
                let q_wins = (q_nan & (!p_nan | (q_at > p_at)))
                    | (!p_nan & !q_nan & ((q > p) | ((q == p) & (q_at < p_at))));
                y[o] = if q_wins { q } else { p };
                arg[o] = if q_wins { q_at } else { p_at };
            }
        }
    }
}
