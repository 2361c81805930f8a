//! Matrix products on `kernels::gemm`. Transposed operands are strided views, never copies.
//!
//! For Y = A B: dA = G B^T, dB = A^T G. For Y = A B^T (`matmul_nt`, the Linear layer's
//! `x W^T`): dA = G B, dB = G^T A; `linear` adds a bias row b, db = sum over the rows of G.

use ndarray::{Array2, Array3, ArrayView2, Axis, Ix2, Ix3};

use crate::float::Float;
use crate::kernels::gemm::gemm;
use crate::tape::{Tensor, Var};

fn as2<'a, F: Float>(op: &str, x: &'a Tensor<F>) -> ArrayView2<'a, F> {
    x.view()
        .into_dimensionality::<Ix2>()
        .unwrap_or_else(|_| panic!("op `{op}`: expected a matrix, got shape {:?}", x.shape()))
}

/// `a b` as a fresh matrix.
fn product<F: Float>(a: ArrayView2<'_, F>, b: ArrayView2<'_, F>) -> Array2<F> {
    let mut c = Array2::<F>::zeros((a.nrows(), b.ncols()));
    gemm(F::one(), a, b, F::zero(), c.view_mut());
    c
}

impl<'t, F: Float> Var<'t, F> {
    /// 2-D product `[m, k] x [k, n] -> [m, n]`.
    pub fn matmul(self, b: Self) -> Self {
        let (av, bv) = (self.value(), b.value());
        let (a2, b2) = (as2("matmul", &av), as2("matmul", &bv));
        assert_eq!(
            a2.ncols(),
            b2.nrows(),
            "op `matmul`: {:?} x {:?}",
            av.shape(),
            bv.shape()
        );
        let y = product(a2, b2).into_dyn();
        self.tape()
            .record("matmul", y, &[self, b], move |g, needs| {
                let (a2, b2, g2) = (as2("matmul", &av), as2("matmul", &bv), as2("matmul", g));
                vec![
                    needs[0].then(|| product(g2, b2.t()).into_dyn()),
                    needs[1].then(|| product(a2.t(), g2).into_dyn()),
                ]
            })
    }

    /// `[m, k] x [n, k]^T -> [m, n]` without materialising the transpose.
    pub fn matmul_nt(self, b: Self) -> Self {
        self.product_nt("matmul_nt", b, None)
    }

    /// `x W^T + b` (PyTorch's `F.linear`): x `[N, in]`, W `[out, in]`, b `[out]` added to every
    /// row. One op rather than `matmul_nt` then a broadcast `add`: the bias is added in place on
    /// the product (one pass while it is in cache) and its gradient is the column sum of G, so
    /// neither the add's output nor its copies of G are allocated. The same bits as the two ops.
    pub fn linear(self, w: Self, b: Option<Self>) -> Self {
        self.product_nt("linear", w, b)
    }

    /// `A B^T (+ bias)`: dA = G B, dB = G^T A, d bias = sum over the rows of G.
    fn product_nt(self, op: &'static str, b: Self, bias: Option<Self>) -> Self {
        let (av, bv) = (self.value(), b.value());
        let (a2, b2) = (as2(op, &av), as2(op, &bv));
        assert_eq!(
            a2.ncols(),
            b2.ncols(),
            "op `{op}`: {:?} x {:?}^T",
            av.shape(),
            bv.shape()
        );
        let mut y = product(a2, b2.t());
        let mut inputs = vec![self, b];
        if let Some(bias) = bias {
            let bias_value = bias.value();
            assert_eq!(
                bias_value.shape(),
                [b2.nrows()],
                "op `{op}`: bias of shape {:?} for {} outputs",
                bias_value.shape(),
                b2.nrows()
            );
            let bias_row = bias_value
                .view()
                .into_dimensionality::<ndarray::Ix1>()
                .expect("1-d bias");
            for mut row in y.rows_mut() {
                row += &bias_row;
            }
            inputs.push(bias);
        }
        self.tape()
            .record(op, y.into_dyn(), &inputs, move |g, needs| {
                let (a2, b2, g2) = (as2(op, &av), as2(op, &bv), as2(op, g));
                let mut grads = vec![
                    needs[0].then(|| product(g2, b2).into_dyn()),
                    needs[1].then(|| product(g2.t(), a2).into_dyn()),
                ];
                if needs.len() == 3 {
                    // Rows summed in order, as the engine reduces a broadcast add's gradient.
                    grads.push(needs[2].then(|| g2.sum_axis(Axis(0)).into_dyn()));
                }
                grads
            })
    }

    /// Batched product `[b, m, k] x [b, k, n] -> [b, m, n]`.
    pub fn bmm(self, b: Self) -> Self {
        let (av, bv) = (self.value(), b.value());
        fn as3<F: Float>(x: &Tensor<F>) -> ndarray::ArrayView3<'_, F> {
            x.view().into_dimensionality::<Ix3>().unwrap_or_else(|_| {
                panic!(
                    "op `bmm`: expected [batch, rows, cols], got {:?}",
                    x.shape()
                )
            })
        }
        let (a3, b3) = (as3(&av), as3(&bv));
        assert!(
            a3.dim().0 == b3.dim().0 && a3.dim().2 == b3.dim().1,
            "op `bmm`: {:?} x {:?}",
            av.shape(),
            bv.shape()
        );
        let batched =
            |x: ndarray::ArrayView3<'_, F>, xt: bool, y: ndarray::ArrayView3<'_, F>, yt: bool| {
                let rows = if xt { x.dim().2 } else { x.dim().1 };
                let cols = if yt { y.dim().1 } else { y.dim().2 };
                let mut out = Array3::<F>::zeros((x.dim().0, rows, cols));
                for ((xi, yi), oi) in x.outer_iter().zip(y.outer_iter()).zip(out.outer_iter_mut()) {
                    let xi = if xt { xi.reversed_axes() } else { xi };
                    let yi = if yt { yi.reversed_axes() } else { yi };
                    gemm(F::one(), xi, yi, F::zero(), oi);
                }
                out.into_dyn()
            };
        let y = batched(a3, false, b3, false);
        self.tape().record("bmm", y, &[self, b], move |g, needs| {
            let (a3, b3) = (as3(&av), as3(&bv));
            let g3 = g
                .view()
                .into_dimensionality::<Ix3>()
                .expect("bmm gradient is 3-d");
            vec![
                needs[0].then(|| batched(g3, false, b3, true)),
                needs[1].then(|| batched(a3, true, g3, false)),
            ]
        })
    }
}
