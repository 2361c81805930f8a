//! Naive direct 2-D convolution (forward, input gradient, weight gradient): the test reference for
//! the im2col + GEMM implementation. Written for clarity, not speed, and deliberately independent
//! of `im2col.rs` (its own output-size formula and index arithmetic), so the two cannot share a bug.
//!
//! With `Cg = C_in / groups` and `Og = C_out / groups`, output channel `o` belongs to group
//! `o / Og` and sees input channels `group*Cg .. (group+1)*Cg` (PyTorch `Conv2d` semantics):
//!
//! `y[n, o, oh, ow] = b[o] + sum_{c, i, j} w[o, c, i, j] * x[n, group*Cg + c, oh*sh + i*dh - ph, ow*sw + j*dw - pw]`
//!
//! where out-of-range input indices read zero (zero padding). All three functions enumerate the
//! same (output, tap) pairs with `for_each_tap`; each is the derivative of that one sum.

use ndarray::{Array4, ArrayView1, ArrayView4};

use crate::float::Float;
use crate::kernels::conv_config::Conv2dConfig;

/// Indices of one product term `w[o, c, i, j] * x[n, cin, ih, iw]` contributing to `y[n, o, oh, ow]`.
struct Tap {
    n: usize,
    o: usize,
    /// Channel within the group (the weight's second index).
    c: usize,
    /// Absolute input channel.
    cin: usize,
    i: usize,
    j: usize,
    oh: usize,
    ow: usize,
    ih: usize,
    iw: usize,
}

/// Output size along one axis: `floor((in + 2p - d(k-1) - 1) / s) + 1`.
fn out_len(input: usize, kernel: usize, stride: usize, pad: usize, dilation: usize) -> usize {
    let span = dilation * (kernel - 1) + 1;
    assert!(
        input + 2 * pad >= span,
        "conv2d_direct: kernel span {span} exceeds padded input {}",
        input + 2 * pad
    );
    (input + 2 * pad - span) / stride + 1
}

/// Calls `f` for every product term of the convolution of an input of shape `x_shape` with a
/// weight of shape `w_shape`, skipping taps that fall in the zero padding.
fn for_each_tap(
    x_shape: [usize; 4],
    w_shape: [usize; 4],
    cfg: &Conv2dConfig,
    mut f: impl FnMut(&Tap),
) {
    let [batch, c_in, h, w] = x_shape;
    let [c_out, cg, kh, kw] = w_shape;
    let groups = cfg.groups;
    assert!(
        c_in == cg * groups && c_out.is_multiple_of(groups),
        "conv2d_direct: input {x_shape:?}, weight {w_shape:?}, groups {groups}"
    );
    let og = c_out / groups;
    let oh_len = out_len(h, kh, cfg.stride[0], cfg.padding[0], cfg.dilation[0]);
    let ow_len = out_len(w, kw, cfg.stride[1], cfg.padding[1], cfg.dilation[1]);
    for n in 0..batch {
        for o in 0..c_out {
            let group = o / og;
            for oh in 0..oh_len {
                for ow in 0..ow_len {
                    for c in 0..cg {
                        for i in 0..kh {
                            for j in 0..kw {
                                let ih = (oh * cfg.stride[0] + i * cfg.dilation[0]) as isize
                                    - cfg.padding[0] as isize;
                                let iw = (ow * cfg.stride[1] + j * cfg.dilation[1]) as isize
                                    - cfg.padding[1] as isize;
                                if ih < 0 || iw < 0 || ih >= h as isize || iw >= w as isize {
                                    continue;
                                }
                                f(&Tap {
                                    n,
                                    o,
                                    c,
                                    cin: group * cg + c,
                                    i,
                                    j,
                                    oh,
                                    ow,
                                    ih: ih as usize,
                                    iw: iw as usize,
                                });
                            }
                        }
                    }
                }
            }
        }
    }
}

fn output_shape(x_shape: [usize; 4], w_shape: [usize; 4], cfg: &Conv2dConfig) -> [usize; 4] {
    [
        x_shape[0],
        w_shape[0],
        out_len(
            x_shape[2],
            w_shape[2],
            cfg.stride[0],
            cfg.padding[0],
            cfg.dilation[0],
        ),
        out_len(
            x_shape[3],
            w_shape[3],
            cfg.stride[1],
            cfg.padding[1],
            cfg.dilation[1],
        ),
    ]
}

fn dims<F>(a: &ArrayView4<'_, F>) -> [usize; 4] {
    let d = a.dim();
    [d.0, d.1, d.2, d.3]
}

/// `y = conv2d(x, w) + b` (see the module documentation for the formula).
pub fn conv2d_direct<F: Float>(
    x: ArrayView4<'_, F>,
    w: ArrayView4<'_, F>,
    bias: Option<ArrayView1<'_, F>>,
    cfg: &Conv2dConfig,
) -> Array4<F> {
    let mut y = Array4::zeros(output_shape(dims(&x), dims(&w), cfg));
    if let Some(b) = bias {
        for ((_, o, _, _), v) in y.indexed_iter_mut() {
            *v = b[o];
        }
    }
    for_each_tap(dims(&x), dims(&w), cfg, |t| {
        y[[t.n, t.o, t.oh, t.ow]] += w[[t.o, t.c, t.i, t.j]] * x[[t.n, t.cin, t.ih, t.iw]];
    });
    y
}

/// `dL/dx[n, cin, ih, iw] = sum over the terms reading x[n, cin, ih, iw] of g[n, o, oh, ow] * w[o, c, i, j]`,
/// for an input of spatial size `in_hw` and output gradient `g`.
pub fn conv2d_direct_input_grad<F: Float>(
    g: ArrayView4<'_, F>,
    w: ArrayView4<'_, F>,
    in_hw: [usize; 2],
    cfg: &Conv2dConfig,
) -> Array4<F> {
    let x_shape = [g.dim().0, w.dim().1 * cfg.groups, in_hw[0], in_hw[1]];
    assert_eq!(
        output_shape(x_shape, dims(&w), cfg),
        dims(&g),
        "conv2d_direct_input_grad: g"
    );
    let mut dx = Array4::zeros(x_shape);
    for_each_tap(x_shape, dims(&w), cfg, |t| {
        dx[[t.n, t.cin, t.ih, t.iw]] += g[[t.n, t.o, t.oh, t.ow]] * w[[t.o, t.c, t.i, t.j]];
    });
    dx
}

/// `dL/dw[o, c, i, j] = sum over n, oh, ow of g[n, o, oh, ow] * x[n, cin, ih, iw]`, for a kernel of
/// size `kernel` and output gradient `g`.
pub fn conv2d_direct_weight_grad<F: Float>(
    x: ArrayView4<'_, F>,
    g: ArrayView4<'_, F>,
    kernel: [usize; 2],
    cfg: &Conv2dConfig,
) -> Array4<F> {
    let x_shape = dims(&x);
    let w_shape = [g.dim().1, x_shape[1] / cfg.groups, kernel[0], kernel[1]];
    assert_eq!(
        output_shape(x_shape, w_shape, cfg),
        dims(&g),
        "conv2d_direct_weight_grad: g"
    );
    let mut dw = Array4::zeros(w_shape);
    for_each_tap(x_shape, w_shape, cfg, |t| {
        dw[[t.o, t.c, t.i, t.j]] += g[[t.n, t.o, t.oh, t.ow]] * x[[t.n, t.cin, t.ih, t.iw]];
    });
    dw
}
