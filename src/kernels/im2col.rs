//! im2col and col2im for one NCHW image: the data movement that turns a 2-D convolution into a GEMM.
//!
//! A [`Window`] describes the sliding window per axis (`[height, width]`): kernel size `k`, stride
//! `s`, zero padding `p` and dilation `d`. Output position `o` with kernel tap `t` reads input
//! index `o*s + t*d - p` (PyTorch `Conv2d` semantics); indices outside `[0, in)` read zero.
//!
//! The column matrix has one row per (channel, tap) pair, `r = (c*kh + i)*kw + j`, and one column
//! per output position `q = oh*OW + ow` (row-major over the output plane). [`im2col`] fills
//! `cols[r, q] = x[c, oh*sh + i*dh - ph, ow*sw + j*dw - pw]`; [`col2im`] is its adjoint, adding each
//! `cols[r, q]` back onto the input element it was read from. Both work on a band of whole output
//! rows, so a GEMM tile can be part of an image.
//!
//! Speed: for every tap the output rows and columns that read inside the image are computed once
//! ([`Window::valid_outputs`]), so the inner loops are plain copies (stride 1) or strided gathers
//! with no per-element bounds branch, and padding is zero-filled around them. When an output row
//! is as wide as an input row and both strides are 1 (a "same" convolution such as 3x3 with
//! padding 1), a tap's whole band is one contiguous copy, after which the few entries that
//! wrapped around a row edge are set back to zero.

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

/// `a ∩ b` as a range (an empty result starts inside `b`, so slicing with it stays valid).
fn intersect(a: &Range<usize>, b: &Range<usize>) -> Range<usize> {
    let start = a.start.clamp(b.start, b.end);
    let end = a.end.clamp(start, b.end);
    start..end
}

fn check_sizes(
    win: &Window,
    x_len: usize,
    channels: usize,
    rows: &Range<usize>,
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
        rows.start <= rows.end && rows.end <= win.out_hw[0],
        "im2col/col2im: output rows {rows:?} outside 0..{}",
        win.out_hw[0]
    );
    let k = channels * win.taps();
    let width = rows.len() * win.out_hw[1];
    assert!(
        width <= ld && (k == 0 || width == 0 || (k - 1) * ld + width <= cols_len),
        "im2col/col2im: a {k} x {width} column block with row stride {ld} does not fit in {cols_len} elements"
    );
}

/// Where one kernel tap `(i, j)` reads, for a band of output rows; the same for every channel.
struct TapPlan {
    /// The band's output rows whose input row is inside the image, as offsets into the tap's
    /// band of columns (`(valid row - first row) * OW`); rows outside are all padding.
    valid: Range<usize>,
    /// Output columns whose input column is inside the image (`lo..hi`).
    lo: usize,
    hi: usize,
    /// Index in the input plane of the first valid element (row `valid.start`, column `lo`).
    src: usize,
}

/// The plans of all `kh * kw` taps in row-major tap order. Computed once per call so the
/// per-channel loops do no division.
fn tap_plans(win: &Window, rows: &Range<usize>) -> Vec<TapPlan> {
    let [kh, kw] = win.kernel;
    let [_, out_w] = win.out_hw;
    let mut plans = Vec::with_capacity(kh * kw);
    for i in 0..kh {
        let valid_rows = intersect(&win.valid_outputs(0, i), rows);
        for j in 0..kw {
            let cols = win.valid_outputs(1, j);
            let (lo, hi) = (cols.start, cols.end);
            let valid = if lo < hi {
                (valid_rows.start - rows.start) * out_w..(valid_rows.end - rows.start) * out_w
            } else {
                0..0 // no column reads inside: the whole band is padding
            };
            let src = if valid.is_empty() {
                0
            } else {
                win.input_index(0, valid_rows.start, i) * win.in_hw[1] + win.input_index(1, lo, j)
            };
            plans.push(TapPlan { valid, lo, hi, src });
        }
    }
    plans
}

/// Whether every tap's band is one contiguous run of the input plane: output rows as wide as
/// input rows and unit strides, so output (oh, ow) and input (oh + a, ow + b) advance together.
fn contiguous_taps(win: &Window) -> bool {
    win.stride == [1, 1] && win.out_hw[1] == win.in_hw[1]
}

/// Writes the columns of output rows `rows` (all `OW` positions of each) of one image `x`
/// (`[channels, H, W]`, contiguous) into `cols`: element (r, q) goes to
/// `cols[r*ld + q - rows.start*OW]`. Every element of the `channels*kh*kw` x `rows.len()*OW`
/// block is written (zeros for padding).
pub fn im2col<F: Float>(
    win: &Window,
    x: &[F],
    channels: usize,
    rows: Range<usize>,
    cols: &mut [F],
    ld: usize,
) {
    check_sizes(win, x.len(), channels, &rows, cols.len(), ld);
    let [_, in_w] = win.in_hw;
    let [_, out_w] = win.out_hw;
    let [sh, sw] = win.stride;
    let width = rows.len() * out_w;
    if width == 0 {
        return;
    }
    let plans = tap_plans(win, &rows);
    let contiguous = contiguous_taps(win);
    let mut r = 0;
    for plane in x.chunks_exact(win.in_plane()).take(channels) {
        for tap in &plans {
            let band = &mut cols[r * ld..r * ld + width];
            r += 1;
            let (lo, hi) = (tap.lo, tap.hi);
            band[..tap.valid.start].fill(F::zero());
            band[tap.valid.end..].fill(F::zero());
            let band = &mut band[tap.valid.clone()];
            if band.is_empty() {
                continue;
            }
            if contiguous {
                // One copy from the first valid element to the last; the entries in between
                // that belong to padding columns received neighbouring-row values: zero them.
                let len = band.len() - lo - (out_w - hi);
                band[lo..lo + len].copy_from_slice(&plane[tap.src..tap.src + len]);
                zero_padding_columns(band, out_w, lo, hi);
                continue;
            }
            for (k, row) in band.chunks_exact_mut(out_w).enumerate() {
                let src = &plane[tap.src + k * sh * in_w..];
                zero_edges(row, lo, hi);
                let row = &mut row[lo..hi];
                if sw == 1 {
                    copy_short(row, &src[..row.len()]);
                } else {
                    for (d, &s) in row.iter_mut().zip(src.iter().step_by(sw)) {
                        *d = s;
                    }
                }
            }
        }
    }
}

/// Sets columns `..lo` and `hi..` of every `out_w`-wide row of `band` to zero: one strided pass
/// per padding column (usually one or two), cheaper than visiting every row.
#[inline(always)]
fn zero_padding_columns<F: Float>(band: &mut [F], out_w: usize, lo: usize, hi: usize) {
    for col in (0..lo).chain(hi..out_w) {
        for v in band[col..].iter_mut().step_by(out_w) {
            *v = F::zero();
        }
    }
}

/// Sets `row[..lo]` and `row[hi..]` to zero (a few elements: a loop, not a `memset` call).
#[inline(always)]
fn zero_edges<F: Float>(row: &mut [F], lo: usize, hi: usize) {
    for v in &mut row[..lo] {
        *v = F::zero();
    }
    for v in &mut row[hi..] {
        *v = F::zero();
    }
}

/// `dst.copy_from_slice(src)` for short runs (an output row here, a packed GEMM step in
/// `packed_gemm`): in 8-element blocks, so a short run costs a few vector moves instead of a
/// `memcpy` call.
#[inline(always)]
pub(crate) fn copy_short<F: Float>(dst: &mut [F], src: &[F]) {
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (d, s) in (&mut d).zip(&mut s) {
        let s: &[F; 8] = s.try_into().expect("8 elements");
        let d: &mut [F; 8] = d.try_into().expect("8 elements");
        *d = *s;
    }
    for (d, &s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = s;
    }
}

/// `dst += src` elementwise for the short runs of one output row, in 8-element blocks (a
/// vectorised loop would be unrolled far past a typical row and run its scalar tail instead).
#[inline(always)]
fn add_short<F: Float>(dst: &mut [F], src: &[F]) {
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (d, s) in (&mut d).zip(&mut s) {
        let s: &[F; 8] = s.try_into().expect("8 elements");
        let d: &mut [F; 8] = d.try_into().expect("8 elements");
        for k in 0..8 {
            d[k] += s[k];
        }
    }
    for (d, &s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d += s;
    }
}

/// The adjoint of [`im2col`]: adds every element of the column block (same layout) onto the input
/// element it was read from, `x[c, ih, iw] += cols[r, q]`; padding positions are dropped.
/// `x` is accumulated into, not overwritten. `cols` is treated as scratch: its entries at padding
/// positions may be set to zero (so a "same" convolution's band can be added in one pass).
pub fn col2im<F: Float>(
    win: &Window,
    cols: &mut [F],
    ld: usize,
    channels: usize,
    rows: Range<usize>,
    x: &mut [F],
) {
    check_sizes(win, x.len(), channels, &rows, cols.len(), ld);
    let [_, in_w] = win.in_hw;
    let [_, out_w] = win.out_hw;
    let [sh, sw] = win.stride;
    let width = rows.len() * out_w;
    if width == 0 {
        return;
    }
    let plans = tap_plans(win, &rows);
    let contiguous = contiguous_taps(win);
    let mut r = 0;
    for plane in x.chunks_exact_mut(win.in_plane()).take(channels) {
        for tap in &plans {
            let band = &mut cols[r * ld..r * ld + width][tap.valid.clone()];
            r += 1;
            let (lo, hi) = (tap.lo, tap.hi);
            if band.is_empty() {
                continue;
            }
            if contiguous {
                // Zero the padding columns, then add the run from the first valid element to
                // the last in one pass (the zeros land on neighbouring-row elements, adding 0).
                zero_padding_columns(band, out_w, lo, hi);
                let len = band.len() - lo - (out_w - hi);
                for (d, &s) in plane[tap.src..tap.src + len]
                    .iter_mut()
                    .zip(&band[lo..lo + len])
                {
                    *d += s;
                }
                continue;
            }
            for (k, row) in band.chunks_exact(out_w).enumerate() {
                let dst = &mut plane[tap.src + k * sh * in_w..];
                let row = &row[lo..hi];
                if sw == 1 {
                    add_short(&mut dst[..row.len()], row);
                } else {
                    for (d, &s) in dst.iter_mut().step_by(sw).zip(row) {
                        *d += s;
                    }
                }
            }
        }
    }
}
