//! Batch normalisation (Ioffe & Szegedy 2015), alone or followed by a relu in one op.
//!
//! Batch norm normalises over every axis except the channel axis 1, so one op serves `[N, C]`,
//! `[N, C, L]` and `[N, C, H, W]`. With M the number of elements per channel:
//!
//! - training: `xhat = (x - mean) / sqrt(var + eps)` with the batch mean and the BIASED batch
//!   variance (divide by M), `y = gamma * xhat + beta`. The gradient flows through the batch
//!   statistics (closed form, sums over one channel's M elements):
//!   `dx = gamma / sqrt(var + eps) * (g - mean(g) - xhat * mean(g * xhat))`,
//!   `dgamma = sum(g * xhat)`, `dbeta = sum(g)`.
//!   The op also returns the batch mean and the UNBIASED variance (divide by M - 1) as plain
//!   arrays: PyTorch updates `running_var` with the unbiased one.
//! - evaluation: the affine map `(x - running_mean) / sqrt(running_var + eps) * gamma + beta`,
//!   composed from elementwise ops.
//! - training, then relu (`batch_norm_train_relu`, the `conv -> bn -> relu` of ResNet and
//!   MobileNet): the same values and gradients as the composition, bit for bit, with one pass over
//!   memory less each way and no stored pre-activation. The backward recomputes the relu's input
//!   `(x - mean) * scale + shift` from x with the forward's `F` constants, and gates g with it
//!   before the sums above.
//!
//! Statistics and gradient sums are accumulated in f64 (as PyTorch does on CPU) by one thread
//! per channel in a fixed order, so results are bit-identical for every thread count. (In
//! general in [`Float::Acc`]: `f64` for `f32` and `f64`, the dual number itself for `Dual64`, so
//! that Hessian-vector products differentiate through the batch statistics.)

use std::mem::MaybeUninit;

use ndarray::{Array3, ArrayView2, ArrayView3, ArrayViewMut2, Axis, CowArray, IxDyn, Zip};
use num_traits::Float as _;
use rayon::prelude::*;

use crate::float::{Accumulator, Float};
use crate::ops::norm_sums::{Terms, channel_sums};
use crate::tape::{Tensor, Var};

/// Below this many elements the per-channel work runs on the calling thread.
const PARALLEL_MIN_ELEMENTS: usize = 1 << 15;

/// Per-channel statistics of one training batch, as plain arrays (no gradient): what a batch
/// norm layer needs to update its running estimates.
#[derive(Clone, Debug)]
pub struct BatchStats<F: Float> {
    /// Mean over all axes but 1, shape `[C]`.
    pub mean: Tensor<F>,
    /// Unbiased variance (sum of squared deviations / (M - 1)), shape `[C]`.
    pub var_unbiased: Tensor<F>,
}

/// `[N, C, rest...]` as `[N, C, L]` with L the product of the rest (1 for `[N, C]`).
fn ncl_shape(op: &str, shape: &[usize]) -> (usize, usize, usize) {
    assert!(
        shape.len() >= 2,
        "op `{op}`: expected [N, C, ...], got shape {shape:?}"
    );
    (shape[0], shape[1], shape[2..].iter().product())
}

/// A standard-layout value (see `as_standard_layout`, which borrows when it already is) viewed
/// as `[N, C, L]`.
fn as_ncl<'a, F: Float>(
    x: &'a CowArray<'_, F, IxDyn>,
    ncl: (usize, usize, usize),
) -> ArrayView3<'a, F> {
    x.view()
        .into_shape_with_order(ncl)
        .expect("standard layout of the same size")
}

/// Channels per rayon task, so that small values run on the calling thread.
fn min_channels_per_task((n, _, l): (usize, usize, usize)) -> usize {
    (PARALLEL_MIN_ELEMENTS / (n * l).max(1)).max(1)
}

/// Panics unless a per-channel value has shape `[C]`.
fn check_per_channel(op: &str, what: &str, shape: &[usize], c: usize) {
    assert_eq!(
        shape,
        &[c],
        "op `{op}`: {what} must have shape [{c}], got {shape:?}"
    );
}

/// The per-channel affine parameter (gamma or beta) as accumulator values; `default` when absent.
fn channel_param<F: Float>(
    op: &str,
    what: &str,
    p: Option<Var<'_, F>>,
    c: usize,
    default: f64,
) -> Vec<F::Acc> {
    match p {
        Some(p) => {
            let v = p.value();
            check_per_channel(op, what, v.shape(), c);
            v.iter().map(|x| x.acc()).collect()
        }
        None => vec![F::Acc::c(default); c],
    }
}

/// `y = (x - mean) * scale + shift`, one channel's normalisation as the forward applies it (in
/// `F`, so that the backward recomputes the relu's input bit for bit).
#[derive(Clone, Copy)]
struct Affine<F> {
    mean: F,
    scale: F,
    shift: F,
}

impl<F: Float> Affine<F> {
    #[inline(always)]
    fn of(self, x: F) -> F {
        (x - self.mean) * self.scale + self.shift
    }
}

/// What the forward keeps of one channel: the batch mean and biased variance, and its map.
struct Channel<F: Float> {
    mean: F::Acc,
    var: F::Acc,
    affine: Affine<F>,
}

/// The backward of one channel (constants shared by every channel).
struct ChannelBackward<A> {
    /// Elements per channel.
    m: A,
    eps: A,
    then_relu: bool,
}

impl<A: Accumulator> ChannelBackward<A> {
    /// Writes `dx` (when asked) and returns `[sum(g), sum(g * xhat)]` (dbeta, dgamma) for one
    /// channel's `x` and upstream `g`, both `[N, L]`. With a fused relu, the gradient reaching
    /// the normalisation is `g * 1[pre > 0]`, computed as relu's backward computes it (times one
    /// or zero) so that the bits are the composition's; it is written into `dx` and read back
    /// from there while the channel is in cache.
    fn run<F: Float<Acc = A>>(
        &self,
        channel: &Channel<F>,
        gamma: A,
        xc: ArrayView2<'_, F>,
        gc: ArrayView2<'_, F>,
        dxc: Option<ArrayViewMut2<'_, MaybeUninit<F>>>,
    ) -> [A; 2] {
        let mu = channel.mean;
        let inv_std = A::one() / (channel.var + self.eps).sqrt();
        let sums = |g: &ArrayView2<'_, F>| {
            // sum(g) and sum(g * xhat), xhat = (x - mean) * inv_std.
            let [sum_g, sum_g_centred] = channel_sums(&xc, g, Terms::Gradient(mu));
            [sum_g, sum_g_centred * inv_std]
        };
        // dx = gamma * inv_std * (g - mean(g) - xhat * mean(g * xhat)), written as
        // k g + (x - mean) k2 + k3 with per-channel constants.
        let dx_terms = |[sum_g, sum_g_xhat]: [A; 2]| {
            let k = gamma * inv_std;
            let k2 = F::from_acc(-k * inv_std * sum_g_xhat / self.m);
            let k3 = F::from_acc(-k * sum_g / self.m);
            (F::from_acc(k), F::from_acc(mu), k2, k3)
        };
        let affine = channel.affine;
        let relu_gate = |x: F| {
            if affine.of(x) > F::zero() {
                F::one()
            } else {
                F::zero()
            }
        };
        match (self.then_relu, dxc) {
            (false, None) => sums(&gc),
            (false, Some(mut dxc)) => {
                let s = sums(&gc);
                let (k, mu, k2, k3) = dx_terms(s);
                Zip::from(&mut dxc)
                    .and(&xc)
                    .and(&gc)
                    .for_each(|d, &x, &g| _ = d.write(k * g + (x - mu) * k2 + k3));
                s
            }
            (true, None) => sums(
                &Zip::from(&xc)
                    .and(&gc)
                    .map_collect(|&x, &g| g * relu_gate(x))
                    .view(),
            ),
            (true, Some(mut dxc)) => {
                Zip::from(&mut dxc)
                    .and(&xc)
                    .and(&gc)
                    .for_each(|d, &x, &g| _ = d.write(g * relu_gate(x)));
                // SAFETY: every element of the channel was written just above.
                let mut gated = unsafe { dxc.assume_init() };
                let s = sums(&gated.view());
                let (k, mu, k2, k3) = dx_terms(s);
                Zip::from(&mut gated)
                    .and(&xc)
                    .for_each(|d, &x| *d = k * *d + (x - mu) * k2 + k3);
                s
            }
        }
    }
}

impl<'t, F: Float> Var<'t, F> {
    /// Training-mode batch normalisation over all axes but 1 (see the module documentation),
    /// with optional affine `weight` (gamma) and `bias` (beta) of shape `[C]`. Returns the
    /// output and the batch statistics (mean, unbiased variance) for the running estimates.
    pub fn batch_norm_train(
        self,
        weight: Option<Self>,
        bias: Option<Self>,
        eps: f64,
    ) -> (Self, BatchStats<F>) {
        self.batch_norm_train_op(weight, bias, eps, false)
    }

    /// `batch_norm_train(weight, bias, eps)` followed by `relu`, in one op: the same values and
    /// gradients bit for bit (relu'(0) = 0), without storing or re-reading the normalised value.
    /// The backward recomputes the relu's input from x with the forward's per-channel constants.
    pub fn batch_norm_train_relu(
        self,
        weight: Option<Self>,
        bias: Option<Self>,
        eps: f64,
    ) -> (Self, BatchStats<F>) {
        self.batch_norm_train_op(weight, bias, eps, true)
    }

    fn batch_norm_train_op(
        self,
        weight: Option<Self>,
        bias: Option<Self>,
        eps: f64,
        then_relu: bool,
    ) -> (Self, BatchStats<F>) {
        let op = if then_relu {
            "batch_norm_train_relu"
        } else {
            "batch_norm_train"
        };
        let x = self.value();
        let ncl = ncl_shape(op, x.shape());
        let (n, c, l) = ncl;
        let m = n * l;
        // PyTorch: "Expected more than 1 value per channel when training".
        assert!(
            m > 1,
            "op `{op}`: expected more than 1 value per channel when training, got shape {:?}",
            x.shape()
        );
        let gamma = channel_param(op, "weight", weight, c, 1.0);
        let beta = channel_param(op, "bias", bias, c, 0.0);

        let xs = x.as_standard_layout();
        let x3 = as_ncl(&xs, ncl);
        // Uninitialised (a zeroing pass on the calling thread would cost as much as a channel
        // loop): the loop below writes every element once.
        let mut y = Array3::<F>::uninit(ncl);
        // Per channel: mean, biased variance (two passes, f64), then y = (x - mean) * a + beta
        // (and its relu).
        let (m_acc, eps_acc) = (F::Acc::c(m as f64), F::Acc::c(eps));
        let per_channel: Vec<Channel<F>> = x3
            .axis_iter(Axis(1))
            .into_par_iter()
            .zip(y.axis_iter_mut(Axis(1)))
            .enumerate()
            .with_min_len(min_channels_per_task(ncl))
            .map(|(ch, (xc, mut yc))| {
                let mean = channel_sums(&xc, &xc, Terms::Value)[0] / m_acc;
                let var = channel_sums(&xc, &xc, Terms::SquaredDeviation(mean))[0] / m_acc;
                let affine = Affine {
                    mean: F::from_acc(mean),
                    scale: F::from_acc(gamma[ch] / (var + eps_acc).sqrt()),
                    shift: F::from_acc(beta[ch]),
                };
                let zip = Zip::from(&mut yc).and(&xc);
                if then_relu {
                    zip.for_each(|y, &x| _ = y.write(affine.of(x).max(F::zero())));
                } else {
                    zip.for_each(|y, &x| _ = y.write(affine.of(x)));
                }
                Channel { mean, var, affine }
            })
            .collect();
        // SAFETY: every channel of `y` was visited once and all its elements written.
        let y = unsafe { y.assume_init() };
        let y = y.into_shape_with_order(x.raw_dim()).expect("same size");
        let stats = BatchStats {
            mean: Tensor::from_shape_fn(IxDyn(&[c]), |i| F::from_acc(per_channel[i[0]].mean)),
            var_unbiased: Tensor::from_shape_fn(IxDyn(&[c]), |i| {
                F::from_acc(per_channel[i[0]].var * m_acc / F::Acc::c((m - 1) as f64))
            }),
        };

        let mut inputs = vec![self];
        let weight_at = weight.map(|w| {
            inputs.push(w);
            inputs.len() - 1
        });
        let bias_at = bias.map(|b| {
            inputs.push(b);
            inputs.len() - 1
        });
        let n_inputs = inputs.len();
        let y = self.tape().record(op, y, &inputs, move |g, needs| {
            let xs = x.as_standard_layout();
            let x3 = as_ncl(&xs, ncl);
            let gs = g.as_standard_layout();
            let g3 = as_ncl(&gs, ncl);
            // Uninitialised, as `y`: the channel loop writes every element once.
            let mut dx = needs[0].then(|| Array3::<F>::uninit(ncl));
            let dx_channels: Vec<Option<ArrayViewMut2<'_, MaybeUninit<F>>>> = match &mut dx {
                Some(dx3) => dx3.axis_iter_mut(Axis(1)).map(Some).collect(),
                None => (0..c).map(|_| None).collect(),
            };
            let backward = ChannelBackward {
                m: m_acc,
                eps: eps_acc,
                then_relu,
            };
            let sums: Vec<[F::Acc; 2]> = x3
                .axis_iter(Axis(1))
                .into_par_iter()
                .zip(g3.axis_iter(Axis(1)))
                .zip(dx_channels)
                .enumerate()
                .with_min_len(min_channels_per_task(ncl))
                .map(|(ch, ((xc, gc), dxc))| backward.run(&per_channel[ch], gamma[ch], xc, gc, dxc))
                .collect();
            let mut grads: Vec<Option<Tensor<F>>> = vec![None; n_inputs];
            grads[0] = dx.map(|dx| {
                // SAFETY: every channel of `dx` was visited once and all its elements written.
                let dx = unsafe { dx.assume_init() };
                dx.into_shape_with_order(x.raw_dim()).expect("same size")
            });
            // dgamma = sum(g * xhat), dbeta = sum(g).
            let per_channel = |which: usize| {
                Tensor::from_shape_fn(IxDyn(&[c]), |i| F::from_acc(sums[i[0]][which]))
            };
            if let Some(at) = weight_at.filter(|&at| needs[at]) {
                grads[at] = Some(per_channel(1));
            }
            if let Some(at) = bias_at.filter(|&at| needs[at]) {
                grads[at] = Some(per_channel(0));
            }
            grads
        });
        (y, stats)
    }

    /// Evaluation-mode batch normalisation with fixed statistics `running_mean` and
    /// `running_var` (shape `[C]`): `(x - mean) / sqrt(var + eps) * weight + bias`, composed from
    /// elementwise ops (so its gradient is theirs).
    pub fn batch_norm_eval(
        self,
        running_mean: &Tensor<F>,
        running_var: &Tensor<F>,
        weight: Option<Self>,
        bias: Option<Self>,
        eps: f64,
    ) -> Self {
        const OP: &str = "batch_norm_eval";
        let shape = self.shape();
        let (_, c, _) = ncl_shape(OP, &shape);
        check_per_channel(OP, "running_mean", running_mean.shape(), c);
        check_per_channel(OP, "running_var", running_var.shape(), c);
        // [C] -> [1, C, 1, ...] so it broadcasts along axis 1.
        let mut per_channel = vec![1; shape.len()];
        per_channel[1] = c;
        let tape = self.tape();
        let constant = |t: Tensor<F>| {
            tape.constant(
                t.into_shape_with_order(IxDyn(&per_channel))
                    .expect("[C] values"),
            )
        };
        let inv_std = running_var.mapv(|v| F::one() / (v + F::c(eps)).sqrt());
        let mut scale = constant(inv_std);
        if let Some(w) = weight {
            check_per_channel(OP, "weight", &w.shape(), c);
            scale = scale * w.reshape(&per_channel);
        }
        let mut y = (self - constant(running_mean.clone())) * scale;
        if let Some(b) = bias {
            check_per_channel(OP, "bias", &b.shape(), c);
            y = y + b.reshape(&per_channel);
        }
        y
    }
}
