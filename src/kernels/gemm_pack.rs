//! Packing of GEMM operands into the panels the micro-kernels read (see `packed_gemm`).

use crate::kernels::im2col::copy_short;
use crate::kernels::packed_gemm::Strided;
use crate::kernels::transpose::transpose_raw;

/// Packs rows `i0 .. i0 + mc`, columns `p0 .. p0 + kc` of A into panels of `mr` rows (the last
/// may be shorter): panel `r` starts at `r * mr * kc`, element `(i, p)` of a panel of height `h`
/// at `p * h + i`.
///
/// # Safety
/// The block must lie inside A; `dst` must hold `mc * kc` elements.
pub(crate) unsafe fn pack_a(
    a: Strided,
    i0: usize,
    mc: usize,
    p0: usize,
    kc: usize,
    mr: usize,
    dst: &mut [f32],
) {
    for ir in (0..mc).step_by(mr) {
        let h = mr.min(mc - ir);
        let panel = &mut dst[ir * kc..ir * kc + h * kc];
        if a.rs == 1 {
            // Columns contiguous (a transposed view): h consecutive elements per step.
            for (p, step) in panel.chunks_exact_mut(h).enumerate() {
                // SAFETY: column p0 + p, rows i0 + ir .. + h are inside A.
                let src = unsafe { std::slice::from_raw_parts(a.at(i0 + ir, p0 + p), h) };
                // Not `copy_from_slice`: a `memmove` call per step of 8 floats was a third of
                // a weight-gradient GEMM (64 x 8192 x 576).
                copy_short(step, src);
            }
        } else if a.cs == 1 && a.rs > 0 {
            // Rows contiguous: the panel is the h x kc block transposed.
            // SAFETY: rows i0 + ir .. + h, columns p0 .. + kc are inside A; the panel holds
            // kc steps of h.
            unsafe {
                transpose_raw(
                    a.at(i0 + ir, p0),
                    a.rs as usize,
                    h,
                    kc,
                    panel.as_mut_ptr(),
                    h,
                )
            };
        } else {
            // One pass over the h rows side by side (each read in order).
            for (p, step) in panel.chunks_exact_mut(h).enumerate() {
                for (i, d) in step.iter_mut().enumerate() {
                    // SAFETY: inside the block.
                    *d = unsafe { *a.at(i0 + ir + i, p0 + p) };
                }
            }
        }
    }
}

/// Packs rows `p0 .. p0 + kc`, columns `j0 .. j0 + nc` of B into panels `nr` columns wide (the
/// last one as many whole vectors as it needs): panel starting at column `jr` is at `jr * kc`,
/// element `(p, j)` at `p * w + j` with `w` the panel's padded width; padding is zero.
///
/// # Safety
/// The block must lie inside B; `dst` must hold `kc * nc.next_multiple_of(lanes)` elements.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn pack_b(
    b: Strided,
    p0: usize,
    kc: usize,
    j0: usize,
    nc: usize,
    nr: usize,
    lanes: usize,
    dst: &mut [f32],
) {
    for jr in (0..nc).step_by(nr) {
        let cols = nr.min(nc - jr);
        let w = cols.next_multiple_of(lanes);
        let panel = &mut dst[jr * kc..jr * kc + w * kc];
        if b.cs == 1 {
            for (p, step) in panel.chunks_exact_mut(w).enumerate() {
                // SAFETY: row p0 + p, columns j0 + jr .. + cols are inside B.
                let src = unsafe { std::slice::from_raw_parts(b.at(p0 + p, j0 + jr), cols) };
                copy_short(&mut step[..cols], src);
                if cols < w {
                    step[cols..].fill(0.0);
                }
            }
        } else {
            if cols < w {
                panel.fill(0.0);
            }
            if b.rs == 1 && b.cs > 0 {
                // Columns contiguous (a transposed view): the kc x cols block transposed.
                // SAFETY: rows p0 .. + kc, columns j0 + jr .. + cols are inside B; the panel
                // holds kc rows of w >= cols.
                let src = unsafe { b.at(p0, j0 + jr) };
                unsafe { transpose_raw(src, b.cs as usize, cols, kc, panel.as_mut_ptr(), w) };
                continue;
            }
            for (p, step) in panel.chunks_exact_mut(w).enumerate() {
                for (j, d) in step[..cols].iter_mut().enumerate() {
                    // SAFETY: inside the block.
                    *d = unsafe { *b.at(p0 + p, j0 + jr + j) };
                }
            }
        }
    }
}
