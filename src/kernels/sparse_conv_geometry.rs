//! Where everything lives in the phase-plane layout of `sparse_conv` (see its module
//! documentation): plane sizes, the run offset of each nonzero, and the copies between NCHW and
//! phase planes.

use std::mem::MaybeUninit;

use crate::float::Float;
use crate::kernels::sparse_conv::SparseConvShape;
use crate::kernels::sparse_micro::round_up_lanes;
use crate::kernels::sparse_pattern::SparsePattern;

/// Where everything lives in the phase-plane layout (see the module documentation).
pub(crate) struct Geometry {
    pub(crate) shape: SparseConvShape,
    pub(crate) out_hw: [usize; 2],
    /// Phase plane size `[Hq, Wq]`.
    pub(crate) q_hw: [usize; 2],
    /// Elements per phase plane, rounded up to `sparse_micro::LANES`.
    pub(crate) plane: usize,
    /// Phase planes per image (`C_in * sh * sw`).
    pub(crate) planes: usize,
    /// Output positions on the `Wq`-wide grid (`OH * Wq`), rounded up to `sparse_micro::LANES`.
    pub(crate) grid: usize,
    /// Elements of one image's phase planes, with room for the last run past the end.
    pub(crate) image: usize,
    /// Leading zeros before each output-gradient plane in the input-gradient gather.
    pub(crate) front: usize,
    /// Elements per output-gradient plane in that gather.
    pub(crate) g_plane: usize,
}

impl Geometry {
    pub(crate) fn new(shape: &SparseConvShape) -> Geometry {
        let out_hw = shape
            .out_hw()
            .unwrap_or_else(|| panic!("sparse conv: invalid shape {shape:?}"));
        let [sh, sw] = shape.stride;
        let q_hw = [
            (shape.in_hw[0] + 2 * shape.padding[0]).div_ceil(sh),
            (shape.in_hw[1] + 2 * shape.padding[1]).div_ceil(sw),
        ];
        let plane = round_up_lanes(q_hw[0] * q_hw[1]);
        let planes = shape.in_channels * sh * sw;
        let grid = round_up_lanes(out_hw[0] * q_hw[1]);
        let max_shift = shape.dilation[0] * (shape.kernel[0] - 1) / sh * q_hw[1]
            + shape.dilation[1] * (shape.kernel[1] - 1) / sw;
        Geometry {
            shape: *shape,
            out_hw,
            q_hw,
            plane,
            planes,
            grid,
            image: planes * plane + grid,
            front: max_shift,
            g_plane: max_shift + plane.max(grid),
        }
    }

    /// Phase plane read by tap `(i, j)` of input channel `cin`, and the shift within it.
    pub(crate) fn tap(&self, cin: usize, i: usize, j: usize) -> (usize, usize) {
        let s = &self.shape;
        let (di, dj) = (i * s.dilation[0], j * s.dilation[1]);
        let plane = (cin * s.stride[0] + di % s.stride[0]) * s.stride[1] + dj % s.stride[1];
        (plane, di / s.stride[0] * self.q_hw[1] + dj / s.stride[1])
    }

    /// Absolute input channel, tap row and column of column `col` of output channel `o`'s row.
    pub(crate) fn column(&self, o: usize, col: usize) -> (usize, usize, usize) {
        let s = &self.shape;
        let taps = s.kernel[0] * s.kernel[1];
        let cin_g = s.in_channels / s.groups;
        let group = o / (s.out_channels / s.groups);
        let tap = col % taps;
        (
            group * cin_g + col / taps,
            tap / s.kernel[1],
            tap % s.kernel[1],
        )
    }

    /// Each entry's offset into an image's phase planes (CSR order).
    pub(crate) fn forward_offsets(&self, pattern: &SparsePattern) -> Vec<u32> {
        let cols = pattern.col_indices();
        let mut out = Vec::with_capacity(pattern.nnz());
        for o in 0..pattern.rows() {
            for &col in &cols[pattern.row_range(o)] {
                let (cin, i, j) = self.column(o, col as usize);
                let (plane, shift) = self.tap(cin, i, j);
                out.push(offset_u32(plane * self.plane + shift));
            }
        }
        out
    }

    /// Index in an image's phase planes of input element `(c, h, w)`.
    pub(crate) fn phase_index(&self, c: usize, h: usize, w: usize) -> usize {
        let s = &self.shape;
        let (hp, wp) = (h + s.padding[0], w + s.padding[1]);
        let plane = (c * s.stride[0] + hp % s.stride[0]) * s.stride[1] + wp % s.stride[1];
        plane * self.plane + hp / s.stride[0] * self.q_hw[1] + wp / s.stride[1]
    }

    /// Writes image `x` (`[C, H, W]`) into `p` as phase planes (the padding stays zero).
    pub(crate) fn fill_planes<F: Float>(&self, x: &[F], p: &mut [F]) {
        let [h, w] = self.shape.in_hw;
        for (c, channel) in x.chunks_exact(h * w).enumerate() {
            for (r, row) in channel.chunks_exact(w).enumerate() {
                if self.shape.stride[1] == 1 {
                    let at = self.phase_index(c, r, 0);
                    p[at..at + w].copy_from_slice(row);
                } else {
                    for (col, &v) in row.iter().enumerate() {
                        p[self.phase_index(c, r, col)] = v;
                    }
                }
            }
        }
    }
}

impl Geometry {
    /// The inverse of [`Geometry::fill_planes`]: image `x` (`[C, H, W]`) read from phase planes.
    /// `x` may be uninitialised: every element is written (so the input gradient needs no zero
    /// fill first).
    pub(crate) fn read_planes<F: Float>(&self, p: &[F], x: &mut [MaybeUninit<F>]) {
        let [h, w] = self.shape.in_hw;
        for (c, channel) in x.chunks_exact_mut(h * w).enumerate() {
            for (r, row) in channel.chunks_exact_mut(w).enumerate() {
                if self.shape.stride[1] == 1 {
                    let at = self.phase_index(c, r, 0);
                    for (d, &s) in row.iter_mut().zip(&p[at..at + w]) {
                        d.write(s);
                    }
                } else {
                    for (col, v) in row.iter_mut().enumerate() {
                        v.write(p[self.phase_index(c, r, col)]);
                    }
                }
            }
        }
    }
}

pub(crate) fn offset_u32(x: usize) -> u32 {
    u32::try_from(x).expect("sparse conv: image too large for u32 offsets")
}
