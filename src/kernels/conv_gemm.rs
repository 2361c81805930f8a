//! Batched 2-D convolution (forward and backward) on `im2col` / [`col2im`] and `gemm_serial`.
//!
//! Per group `g` of an image, with `X = im2col(x)` (`K = Cg*kh*kw` rows, one column per output
//! position), `W_g` the group's weight as an `Og x K` matrix and `G` the output gradient as an
//! `Og x positions` matrix:
//!
//! - forward:         `Y = W_g X + b`
//! - input gradient:  `dx = col2im(W_g^T G)`
//! - weight gradient: `dW_g = sum over images of G X^T`
//! - bias gradient:   `db[o] = sum over images and positions of G[o, :]`
//!
//! In f32 on the packed GEMM kernels, stride-1 convolutions (ResNet-20's 3 x 3 ones) run on
//! `shift_conv` instead: GEMMs over shifted rows of a zero-padded image, with no column matrix
//! (the same chunks, so the same determinism; the bias gradient is summed here either way).
//!
//! **Work split.** The batch is cut into chunks of [`ConvProblem::chunk_len`] consecutive images,
//! which rayon processes in parallel; each chunk allocates its scratch (column tile, gathered
//! output block) once and reuses it for all its images. Within a chunk, columns are processed in
//! tiles of about [`ConvProblem::tile_cols`] columns, so a tile's im2col matrix stays in cache
//! between being written and being read by the GEMM: a tile is either a band of one image's
//! output rows (large images) or several whole images side by side (small images, so the GEMM is
//! still wide). Each GEMM runs on its chunk's thread (`gemm_serial`): splitting the GEMMs
//! themselves over threads slows the weight-gradient GEMM, whose M is tiny and K huge.
//!
//! **Determinism.** The chunking and tiling depend only on the shapes (the chunk length on the
//! batch size alone), never on the number of threads. The weight and bias gradients are summed per
//! chunk in a fixed order, and the chunk partial sums are then added in chunk order; the forward
//! output and the input gradient of each image do not depend on other images at all. Results are
//! therefore bit-identical for every thread count.

use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

use crate::float::{Float, as_f32, as_f32_mut};
use crate::kernels::conv_problem::Tile;
pub use crate::kernels::conv_problem::{BATCH_CHUNKS, ConvProblem, MIN_TILE_COLS, TILE_ELEMS};
use crate::kernels::gemm::gemm_serial;
use crate::kernels::im2col::col2im;
use crate::kernels::parallel::{par_chunks_zeroed, sum_in_order};
use crate::kernels::shift_conv::{ShiftPlan, flipped_weight};

/// `y = conv(x, w) + bias` for NCHW `x`, OIHW `w`; returns NCHW `y` (contiguous slices).
pub fn conv2d_forward<F: Float>(p: &ConvProblem, x: &[F], w: &[F], bias: Option<&[F]>) -> Vec<F> {
    check_lengths(p, x, w);
    if let Some(b) = bias {
        assert_eq!(b.len(), p.out_channels, "conv: bias length");
    }
    shifted_forward(p, x, w, bias).unwrap_or_else(|| im2col_forward(p, x, w, bias))
}

/// The forward pass on im2col + GEMM (whatever the shapes and type).
pub(crate) fn im2col_forward<F: Float>(
    p: &ConvProblem,
    x: &[F],
    w: &[F],
    bias: Option<&[F]>,
) -> Vec<F> {
    let (y, _) = par_chunks_zeroed(
        p.batch * p.out_image(),
        p.chunk_len * p.out_image(),
        |c, y| {
            let images = p.chunk_images(c);
            let x = &x[images.start * p.in_image()..images.end * p.in_image()];
            forward_chunk(p, x, w, bias, y)
        },
    );
    y
}

/// The forward pass on `shift_conv`'s shifted-row GEMM, when that applies (f32, stride 1, ...):
/// the same bits as [`forward_chunk`], without the column matrix.
fn shifted_forward<F: Float>(
    p: &ConvProblem,
    x: &[F],
    w: &[F],
    bias: Option<&[F]>,
) -> Option<Vec<F>> {
    let (x, w) = (as_f32(x)?, as_f32(w)?);
    let bias = bias.map(|b| as_f32(b).expect("the bias has the input's type"));
    let plan = ShiftPlan::new(p)?;
    let (y, _) = par_chunks_zeroed(
        p.batch * p.out_image(),
        p.chunk_len * p.out_image(),
        |c, y: &mut [F]| {
            let images = p.chunk_images(c);
            let x = &x[images.start * p.in_image()..images.end * p.in_image()];
            let y = as_f32_mut(y).expect("F is f32");
            plan.forward.run_images(x, w, bias, y);
        },
    );
    Some(y)
}

fn check_lengths<F>(p: &ConvProblem, x: &[F], w: &[F]) {
    assert_eq!(x.len(), p.batch * p.in_image(), "conv: input length");
    assert_eq!(w.len(), p.weight_len(), "conv: weight length");
}

fn forward_chunk<F: Float>(p: &ConvProblem, x: &[F], w: &[F], bias: Option<&[F]>, y: &mut [F]) {
    let tiles = p.tiles(x.len() / p.in_image());
    let widest = tiles.iter().map(Tile::width).max().unwrap_or(0);
    let mut cols = vec![F::zero(); p.col_rows() * widest];
    let mut block = Vec::new(); // Og x width output of a multi-image tile
    for tile in &tiles {
        for g in 0..p.groups {
            let x_cols = p.fill_cols(x, g, tile, &mut cols);
            let w_g = p.weight_matrix(w, g);
            if tile.images.len() == 1 {
                let mut y_block = p.block_view_mut(y, g, tile);
                gemm_serial(F::one(), w_g, x_cols, F::zero(), y_block.view_mut());
                if let Some(b) = bias {
                    for (o, mut row) in y_block.rows_mut().into_iter().enumerate() {
                        let b = b[g * p.cout_g() + o];
                        row.mapv_inplace(|v| v + b);
                    }
                }
            } else {
                block.resize(p.cout_g() * tile.width(), F::zero());
                let mut out = ArrayViewMut2::from_shape((p.cout_g(), tile.width()), &mut block[..])
                    .expect("output tile");
                gemm_serial(F::one(), w_g, x_cols, F::zero(), out.view_mut());
                // Scatter the tile's columns (image-major) back to NCHW, adding the bias.
                for (o, row) in out.rows().into_iter().enumerate() {
                    let b = bias.map_or(F::zero(), |b| b[g * p.cout_g() + o]);
                    let row = row.as_slice().expect("contiguous tile row");
                    for (t, n) in tile.images.clone().enumerate() {
                        let src = &row[t * tile.positions.len()..][..tile.positions.len()];
                        for (d, &s) in y[p.out_row_range(n, g, o, tile)].iter_mut().zip(src) {
                            *d = s + b;
                        }
                    }
                }
            }
        }
    }
}

/// Gradients returned by [`conv2d_backward`] (NCHW input, OIHW weight), `None` where not asked for.
pub struct ConvGrads<F> {
    pub input: Option<Vec<F>>,
    pub weight: Option<Vec<F>>,
    pub bias: Option<Vec<F>>,
}

/// Input, weight and bias gradients given the output gradient `g` (NCHW), computing only those
/// with `need[i]` set (`[input, weight, bias]`). See the module documentation for determinism.
pub fn conv2d_backward<F: Float>(
    p: &ConvProblem,
    x: &[F],
    w: &[F],
    g: &[F],
    need: [bool; 3],
) -> ConvGrads<F> {
    check_lengths(p, x, w);
    assert_eq!(
        g.len(),
        p.batch * p.out_image(),
        "conv: output gradient length"
    );
    // The shifted path when it applies: dx as the convolution of G by the flipped weight, dW
    // from the shifted rows of the padded images (see `shift_conv`).
    let shifted = (|| Some((ShiftPlan::new(p)?, as_f32(x)?, as_f32(w)?, as_f32(g)?)))();
    let flipped = shifted
        .as_ref()
        .filter(|_| need[0])
        .map(|(_, _, w, _)| flipped_weight(w, p.out_channels, p.in_channels, p.win.kernel));
    let chunk_partial = |chunk: usize, dx: Option<&mut [F]>| {
        let images = p.chunk_images(chunk);
        let (x_range, g_range) = (
            images.start * p.in_image()..images.end * p.in_image(),
            images.start * p.out_image()..images.end * p.out_image(),
        );
        let mut weight = need[1].then(|| vec![F::zero(); p.weight_len()]);
        if let Some((plan, x, _, g)) = &shifted {
            let (x, g) = (&x[x_range], &g[g_range.clone()]);
            if let (Some(dx), Some(flipped)) = (dx, &flipped) {
                let dx = as_f32_mut(dx).expect("F is f32");
                plan.input_grad.run_images(g, flipped, None, dx);
            }
            if let Some(dw) = weight.as_deref_mut() {
                plan.forward
                    .weight_grad_images(x, g, as_f32_mut(dw).expect("F is f32"));
            }
        } else if dx.is_some() || weight.is_some() {
            let (x, g) = (&x[x_range], &g[g_range.clone()]);
            backward_chunk(p, x, w, g, dx, weight.as_deref_mut());
        }
        let g = &g[g_range];
        ChunkPartial {
            weight,
            bias: need[2].then(|| bias_grad_chunk(p, g)),
        }
    };
    let (dx, partials): (_, Vec<ChunkPartial<F>>) = if need[0] {
        let (dx, partials) = par_chunks_zeroed(x.len(), p.chunk_len * p.in_image(), |c, dx| {
            chunk_partial(c, Some(dx))
        });
        (Some(dx), partials)
    } else {
        let partials = (0..p.chunks())
            .into_par_iter()
            .map(|c| chunk_partial(c, None))
            .collect();
        (None, partials)
    };
    ConvGrads {
        input: dx,
        weight: need[1].then(|| chunk_sum(&partials, p.weight_len(), |c| &c.weight)),
        bias: need[2].then(|| chunk_sum(&partials, p.out_channels, |c| &c.bias)),
    }
}

/// The sum of the chunks' partial gradients, in chunk order.
fn chunk_sum<F: Float>(
    partials: &[ChunkPartial<F>],
    len: usize,
    part: impl Fn(&ChunkPartial<F>) -> &Option<Vec<F>>,
) -> Vec<F> {
    let parts: Vec<&[F]> = partials
        .iter()
        .map(|c| part(c).as_deref().expect("computed in every chunk"))
        .collect();
    sum_in_order(&parts, len)
}

/// One batch chunk's share of the weight and bias gradients.
struct ChunkPartial<F> {
    weight: Option<Vec<F>>,
    bias: Option<Vec<F>>,
}

/// `db[o] = sum over the chunk's images (in order) and positions of g[n, o, :]`.
fn bias_grad_chunk<F: Float>(p: &ConvProblem, g: &[F]) -> Vec<F> {
    let mut db = vec![F::zero(); p.out_channels];
    for image in g.chunks_exact(p.out_image()) {
        for (d, row) in db.iter_mut().zip(image.chunks_exact(p.win.positions())) {
            *d += row.iter().fold(F::zero(), |s, &v| s + v);
        }
    }
    db
}

/// Accumulates the chunk's weight gradient into `dw` and writes its input gradient into `dx`
/// (zero on entry), tile by tile.
fn backward_chunk<F: Float>(
    p: &ConvProblem,
    x: &[F],
    w: &[F],
    g: &[F],
    mut dx: Option<&mut [F]>,
    mut dw: Option<&mut [F]>,
) {
    let tiles = p.tiles(x.len() / p.in_image());
    let widest = tiles.iter().map(Tile::width).max().unwrap_or(0);
    let (og, k) = (p.cout_g(), p.col_rows());
    let mut cols = vec![F::zero(); k * widest];
    let mut block = Vec::new(); // Og x width output gradient of a multi-image tile
    for tile in &tiles {
        for grp in 0..p.groups {
            let g_block = if tile.images.len() == 1 {
                p.block_view(g, grp, tile)
            } else {
                block.resize(og * tile.width(), F::zero());
                for o in 0..og {
                    let row = &mut block[o * tile.width()..][..tile.width()];
                    for (t, n) in tile.images.clone().enumerate() {
                        row[t * tile.positions.len()..][..tile.positions.len()]
                            .copy_from_slice(&g[p.out_row_range(n, grp, o, tile)]);
                    }
                }
                ArrayView2::from_shape((og, tile.width()), &block[..]).expect("gradient tile")
            };
            if let Some(dw) = dw.as_deref_mut() {
                // dW_g += G X^T (K of this GEMM runs over the tile's positions).
                let x_cols = p.fill_cols(x, grp, tile, &mut cols);
                let dw_g = ArrayViewMut2::from_shape((og, k), &mut dw[grp * og * k..][..og * k])
                    .expect("weight gradient block");
                gemm_serial(F::one(), g_block, x_cols.t(), F::one(), dw_g);
            }
            if let Some(dx) = dx.as_deref_mut() {
                // dX = col2im(W_g^T G), reusing the column tile as scratch.
                let width = tile.width();
                let d_cols = ArrayViewMut2::from_shape((k, width), &mut cols[..k * width])
                    .expect("column tile");
                gemm_serial(
                    F::one(),
                    p.weight_matrix(w, grp).t(),
                    g_block,
                    F::zero(),
                    d_cols,
                );
                for (t, n) in tile.images.clone().enumerate() {
                    col2im(
                        &p.win,
                        &mut cols[t * tile.positions.len()..k * width],
                        width,
                        p.cin_g(),
                        tile.rows.clone(),
                        p.image_group_mut(dx, n, grp),
                    );
                }
            }
        }
    }
}
