//! im2col and col2im for one NCHW image: the data movement that turns a 2-D convolution into a GEMM.
//!
//! A [`Window`] describes the sliding window per axis (`[height, width]`): kernel size `k`, stride
//! `s`, zero padding `p` and dilation `d`. Output position `o` with kernel tap `t` reads input
//! index `o*s + t*d - p` (PyTorch `Conv2d` semantics); indices outside `[0, in)` read zero.
//!
//! The column matrix has one row per (channel, tap) pair, `r = (c*kh + i)*kw + j`, and one column
//! per output position `q = oh*OW + ow` (row-major over the output plane). [`im2col`] fills
//! `cols[r, q] = x[c, oh*sh + i*dh - ph, ow*sw + j*dw - pw]`; [`col2im`] is its adjoint, adding each
//! `cols[r, q]` back onto the input element it was read from.
//!
//! Speed: for every (tap, output row) the range of output columns that reads inside the image is
//! computed once ([`Window::valid_outputs`]), so the inner loops are plain copies (stride 1) or
//! strided gathers with no per-element bounds branch, and padding is a `fill(0)` of the rest.

use std::ops::Range;

use crate::float::Float;

/// Geometry of a 2-D sliding window, per axis `[height, width]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub in_hw: [usize; 2],
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    /// `(in + 2p - d(k-1) - 1) / s + 1` per axis (PyTorch's output size, rounding down).
    pub out_hw: [usize; 2],
}

impl Window {
    /// The window, or `None` when a kernel, stride or dilation is zero or the dilated kernel
    /// `d(k-1) + 1` is larger than the padded input `in + 2p` on some axis.
    pub fn new(
        in_hw: [usize; 2],
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
    ) -> Option<Window> {
        let out_len = |a: usize| -> Option<usize> {
            if kernel[a] == 0 || stride[a] == 0 || dilation[a] == 0 {
                return None;
            }
            let span = dilation[a] * (kernel[a] - 1) + 1;
            let padded = in_hw[a] + 2 * padding[a];
            (padded >= span).then(|| (padded - span) / stride[a] + 1)
        };
        Some(Window {
            in_hw,
            kernel,
            stride,
            padding,
            dilation,
            out_hw: [out_len(0)?, out_len(1)?],
        })
    }

    /// Output positions per channel, `OH * OW`.
    pub fn positions(&self) -> usize {
        self.out_hw[0] * self.out_hw[1]
    }

    /// Kernel taps per channel, `kh * kw`.
    pub fn taps(&self) -> usize {
        self.kernel[0] * self.kernel[1]
    }

    /// Input elements per channel, `H * W`.
    pub fn in_plane(&self) -> usize {
        self.in_hw[0] * self.in_hw[1]
    }

    /// The outputs `o` along `axis` whose tap `tap` reads inside the input, i.e.
    /// `0 <= o*s + tap*d - p < in`. Always a contiguous range (possibly empty).
    pub fn valid_outputs(&self, axis: usize, tap: usize) -> Range<usize> {
        let (s, out) = (self.stride[axis], self.out_hw[axis]);
        let first_read = tap * self.dilation[axis]; // input index + p of output 0
        let pad = self.padding[axis];
        // o*s + first_read >= pad  <=>  o >= ceil((pad - first_read) / s)
        let lo = pad.saturating_sub(first_read).div_ceil(s);
        // o*s + first_read < in + pad  <=>  o < ceil((in + pad - first_read) / s)
        let hi = (self.in_hw[axis] + pad)
            .saturating_sub(first_read)
            .div_ceil(s)
            .min(out);
        lo.min(hi)..hi
    }

    /// Input index read by output `o` at tap `tap` along `axis`; only call for `o` in
    /// [`Window::valid_outputs`].
    fn input_index(&self, axis: usize, o: usize, tap: usize) -> usize {
        o * self.stride[axis] + tap * self.dilation[axis] - self.padding[axis]
    }
}

/// One output row's share of a range of output positions: output row `oh`, output columns
/// `ow` (within the row) and where they sit in the column block (`at`, relative to the range start).
struct RowSegment {
    oh: usize,
    ow: Range<usize>,
    at: usize,
}

/// Splits the flat output positions `positions` (`q = oh*OW + ow`) into per-row segments.
fn row_segments(out_w: usize, positions: Range<usize>) -> impl Iterator<Item = RowSegment> {
    let first_row = positions.start / out_w;
    let end_row = positions.end.div_ceil(out_w);
    (first_row..end_row).map(move |oh| {
        let start = positions.start.max(oh * out_w);
        let end = positions.end.min((oh + 1) * out_w);
        RowSegment {
            oh,
            ow: start - oh * out_w..end - oh * out_w,
            at: start - positions.start,
        }
    })
}

/// `a ∩ b` as a range (empty ranges start at `b.start` or later so slicing stays valid).
fn intersect(a: &Range<usize>, b: &Range<usize>) -> Range<usize> {
    let start = a.start.clamp(b.start, b.end);
    let end = a.end.clamp(start, b.end);
    start..end
}

fn check_sizes(
    win: &Window,
    x_len: usize,
    channels: usize,
    positions: &Range<usize>,
    cols_len: usize,
    ld: usize,
) {
    assert_eq!(
        x_len,
        channels * win.in_plane(),
        "im2col/col2im: image has {x_len} elements, expected {channels} x {:?}",
        win.in_hw
    );
    assert!(
        positions.start <= positions.end && positions.end <= win.positions(),
        "im2col/col2im: positions {positions:?} outside 0..{}",
        win.positions()
    );
    let rows = channels * win.taps();
    let width = positions.len();
    assert!(
        width <= ld && (rows == 0 || width == 0 || (rows - 1) * ld + width <= cols_len),
        "im2col/col2im: a {rows} x {width} column block with row stride {ld} does not fit in {cols_len} elements"
    );
}

/// Writes the columns of output positions `positions` of one image `x` (`[channels, H, W]`,
/// contiguous) into `cols`: element (r, q) goes to `cols[r*ld + q - positions.start]`.
/// Every element of the `channels*kh*kw` x `positions.len()` block is written (zeros for padding).
pub fn im2col<F: Float>(
    win: &Window,
    x: &[F],
    channels: usize,
    positions: Range<usize>,
    cols: &mut [F],
    ld: usize,
) {
    check_sizes(win, x.len(), channels, &positions, cols.len(), ld);
    if positions.is_empty() {
        return;
    }
    let [kh, kw] = win.kernel;
    let [_, in_w] = win.in_hw;
    let [_, sw] = win.stride;
    let width = positions.len();
    for (c, plane) in x
        .chunks_exact(win.in_plane().max(1))
        .enumerate()
        .take(channels)
    {
        for i in 0..kh {
            let valid_oh = win.valid_outputs(0, i);
            for j in 0..kw {
                let valid_ow = win.valid_outputs(1, j);
                let r = (c * kh + i) * kw + j;
                let row = &mut cols[r * ld..r * ld + width];
                for seg in row_segments(win.out_hw[1], positions.clone()) {
                    let dst = &mut row[seg.at..seg.at + seg.ow.len()];
                    if !valid_oh.contains(&seg.oh) {
                        dst.fill(F::zero());
                        continue;
                    }
                    let inside = intersect(&valid_ow, &seg.ow);
                    let (lo, hi) = (inside.start - seg.ow.start, inside.end - seg.ow.start);
                    dst[..lo].fill(F::zero());
                    dst[hi..].fill(F::zero());
                    if inside.is_empty() {
                        continue;
                    }
                    let ih = win.input_index(0, seg.oh, i);
                    let iw = win.input_index(1, inside.start, j);
                    let src = &plane[ih * in_w + iw..(ih + 1) * in_w];
                    let dst = &mut dst[lo..hi];
                    if sw == 1 {
                        dst.copy_from_slice(&src[..dst.len()]);
                    } else {
                        for (d, &s) in dst.iter_mut().zip(src.iter().step_by(sw)) {
                            *d = s;
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds every element of the column block (same layout) onto the input
/// element it was read from, `x[c, ih, iw] += cols[r, q]`; padding positions are dropped.
/// `x` is accumulated into, not overwritten.
pub fn col2im<F: Float>(
    win: &Window,
    cols: &[F],
    ld: usize,
    channels: usize,
    positions: Range<usize>,
    x: &mut [F],
) {
    check_sizes(win, x.len(), channels, &positions, cols.len(), ld);
    if positions.is_empty() {
        return;
    }
    let [kh, kw] = win.kernel;
    let [_, in_w] = win.in_hw;
    let [_, sw] = win.stride;
    let width = positions.len();
    for (c, plane) in x
        .chunks_exact_mut(win.in_plane().max(1))
        .enumerate()
        .take(channels)
    {
        for i in 0..kh {
            let valid_oh = win.valid_outputs(0, i);
            for j in 0..kw {
                let valid_ow = win.valid_outputs(1, j);
                let r = (c * kh + i) * kw + j;
                let row = &cols[r * ld..r * ld + width];
                for seg in row_segments(win.out_hw[1], positions.clone()) {
                    if !valid_oh.contains(&seg.oh) {
                        continue;
                    }
                    let inside = intersect(&valid_ow, &seg.ow);
                    if inside.is_empty() {
                        continue;
                    }
                    let src = &row[seg.at + inside.start - seg.ow.start..][..inside.len()];
                    let ih = win.input_index(0, seg.oh, i);
                    let iw = win.input_index(1, inside.start, j);
                    let dst = &mut plane[ih * in_w + iw..(ih + 1) * in_w];
                    if sw == 1 {
                        for (d, &s) in dst.iter_mut().zip(src) {
                            *d += s;
                        }
                    } else {
                        for (d, &s) in dst.iter_mut().step_by(sw).zip(src) {
                            *d += s;
                        }
                    }
                }
            }
        }
    }
}
