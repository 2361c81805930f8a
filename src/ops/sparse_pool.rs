//! A sparse convolution, an optional relu and 2x2 max pooling in one pass, for inference:
//! LeNet-5's `conv -> (relu) -> max_pool 2x2` when no gradient flows.
//!
//! Why: unfused, the 95%-sparse conv1 of LeNet-5 writes its 5.9 MB output (batch 128) to memory
//! and the pooling reads it back, and these two passes were 40% of the sparse forward on 2
//! threads (`perf`, AMD EPYC). Fused, each output plane of an image is pooled while it is in
//! cache (`kernels::sparse_conv::sparse_conv2d_forward_planes`) and only the pooled quarter is
//! written. The values are those of the three ops in sequence, bit for bit: the same sum, the
//! same bias addition, the same relu expression and the same pooling function
//! (`pool::max_2x2`).

use std::mem::MaybeUninit;

use crate::float::Float;
use crate::kernels::sparse_conv::sparse_conv2d_forward_planes;
use crate::ops::conv::Conv2dConfig;
use crate::ops::pool::max_2x2::max_pool_plane_2x2;
use crate::ops::sparse::{KeptWeight, conv_shape};
use crate::simd::{Kernel, widest};
use crate::tape::{Tensor, Var};

impl<'t, F: Float> Var<'t, F> {
    /// `self.sparse_conv2d_kept(weight, bias, cfg, kept)`, then `.relu()` if `relu`, then
    /// `.max_pool2d([2, 2], [2, 2], [0, 0])`. Computed in one pass when no gradient will flow
    /// and the output is at least 2x2, else as the three ops.
    pub fn sparse_conv2d_pool_kept(
        self,
        weight: Self,
        bias: Option<Self>,
        cfg: &Conv2dConfig,
        kept: &KeptWeight<F>,
        relu: bool,
    ) -> Self {
        let grad_flows = self.tape().grad_enabled()
            && (self.requires_grad()
                || weight.requires_grad()
                || bias.is_some_and(|b| b.requires_grad()));
        let (xv, wv) = (self.value(), weight.value());
        let bv = bias.map(|b| b.value());
        let (xs, ws) = (xv.shape().to_vec(), wv.shape().to_vec());
        let (shape, [oh, ow]) = conv_shape(&xs, &ws, bv.as_deref(), cfg, &kept.pattern);
        if grad_flows || oh < 2 || ow < 2 {
            let y = self.sparse_conv2d_kept(weight, bias, cfg, kept);
            let y = if relu { y.relu() } else { y };
            return y.max_pool2d([2, 2], [2, 2], [0, 0]);
        }
        let (ph, pw) = (oh / 2, ow / 2);
        let x = xv.as_standard_layout();
        let b = bv.as_ref().map(|b| b.as_standard_layout());
        let b = b.as_ref().map(|b| b.as_slice().expect("standard layout"));
        let wq = (shape.in_hw[1] + 2 * shape.padding[1]).div_ceil(shape.stride[1]);
        let emit = |o: usize, full: &mut [F], scratch: &mut Vec<F>, out: &mut [_]| {
            let bias = b.map_or(F::zero(), |b| b[o]);
            // The bias and relu over the whole `OH x Wq` grid in place (the junk columns too:
            // one contiguous loop instead of a short one per row), then the pooling reads the
            // grid with its row stride `Wq`.
            widest(BiasRelu {
                v: full,
                bias,
                relu,
            });
            scratch.resize(ph * pw, F::zero());
            max_pool_plane_2x2(wq, pw, full, scratch, None);
            for (d, &v) in out.iter_mut().zip(scratch.iter()) {
                *d = MaybeUninit::new(v);
            }
        };
        let y = sparse_conv2d_forward_planes(
            &shape,
            &kept.pattern,
            &kept.values,
            x.as_slice().expect("standard layout"),
            ph * pw,
            emit,
        );
        let y = Tensor::from_shape_vec(ndarray::IxDyn(&[xs[0], ws[0], ph, pw]), y)
            .expect("sparse_conv2d_pool: output size");
        let mut inputs = vec![self, weight];
        inputs.extend(bias);
        self.tape()
            .record("sparse_conv2d_pool", y, &inputs, |_, _| {
                unreachable!("sparse_conv2d_pool: no gradient flows (checked above)")
            })
    }
}

/// `v = relu(v + bias)` (or `v + bias`), elementwise, as `sparse_conv2d` adds the bias and
/// `relu` computes (`max(v, 0)`): the same bits.
struct BiasRelu<'a, F> {
    v: &'a mut [F],
    bias: F,
    relu: bool,
}

impl<F: Float> Kernel for BiasRelu<'_, F> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let bias = self.bias;
        if self.relu {
            self.v
                .iter_mut()
                .for_each(|v| *v = (*v + bias).max(F::zero()));
        } else {
            self.v.iter_mut().for_each(|v| *v += bias);
        }
    }
}
