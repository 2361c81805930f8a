//! 2-D convolution (PyTorch `nn.functional.conv2d` semantics: cross-correlation, zero padding,
//! stride, dilation and groups per axis), on `kernels::conv_gemm` (im2col + GEMM).
//!
//! Shapes: input `[N, C_in, H, W]`, weight `[C_out, C_in / groups, kh, kw]` (OIHW), bias `[C_out]`,
//! output `[N, C_out, OH, OW]` with `OH = (H + 2 ph - dh (kh - 1) - 1) / sh + 1` (rounding down).
//! Derivatives (per group, `X = im2col(x)`, `G` = output gradient as channels x positions):
//! `dx = col2im(W^T G)`, `dW = sum_n G X^T`, `db = sum over n, oh, ow of G`. Stride-1
//! convolutions in f32 skip the column matrix for `y` and `dx` (`kernels::shift_conv`).

use ndarray::IxDyn;

use crate::float::Float;
pub use crate::kernels::conv_config::Conv2dConfig;
use crate::kernels::conv_gemm::{ConvProblem, conv2d_backward, conv2d_forward};
use crate::tape::{Tensor, Var};

/// Checks the shapes of a conv2d call and describes it; panics naming the op and the shapes.
fn conv_problem(
    x: &[usize],
    w: &[usize],
    bias: Option<&[usize]>,
    cfg: &Conv2dConfig,
) -> ConvProblem {
    let fail = |why: &str| -> ! {
        panic!("op `conv2d`: input {x:?}, weight {w:?}, bias {bias:?}, {cfg:?}: {why}")
    };
    if x.len() != 4 || w.len() != 4 {
        fail("input must be [N, C_in, H, W] and weight [C_out, C_in/groups, kh, kw]");
    }
    let (groups, c_in, c_out) = (cfg.groups, x[1], w[0]);
    if groups == 0
        || c_in == 0
        || !c_in.is_multiple_of(groups)
        || !c_out.is_multiple_of(groups)
        || c_out == 0
    {
        fail("channels must be positive multiples of groups");
    }
    if w[1] != c_in / groups {
        fail("weight's second axis must be C_in / groups");
    }
    if bias.is_some_and(|b| b != [c_out]) {
        fail("bias must be [C_out]");
    }
    if x[2] == 0 || x[3] == 0 {
        fail("input has an empty spatial axis");
    }
    let win = cfg.window([x[2], x[3]], [w[2], w[3]]).unwrap_or_else(|| {
        fail("kernel (dilated) larger than padded input, or a zero stride/dilation/kernel")
    });
    ConvProblem::new(x[0], c_in, c_out, groups, win)
}

impl<'t, F: Float> Var<'t, F> {
    /// 2-D convolution `[N, C_in, H, W] * [C_out, C_in/groups, kh, kw] (+ [C_out]) -> [N, C_out, OH, OW]`.
    /// The input gradient is skipped when the input needs none (a first layer), and so is the
    /// weight gradient's im2col when the weight needs none.
    pub fn conv2d(self, weight: Self, bias: Option<Self>, cfg: &Conv2dConfig) -> Self {
        let (xv, wv) = (self.value(), weight.value());
        let bv = bias.map(|b| b.value());
        let p = conv_problem(xv.shape(), wv.shape(), bv.as_ref().map(|b| b.shape()), cfg);
        let y = {
            let (x, w) = (xv.as_standard_layout(), wv.as_standard_layout());
            let b = bv.as_ref().map(|b| b.as_standard_layout());
            conv2d_forward(
                &p,
                contiguous(&x),
                contiguous(&w),
                b.as_ref().map(|b| contiguous(b)),
            )
        };
        let out_shape = [p.batch, p.out_channels, p.win.out_hw[0], p.win.out_hw[1]];
        let y = Tensor::from_shape_vec(IxDyn(&out_shape), y).expect("conv2d output size");
        let mut inputs = vec![self, weight];
        inputs.extend(bias);
        let (x_shape, w_shape) = (xv.shape().to_vec(), wv.shape().to_vec());
        self.tape().record("conv2d", y, &inputs, move |g, needs| {
            let (x, w, g) = (
                xv.as_standard_layout(),
                wv.as_standard_layout(),
                g.as_standard_layout(),
            );
            let need_bias = needs.get(2).copied().unwrap_or(false);
            let grads = conv2d_backward(
                &p,
                contiguous(&x),
                contiguous(&w),
                contiguous(&g),
                [needs[0], needs[1], need_bias],
            );
            let shaped = |v: Vec<F>, shape: &[usize]| {
                Tensor::from_shape_vec(IxDyn(shape), v).expect("conv2d gradient size")
            };
            let mut out = vec![
                grads.input.map(|v| shaped(v, &x_shape)),
                grads.weight.map(|v| shaped(v, &w_shape)),
            ];
            if needs.len() == 3 {
                out.push(grads.bias.map(|v| shaped(v, &[p.out_channels])));
            }
            out
        })
    }
}

/// The elements of a standard-layout array.
fn contiguous<'a, F: Float>(t: &'a ndarray::CowArray<'_, F, IxDyn>) -> &'a [F] {
    t.as_slice().expect("standard layout")
}
