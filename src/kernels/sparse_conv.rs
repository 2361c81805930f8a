//! A 2-D convolution whose weight is kept only on a fixed [`SparsePattern`]: a direct sparse
//! convolution (no im2col), forward, input gradient, and weight gradient at the kept entries.
//!
//! **Layout: NCHW, vectorised over a padded output plane.** Per image, the zero-padded input is
//! split into `sh * sw` stride phases ("phase planes", `P[c, a, b][u, v] = xpad[c, u*sh + a,
//! v*sw + b]`, `Hq x Wq` each), which turns any stride into stride 1: tap `(i, j)` of channel `c`
//! reads plane `(c, (i*dh) % sh, (j*dw) % sw)` shifted by `((i*dh) / sh, (j*dw) / sw)`. Output
//! rows are then computed `Wq` wide (the last `Wq - OW` columns are junk and dropped), so that
//! output row-major position `q = oh*Wq + ow` of nonzero `k` reads `P[offset_k + q]`: one
//! contiguous run per nonzero over the whole output plane, the same `gather_accumulate` as the
//! linear layer with the plane (not the batch) as lanes:
//!
//! - forward:         `Y[o, q] = sum_{k in row o} w_k P[offset_k + q]`
//! - weight gradient: `dW_k = sum_images sum_q G[o, q] P[offset_k + q]` (junk columns of `G` are 0)
//! - input gradient:  `dP[plane, t] = sum_{k reading plane} w_k G[o_k, t - shift_k]`, the adjoint
//!   of the forward as a gather over a zero-margined `G` (`shift_k` = offset within the plane),
//!   then scattered back from phase planes to NCHW.
//!
//! **Why this layout (measured, `sparse` bench `sparse_layout` group, f32, batch 128, 95%
//! random, forward, 1 thread, pairs interleaved on a loaded 2-core Xeon).** SparseProp's main
//! layout puts the batch innermost (`[C, H, W, N]`), so every nonzero and output pixel is a
//! 128-lane AXPY; that needs the input and output transposed every call (and the output gradient
//! and input gradient in the backward), and its per-pixel 128-lane rows stream from L2. The
//! phase-plane layout keeps one image's planes in L1/L2 for all output channels, and its copy is
//! a row copy; its junk columns cost `Wq / OW - 1` (6% at 32x32, 25% at 8x8 with padding 1, 50%
//! for LeNet-5's unpadded 8x8). Batch-innermost / phase-plane forward time: LeNet-5 conv2 25.0 /
//! 4.9 ms, ResNet-20 16x16@32 130 / 39 ms, 32x32@16 60 / 18 ms, 64x64@8 18.9 / 13.6 ms (the
//! batch-innermost version in the bench shares the same inner loop, `gather_accumulate`).
//!
//! **Work split and determinism.** The forward and the input gradient are per image (images in
//! parallel, each element computed by one task). The weight and bias gradients are summed per
//! fixed chunk of images ([`BATCH_CHUNKS`], from the batch size only) in image order, and the
//! chunk sums are added in chunk order: bit-identical for every thread count. One task per chunk
//! computes all three gradients of its images, so each image's output gradient is copied onto its
//! planes once and read from cache by the three. (The bias gradient used to be a serial scalar
//! pass over the whole output gradient after the parallel part: 1.5 ms of the 4.4 ms 98%-sparse
//! 16@32 forward+backward on 2 threads of a Zen 4 EPYC.)

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::float::Float;
use crate::kernels::parallel::sum_in_order;
use crate::kernels::sparse_conv_geometry::{Geometry, offset_u32};
use crate::kernels::sparse_micro::{LANES, dot_accumulate, gather_accumulate, reduce_lanes};
use crate::kernels::sparse_pattern::SparsePattern;

/// The batch is split into at most this many chunks for the weight gradient.
pub const BATCH_CHUNKS: usize = 16;

/// Shapes and hyper-parameters of one sparse convolution (PyTorch `conv2d` semantics, per axis
/// `[height, width]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SparseConvShape {
    pub batch: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub groups: usize,
    pub in_hw: [usize; 2],
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
}

impl SparseConvShape {
    /// Output size `(in + 2p - d(k-1) - 1) / s + 1` per axis, or `None` if the kernel does not
    /// fit, a size is zero or the channels do not split into the groups.
    pub fn out_hw(&self) -> Option<[usize; 2]> {
        let ok = self.groups > 0
            && self.in_channels > 0
            && self.out_channels > 0
            && self.in_channels.is_multiple_of(self.groups)
            && self.out_channels.is_multiple_of(self.groups);
        let axis = |a: usize| {
            let span = self.dilation[a] * self.kernel[a].checked_sub(1)? + 1;
            let padded = self.in_hw[a] + 2 * self.padding[a];
            (self.stride[a] > 0 && self.dilation[a] > 0 && self.in_hw[a] > 0 && padded >= span)
                .then(|| (padded - span) / self.stride[a] + 1)
        };
        Some([axis(0)?, axis(1)?]).filter(|_| ok)
    }

    /// The pattern's matrix: `[C_out, C_in/groups * kh * kw]`.
    pub fn weight_matrix(&self) -> [usize; 2] {
        [
            self.out_channels,
            self.in_channels / self.groups * self.kernel[0] * self.kernel[1],
        ]
    }
}

/// `y = conv2d(x, W ⊙ M) + b` for NCHW `x` and the kept weights `values` (CSR order of
/// `pattern`, whose matrix is [`SparseConvShape::weight_matrix`]); returns NCHW `y`.
pub fn sparse_conv2d_forward<F: Float>(
    shape: &SparseConvShape,
    pattern: &SparsePattern,
    values: &[F],
    x: &[F],
    bias: Option<&[F]>,
) -> Vec<F> {
    let geo = Geometry::new(shape);
    let ([oh, ow], wq) = (geo.out_hw, geo.q_hw[1]);
    sparse_conv2d_forward_planes(shape, pattern, values, x, oh * ow, |o, full, _, y| {
        let b = bias.map_or(F::zero(), |b| b[o]);
        for (dst, src) in y.chunks_exact_mut(ow).zip(full.chunks(wq)) {
            for (d, &s) in dst.iter_mut().zip(src) {
                d.write(s + b);
            }
        }
    })
}

/// The forward convolution with output channel `o` of each image handed to `emit(o, full,
/// scratch, out)`: `full` on the `OH x Wq` grid (no bias, junk past `OW` in each row; `emit` may
/// overwrite it), `out` the `out_plane` elements `emit` must all write, `scratch` the task's.
/// Inference pools each plane this way while it is in cache (`ops::sparse_pool`).
pub fn sparse_conv2d_forward_planes<F: Float>(
    shape: &SparseConvShape,
    pattern: &SparsePattern,
    values: &[F],
    x: &[F],
    out_plane: usize,
    emit: impl Fn(usize, &mut [F], &mut Vec<F>, &mut [MaybeUninit<F>]) + Sync,
) -> Vec<F> {
    let geo = Geometry::new(shape);
    check(&geo, pattern, values, x);
    let in_image = shape.in_channels * shape.in_hw[0] * shape.in_hw[1];
    let out_image = shape.out_channels * out_plane;
    let offsets = geo.forward_offsets(pattern);
    if out_image == 0 {
        return Vec::new();
    }
    // Uninitialised: every element is written once below (zeroing first was a tenth of a 95%
    // sparse LeNet-5 forward).
    let len = shape.batch * out_image;
    let mut y = Vec::with_capacity(len);
    y.spare_capacity_mut()[..len]
        .par_chunks_mut(out_image)
        .zip(x.par_chunks(in_image.max(1)))
        .for_each_init(
            || {
                (
                    vec![F::zero(); geo.image],
                    vec![F::zero(); geo.grid],
                    Vec::new(),
                )
            },
            |(planes, full, scratch), (y, x)| {
                geo.fill_planes(x, planes);
                for (o, y) in y.chunks_exact_mut(out_plane).enumerate() {
                    let k = pattern.row_range(o);
                    gather_accumulate(&values[k.clone()], &offsets[k], 1, planes, 0, full);
                    emit(o, full, scratch, y);
                }
            },
        );
    // SAFETY: `emit` wrote every element of every output plane.
    unsafe { y.set_len(len) };
    y
}

fn check<F>(geo: &Geometry, pattern: &SparsePattern, values: &[F], x: &[F]) {
    let s = &geo.shape;
    assert_eq!(
        [pattern.rows(), pattern.cols()],
        s.weight_matrix(),
        "sparse conv: pattern shape"
    );
    assert_eq!(values.len(), pattern.nnz(), "sparse conv: values");
    assert_eq!(
        x.len(),
        s.batch * s.in_channels * s.in_hw[0] * s.in_hw[1],
        "sparse conv: input length"
    );
}

/// Gradients of [`sparse_conv2d_forward`]; `None` where not asked for.
pub struct ConvGrads<F> {
    /// NCHW, like the input.
    pub input: Option<Vec<F>>,
    /// At the kept entries, in CSR order.
    pub weight_values: Option<Vec<F>>,
    /// `[C_out]`.
    pub bias: Option<Vec<F>>,
}

/// Input, weight (at the kept entries) and bias gradients from the NCHW output gradient `g`,
/// computing those with `need[i]` set (`[input, weight, bias]`).
pub fn sparse_conv2d_backward<F: Float>(
    shape: &SparseConvShape,
    pattern: &SparsePattern,
    values: &[F],
    x: &[F],
    g: &[F],
    need: [bool; 3],
) -> ConvGrads<F> {
    let geo = Geometry::new(shape);
    check(&geo, pattern, values, x);
    let [oh, ow] = geo.out_hw;
    let in_image = shape.in_channels * shape.in_hw[0] * shape.in_hw[1];
    let out_image = shape.out_channels * oh * ow;
    assert_eq!(
        g.len(),
        shape.batch * out_image,
        "sparse conv: gradient length"
    );
    let offsets = geo.forward_offsets(pattern);
    let adjoint = need[0].then(|| Adjoint::new(&geo, pattern, values));
    let chunk_len = shape.batch.div_ceil(BATCH_CHUNKS).max(1);
    // Uninitialised: `read_planes` writes every element of every image (zero-filling the 8 MB
    // input gradient of ResNet-20's 16@32 layer first was a serial pass on the calling thread).
    let mut dx: Option<Vec<F>> = need[0].then(|| Vec::with_capacity(x.len()));
    let dx_chunks: Vec<Option<&mut [MaybeUninit<F>]>> = match dx.as_mut() {
        Some(dx) => dx.spare_capacity_mut()[..x.len()]
            .chunks_mut(chunk_len * in_image.max(1))
            .map(Some)
            .collect(),
        None => (0..shape.batch.div_ceil(chunk_len)).map(|_| None).collect(),
    };
    let need_sums = [need[1], need[2]];
    let chunk_sums: Vec<ChunkSums<F>> = dx_chunks
        .into_par_iter()
        .enumerate()
        .map_init(
            || Scratch::new(&geo),
            |scratch, (chunk, mut dx)| {
                let images = chunk * chunk_len..((chunk + 1) * chunk_len).min(shape.batch);
                let mut sums = LaneSums::new(pattern.nnz(), shape.out_channels, need_sums);
                let Scratch {
                    planes,
                    g_planes,
                    d_planes,
                } = scratch;
                for (t, n) in images.enumerate() {
                    let g = &g[n * out_image..(n + 1) * out_image];
                    fill_gradient_planes(&geo, g, g_planes);
                    if need[1] {
                        geo.fill_planes(&x[n * in_image..(n + 1) * in_image], planes);
                    }
                    for o in 0..shape.out_channels {
                        let g_row = &g_planes[o * geo.g_plane + geo.front..][..geo.grid];
                        if need[1] {
                            let k = pattern.row_range(o);
                            let partials = &mut sums.weight[k.clone()];
                            dot_accumulate(g_row, &offsets[k], 1, planes, 0, partials);
                        }
                        if need[2] {
                            add_lanes(g_row, &mut sums.bias[o]);
                        }
                    }
                    if let (Some(adj), Some(dx)) = (&adjoint, dx.as_deref_mut()) {
                        adj.input_gradient(&geo, g_planes, d_planes);
                        geo.read_planes(d_planes, &mut dx[t * in_image..(t + 1) * in_image]);
                    }
                }
                sums.reduce()
            },
        )
        .collect();
    if let Some(dx) = dx.as_mut() {
        // SAFETY: the chunks cover `0..x.len()` and `read_planes` wrote every element of each.
        unsafe { dx.set_len(x.len()) };
    }
    // Chunk sums added in chunk order: the same bits for every thread count.
    let total = |pick: fn(&ChunkSums<F>) -> &[F], len: usize| {
        sum_in_order(&chunk_sums.iter().map(pick).collect::<Vec<_>>(), len)
    };
    let weight_values = need[1].then(|| total(|s| &s.0, pattern.nnz()));
    let bias = need[2].then(|| total(|s| &s.1, shape.out_channels));
    ConvGrads {
        input: dx,
        weight_values,
        bias,
    }
}

/// Writes image gradient `g` (`[C_out, OH, OW]`) onto the `Wq`-wide grid of each output channel's
/// plane after `front` zeros; junk columns and margins stay zero.
fn fill_gradient_planes<F: Float>(geo: &Geometry, g: &[F], out: &mut [F]) {
    let [oh, ow] = geo.out_hw;
    let wq = geo.q_hw[1];
    for (o, plane) in g.chunks_exact(oh * ow).enumerate() {
        let base = o * geo.g_plane + geo.front;
        for (r, row) in plane.chunks_exact(ow).enumerate() {
            out[base + r * wq..][..ow].copy_from_slice(row);
        }
    }
}

/// One task's reusable buffers, sized by the geometry. Reused across chunks without zeroing:
/// `fill_planes` and `fill_gradient_planes` write the same elements every time (the padding,
/// margins and junk columns stay zero), and the input-gradient gather overwrites every plane.
struct Scratch<F> {
    planes: Vec<F>,
    g_planes: Vec<F>,
    d_planes: Vec<F>,
}

impl<F: Float> Scratch<F> {
    fn new(geo: &Geometry) -> Self {
        Scratch {
            planes: vec![F::zero(); geo.image],
            g_planes: vec![F::zero(); geo.shape.out_channels * geo.g_plane],
            d_planes: vec![F::zero(); geo.planes * geo.plane],
        }
    }
}

/// A chunk's weight-gradient (CSR order) and bias-gradient sums.
type ChunkSums<F> = (Vec<F>, Vec<F>);

/// A chunk's sums as `LANES` lane partials, empty where not needed.
struct LaneSums<F> {
    weight: Vec<[F; LANES]>,
    bias: Vec<[F; LANES]>,
}

impl<F: Float> LaneSums<F> {
    fn new(nnz: usize, out_channels: usize, need: [bool; 2]) -> Self {
        let zeros = |n: usize, needed: bool| vec![[F::zero(); LANES]; if needed { n } else { 0 }];
        LaneSums {
            weight: zeros(nnz, need[0]),
            bias: zeros(out_channels, need[1]),
        }
    }

    fn reduce(&self) -> ChunkSums<F> {
        let reduce = |p: &[[F; LANES]]| p.iter().map(reduce_lanes).collect();
        (reduce(&self.weight), reduce(&self.bias))
    }
}

/// `partial[l] += sum_c row[c*LANES + l]`: the bias gradient of one output plane (the `Wq`-wide
/// grid's junk columns are zero). The partial is held in a local array so that it stays in vector
/// registers (adding through `partial` directly compiled to 16 scalar adds per block, 8% of the
/// 98%-sparse 16@32 forward+backward on 1 thread).
fn add_lanes<F: Float>(row: &[F], partial: &mut [F; LANES]) {
    let mut p = *partial;
    for block in row.chunks_exact(LANES) {
        let block: &[F; LANES] = block.try_into().expect("LANES elements");
        for l in 0..LANES {
            p[l] += block[l];
        }
    }
    *partial = p;
}

/// The entries grouped by the phase plane they read, for the input gradient.
struct Adjoint<F> {
    /// Plane `p`'s entries are `plane_ptr[p]..plane_ptr[p + 1]`.
    plane_ptr: Vec<usize>,
    values: Vec<F>,
    /// `o * g_plane + front - shift` per entry.
    offsets: Vec<u32>,
}

impl<F: Float> Adjoint<F> {
    fn new(geo: &Geometry, pattern: &SparsePattern, values: &[F]) -> Self {
        let cols = pattern.col_indices();
        let mut keyed = Vec::with_capacity(pattern.nnz());
        for o in 0..pattern.rows() {
            for k in pattern.row_range(o) {
                let (cin, i, j) = geo.column(o, cols[k] as usize);
                let (plane, shift) = geo.tap(cin, i, j);
                keyed.push((plane, k, o * geo.g_plane + geo.front - shift));
            }
        }
        // Stable: within a plane, entries stay in CSR order (a fixed summation order).
        keyed.sort_by_key(|&(plane, k, _)| (plane, k));
        let mut plane_ptr = vec![0usize; geo.planes + 1];
        for &(plane, ..) in &keyed {
            plane_ptr[plane + 1] += 1;
        }
        for p in 0..geo.planes {
            plane_ptr[p + 1] += plane_ptr[p];
        }
        Adjoint {
            plane_ptr,
            values: keyed.iter().map(|&(_, k, _)| values[k]).collect(),
            offsets: keyed.iter().map(|&(.., off)| offset_u32(off)).collect(),
        }
    }

    /// `d_planes[p, t] = sum over plane p's entries of w * g_planes[offset + t]`.
    fn input_gradient(&self, geo: &Geometry, g_planes: &[F], d_planes: &mut [F]) {
        for (p, out) in d_planes.chunks_exact_mut(geo.plane).enumerate() {
            let k = self.plane_ptr[p]..self.plane_ptr[p + 1];
            gather_accumulate(
                &self.values[k.clone()],
                &self.offsets[k],
                1,
                g_planes,
                0,
                out,
            );
        }
    }
}
