//! A batched convolution's shapes and its work split (batch chunks, column tiles), used by
//! `conv_gemm`: a pure function of the shapes, never of the thread count (see `conv_gemm`'s
//! module documentation for why the split is shaped so).

use std::ops::Range;

use ndarray::{ArrayView2, ArrayViewMut2, ShapeBuilder};

use crate::float::Float;
use crate::kernels::im2col::{Window, im2col};

/// The batch is split into at most this many chunks (see the module documentation). Enough
/// parallel slack for 16 threads; each chunk costs one weight-sized partial gradient.
pub const BATCH_CHUNKS: usize = 16;

/// Target number of elements of one im2col tile (256 KiB in f32): small enough to stay in L2
/// between im2col and the GEMM that reads it (measured on the ResNet-20 / LeNet-5 shapes:
/// 32-128 Ki elements are about equally good, 256 Ki is slower on 32x32 images).
pub const TILE_ELEMS: usize = 64 * 1024;

/// A tile has at least this many columns when the batch chunk allows (several small images
/// side by side): narrower GEMMs spend their time repacking the weight, not multiplying.
pub const MIN_TILE_COLS: usize = 256;

/// A convolution's shapes and its work split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvProblem {
    pub batch: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub groups: usize,
    pub win: Window,
    /// Images per parallel chunk; the weight gradient is summed per chunk, then over chunks in
    /// order. Changing it changes the rounding of the weight gradient, so it must never depend on
    /// the thread count. [`ConvProblem::new`] derives it from the batch size only.
    pub chunk_len: usize,
    /// Maximum im2col columns per GEMM (at least 1). Derived from the shapes by [`ConvProblem::new`].
    pub tile_cols: usize,
}

/// One GEMM's worth of columns: `images` (relative to the chunk) x output `rows` of each image.
/// Either a band of one image's rows, or whole images.
#[derive(Clone, Debug)]
pub(crate) struct Tile {
    pub(crate) images: Range<usize>,
    pub(crate) rows: Range<usize>,
    /// Output positions per image in the tile (`rows.len() * OW`).
    pub(crate) positions: Range<usize>,
}

impl Tile {
    pub(crate) fn new(images: Range<usize>, rows: Range<usize>, out_w: usize) -> Tile {
        let positions = rows.start * out_w..rows.end * out_w;
        Tile {
            images,
            rows,
            positions,
        }
    }

    pub(crate) fn width(&self) -> usize {
        self.images.len() * self.positions.len()
    }
}

impl ConvProblem {
    /// Panics (naming the shapes) when channels are not divisible by `groups` or a size is zero.
    pub fn new(
        batch: usize,
        in_channels: usize,
        out_channels: usize,
        groups: usize,
        win: Window,
    ) -> ConvProblem {
        assert!(
            groups >= 1
                && in_channels >= 1
                && out_channels >= 1
                && in_channels.is_multiple_of(groups)
                && out_channels.is_multiple_of(groups)
                && win.in_plane() >= 1,
            "conv: {in_channels} input and {out_channels} output channels, groups {groups}, input {:?}",
            win.in_hw
        );
        let col_rows = in_channels / groups * win.taps();
        ConvProblem {
            batch,
            in_channels,
            out_channels,
            groups,
            win,
            chunk_len: batch.div_ceil(BATCH_CHUNKS).max(1),
            tile_cols: (TILE_ELEMS / col_rows).max(MIN_TILE_COLS),
        }
    }

    /// Input channels per group.
    pub fn cin_g(&self) -> usize {
        self.in_channels / self.groups
    }

    /// Output channels per group.
    pub fn cout_g(&self) -> usize {
        self.out_channels / self.groups
    }

    /// Rows of the im2col matrix, `K = Cg * kh * kw` (one weight row's length).
    pub fn col_rows(&self) -> usize {
        self.cin_g() * self.win.taps()
    }

    /// Elements of one input image.
    pub fn in_image(&self) -> usize {
        self.in_channels * self.win.in_plane()
    }

    /// Elements of one output image.
    pub fn out_image(&self) -> usize {
        self.out_channels * self.win.positions()
    }

    /// Elements of the weight `[C_out, Cg, kh, kw]`.
    pub fn weight_len(&self) -> usize {
        self.out_channels * self.col_rows()
    }

    /// Multiply-accumulates of the forward pass over the whole batch.
    pub fn macs(&self) -> usize {
        self.batch * self.out_channels * self.win.positions() * self.col_rows()
    }

    pub(crate) fn chunks(&self) -> usize {
        self.batch.div_ceil(self.chunk_len)
    }

    pub(crate) fn chunk_images(&self, chunk: usize) -> Range<usize> {
        chunk * self.chunk_len..((chunk + 1) * self.chunk_len).min(self.batch)
    }

    /// Tiles covering `images` images (see [`Tile`]), each about `tile_cols` columns or less
    /// (a tile is never narrower than one output row).
    pub(crate) fn tiles(&self, images: usize) -> Vec<Tile> {
        let [out_h, out_w] = self.win.out_hw;
        let positions = out_h * out_w;
        let max_cols = self.tile_cols.max(1);
        let mut out = Vec::new();
        if positions > max_cols {
            // Split each image into equal bands of whole output rows.
            let per = (max_cols / out_w).max(1);
            let per = out_h.div_ceil(out_h.div_ceil(per));
            for n in 0..images {
                for start in (0..out_h).step_by(per) {
                    out.push(Tile::new(n..n + 1, start..(start + per).min(out_h), out_w));
                }
            }
        } else if images > 0 {
            // Several whole images per tile, balanced.
            let per = (max_cols / positions).max(1);
            let per = images.div_ceil(images.div_ceil(per));
            for start in (0..images).step_by(per) {
                out.push(Tile::new(start..(start + per).min(images), 0..out_h, out_w));
            }
        }
        out
    }

    /// Group `g`'s weight rows as an `Og x K` matrix.
    pub(crate) fn weight_matrix<'a, F: Float>(&self, w: &'a [F], g: usize) -> ArrayView2<'a, F> {
        let (og, k) = (self.cout_g(), self.col_rows());
        ArrayView2::from_shape((og, k), &w[g * og * k..(g + 1) * og * k]).expect("weight block")
    }

    /// Group `g`'s input channels of image `n` (relative to `x`).
    pub(crate) fn image_group<'a, F>(&self, x: &'a [F], n: usize, g: usize) -> &'a [F] {
        let len = self.cin_g() * self.win.in_plane();
        &x[n * self.in_image() + g * len..][..len]
    }

    pub(crate) fn image_group_mut<'a, F>(&self, x: &'a mut [F], n: usize, g: usize) -> &'a mut [F] {
        let len = self.cin_g() * self.win.in_plane();
        &mut x[n * self.in_image() + g * len..][..len]
    }

    /// Offset in an NCHW output (relative to the chunk) of channel `g*Og`, position `q` of image `n`.
    pub(crate) fn out_offset(&self, n: usize, g: usize, q: usize) -> usize {
        n * self.out_image() + g * self.cout_g() * self.win.positions() + q
    }

    /// im2col of group `g` over `tile` into `cols`, as a `K x width` matrix.
    pub(crate) fn fill_cols<'a, F: Float>(
        &self,
        x: &[F],
        g: usize,
        tile: &Tile,
        cols: &'a mut [F],
    ) -> ArrayView2<'a, F> {
        let (k, width) = (self.col_rows(), tile.width());
        let cols = &mut cols[..k * width];
        for (t, n) in tile.images.clone().enumerate() {
            let at = t * tile.positions.len();
            im2col(
                &self.win,
                self.image_group(x, n, g),
                self.cin_g(),
                tile.rows.clone(),
                &mut cols[at..],
                width,
            );
        }
        ArrayView2::from_shape((k, width), &*cols).expect("column tile")
    }

    /// Group `g`'s block of an NCHW output-shaped array `y` over a one-image tile: `Og x width`,
    /// row stride = positions per channel.
    pub(crate) fn block_view<'a, F: Float>(
        &self,
        y: &'a [F],
        g: usize,
        tile: &Tile,
    ) -> ArrayView2<'a, F> {
        let p = self.win.positions();
        let start = self.out_offset(tile.images.start, g, tile.positions.start);
        let shape = (self.cout_g(), tile.positions.len()).strides((p, 1));
        ArrayView2::from_shape(
            shape,
            &y[start..start + (self.cout_g() - 1) * p + tile.positions.len()],
        )
        .expect("output block")
    }

    pub(crate) fn block_view_mut<'a, F: Float>(
        &self,
        y: &'a mut [F],
        g: usize,
        tile: &Tile,
    ) -> ArrayViewMut2<'a, F> {
        let p = self.win.positions();
        let start = self.out_offset(tile.images.start, g, tile.positions.start);
        let shape = (self.cout_g(), tile.positions.len()).strides((p, 1));
        let end = start + (self.cout_g() - 1) * p + tile.positions.len();
        ArrayViewMut2::from_shape(shape, &mut y[start..end]).expect("output block")
    }

    /// The (row of output channel `o` of group `g`, image `n`) slice of an NCHW output over the tile's positions.
    pub(crate) fn out_row_range(&self, n: usize, g: usize, o: usize, tile: &Tile) -> Range<usize> {
        let start = self.out_offset(n, g, o * self.win.positions() + tile.positions.start);
        start..start + tile.positions.len()
    }
}
