//! Masked linear and conv2d ops that compute only at a fixed [`SparsePattern`]'s kept entries
//! (`kernels::sparse_linear`, `kernels::sparse_conv`).
//!
//! `x.sparse_linear(w, b, M)` is `x.matmul_nt(w * M) + b` and `x.sparse_conv2d(w, b, cfg, M)` is
//! `x.conv2d(w * M, b, cfg)`, with `M` the pattern's 0/1 mask: pruned entries of `w` are never
//! read, whatever their value. The weight gradient is returned dense, in the weight's shape, with
//! +0.0 at the pruned entries (exactly what `w * M` sends back), so optimisers and mask hygiene
//! treat it like the dense masked path's.

use std::sync::Arc;

use ndarray::{CowArray, IxDyn};

use crate::float::Float;
use crate::kernels::sparse_conv::{SparseConvShape, sparse_conv2d_backward, sparse_conv2d_forward};
use crate::kernels::sparse_linear::{
    BatchInner, sparse_linear_backward, sparse_linear_forward, sparse_linear_inference,
};
use crate::kernels::sparse_pattern::SparsePattern;
use crate::ops::conv::Conv2dConfig;
use crate::tape::{Tensor, Var};

/// The elements of a value in row-major order (a copy only if it is not already standard).
fn standard<F: Float>(t: &Tensor<F>) -> CowArray<'_, F, IxDyn> {
    t.as_standard_layout()
}

fn shaped<F: Float>(v: Vec<F>, shape: &[usize]) -> Tensor<F> {
    Tensor::from_shape_vec(IxDyn(shape), v).expect("sparse op: gradient size")
}

/// A masked weight as the sparse ops read it: the pattern and the weight's values at its kept
/// entries, in CSR order. `nn::Weight` keeps one per weight value (gathered again only when the
/// value or the mask changes), so inference gathers nothing per forward pass: the 95%-sparse
/// fc1 of LeNet-300 read the kept entries out of its 940 KB dense weight on every call.
#[derive(Clone)]
pub struct KeptWeight<F> {
    pub pattern: Arc<SparsePattern>,
    pub values: Arc<Vec<F>>,
}

impl<F: Float> KeptWeight<F> {
    /// The kept entries of `weight` (the pattern's shape, any layout).
    pub fn gather(pattern: &Arc<SparsePattern>, weight: &Tensor<F>) -> Self {
        assert_eq!(
            weight.len(),
            pattern.rows() * pattern.cols(),
            "sparse op: weight {:?} for a {}x{} pattern",
            weight.shape(),
            pattern.rows(),
            pattern.cols()
        );
        KeptWeight {
            pattern: Arc::clone(pattern),
            values: Arc::new(pattern.gather(standard(weight).as_slice().expect("standard layout"))),
        }
    }
}

impl<'t, F: Float> Var<'t, F> {
    /// `[N, in] x ([out, in] ⊙ M)^T (+ [out]) -> [N, out]`, computed at the kept entries of
    /// `pattern` (an `[out, in]` pattern) only. Panics, naming the shapes, when they disagree.
    pub fn sparse_linear(
        self,
        weight: Self,
        bias: Option<Self>,
        pattern: &Arc<SparsePattern>,
    ) -> Self {
        let kept = KeptWeight::gather(pattern, &weight.value());
        self.sparse_linear_kept(weight, bias, &kept)
    }

    /// [`Var::sparse_linear`] with the kept values already gathered: `kept.values` must be the
    /// value of `weight` at `kept.pattern` ([`KeptWeight::gather`]).
    pub fn sparse_linear_kept(
        self,
        weight: Self,
        bias: Option<Self>,
        kept: &KeptWeight<F>,
    ) -> Self {
        let (pattern, values) = (&kept.pattern, &kept.values);
        let (xv, wv) = (self.value(), weight.value());
        let bv = bias.map(|b| b.value());
        let (xs, ws) = (xv.shape().to_vec(), wv.shape().to_vec());
        assert!(
            xs.len() == 2
                && ws == [pattern.rows(), pattern.cols()]
                && xs[1] == ws[1]
                && bv.as_ref().is_none_or(|b| b.shape() == [ws[0]]),
            "op `sparse_linear`: input {xs:?}, weight {ws:?}, bias {:?}, pattern {}x{}",
            bv.as_ref().map(|b| b.shape().to_vec()),
            pattern.rows(),
            pattern.cols()
        );
        // Without a backward pass (inference) no `X^T` needs keeping: the batch-split kernel.
        let grad_flows = self.tape().grad_enabled()
            && (self.requires_grad()
                || weight.requires_grad()
                || bias.is_some_and(|b| b.requires_grad()));
        if !grad_flows {
            let x = standard(&xv);
            let b = bv.as_ref().map(|b| standard(b));
            let y = sparse_linear_inference(
                pattern,
                values,
                x.as_slice().expect("standard layout"),
                b.as_ref().map(|b| b.as_slice().expect("standard layout")),
            );
            let mut inputs = vec![self, weight];
            inputs.extend(bias);
            return self.tape().record(
                "sparse_linear",
                shaped(y, &[xs[0], ws[0]]),
                &inputs,
                |_, _| unreachable!("sparse_linear: no gradient flows (checked above)"),
            );
        }
        let xt = BatchInner::from_rows(
            standard(&xv).as_slice().expect("standard layout"),
            xs[0],
            xs[1],
        );
        let y = {
            let b = bv.as_ref().map(|b| standard(b));
            let b = b.as_ref().map(|b| b.as_slice().expect("standard layout"));
            sparse_linear_forward(pattern, values, &xt, b)
        };
        let y = shaped(y, &[xs[0], ws[0]]);
        let mut inputs = vec![self, weight];
        inputs.extend(bias);
        let (pattern, values) = (Arc::clone(pattern), Arc::clone(values));
        self.tape()
            .record("sparse_linear", y, &inputs, move |g, needs| {
                let g = standard(g);
                let need_bias = needs.get(2).copied().unwrap_or(false);
                let grads = sparse_linear_backward(
                    &pattern,
                    &values,
                    &xt,
                    g.as_slice().expect("standard layout"),
                    [needs[0], needs[1], need_bias],
                );
                let mut out = vec![
                    grads.input.map(|v| shaped(v, &xs)),
                    grads
                        .weight_values
                        .map(|v| shaped(pattern.scatter(&v), &ws)),
                ];
                if needs.len() == 3 {
                    out.push(grads.bias.map(|v| shaped(v, &[ws[0]])));
                }
                out
            })
    }

    /// `conv2d(x, W ⊙ M, b, cfg)` computed at the kept entries of `pattern` only (a `[C_out,
    /// C_in/groups * kh * kw]` pattern of the OIHW weight). Panics, naming the shapes, when they
    /// disagree or the kernel does not fit.
    pub fn sparse_conv2d(
        self,
        weight: Self,
        bias: Option<Self>,
        cfg: &Conv2dConfig,
        pattern: &Arc<SparsePattern>,
    ) -> Self {
        let kept = KeptWeight::gather(pattern, &weight.value());
        self.sparse_conv2d_kept(weight, bias, cfg, &kept)
    }

    /// [`Var::sparse_conv2d`] with the kept values already gathered: `kept.values` must be the
    /// value of `weight` at `kept.pattern` ([`KeptWeight::gather`]).
    pub fn sparse_conv2d_kept(
        self,
        weight: Self,
        bias: Option<Self>,
        cfg: &Conv2dConfig,
        kept: &KeptWeight<F>,
    ) -> Self {
        let (pattern, values) = (&kept.pattern, &kept.values);
        let (xv, wv) = (self.value(), weight.value());
        let bv = bias.map(|b| b.value());
        let (xs, ws) = (xv.shape().to_vec(), wv.shape().to_vec());
        let (shape, [oh, ow]) = conv_shape(&xs, &ws, bv.as_deref(), cfg, pattern);
        let y = {
            let x = standard(&xv);
            let b = bv.as_ref().map(|b| standard(b));
            let b = b.as_ref().map(|b| b.as_slice().expect("standard layout"));
            sparse_conv2d_forward(
                &shape,
                pattern,
                values,
                x.as_slice().expect("standard layout"),
                b,
            )
        };
        let y = shaped(y, &[xs[0], ws[0], oh, ow]);
        let mut inputs = vec![self, weight];
        inputs.extend(bias);
        let (pattern, values) = (Arc::clone(pattern), Arc::clone(values));
        self.tape()
            .record("sparse_conv2d", y, &inputs, move |g, needs| {
                let (x, g) = (standard(&xv), standard(g));
                let need_bias = needs.get(2).copied().unwrap_or(false);
                let grads = sparse_conv2d_backward(
                    &shape,
                    &pattern,
                    &values,
                    x.as_slice().expect("standard layout"),
                    g.as_slice().expect("standard layout"),
                    [needs[0], needs[1], need_bias],
                );
                let mut out = vec![
                    grads.input.map(|v| shaped(v, &xs)),
                    grads
                        .weight_values
                        .map(|v| shaped(pattern.scatter(&v), &ws)),
                ];
                if needs.len() == 3 {
                    out.push(grads.bias.map(|v| shaped(v, &[ws[0]])));
                }
                out
            })
    }
}

/// The convolution's shape from the input, weight and bias, checked against each other and the
/// pattern, and its output size. Panics, naming the shapes, when they disagree or the kernel
/// does not fit.
pub(crate) fn conv_shape<F: Float>(
    xs: &[usize],
    ws: &[usize],
    bias: Option<&Tensor<F>>,
    cfg: &Conv2dConfig,
    pattern: &SparsePattern,
) -> (SparseConvShape, [usize; 2]) {
    let fail = || -> ! {
        panic!(
            "op `sparse_conv2d`: input {xs:?}, weight {ws:?}, bias {:?}, {cfg:?}, pattern {}x{}",
            bias.map(|b| b.shape().to_vec()),
            pattern.rows(),
            pattern.cols()
        )
    };
    if xs.len() != 4 || ws.len() != 4 || cfg.groups == 0 {
        fail();
    }
    let shape = SparseConvShape {
        batch: xs[0],
        in_channels: xs[1],
        out_channels: ws[0],
        groups: cfg.groups,
        in_hw: [xs[2], xs[3]],
        kernel: [ws[2], ws[3]],
        stride: cfg.stride,
        padding: cfg.padding,
        dilation: cfg.dilation,
    };
    let Some(out_hw) = shape.out_hw() else { fail() };
    if ws[1] * cfg.groups != xs[1]
        || shape.weight_matrix() != [pattern.rows(), pattern.cols()]
        || bias.is_some_and(|b| b.shape() != [ws[0]])
    {
        fail();
    }
    (shape, out_hw)
}
