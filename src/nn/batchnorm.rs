//! Batch normalisation layers with PyTorch's `BatchNorm1d` / `BatchNorm2d` semantics.
//!
//! Training mode normalises with the batch statistics ([`Var::batch_norm_train`]) and updates
//! the running estimates as PyTorch does:
//! `running = (1 - momentum) * running + momentum * batch`, with the UNBIASED batch variance for
//! `running_var`, and counts the update in `num_batches_tracked`. Evaluation mode normalises with
//! the running estimates ([`Var::batch_norm_eval`]). Defaults: eps 1e-5, momentum 0.1, affine
//! weight 1 and bias 0, running mean 0 and variance 1. The layer stays dense: its weight is not
//! offered to sparsification methods ([`Module::visit_weights`] visits nothing).

use ndarray::IxDyn;

use crate::float::Float;
use crate::nn::init::constant;
use crate::nn::module::{Module, join};
use crate::param::Param;
use crate::tape::{Tensor, Var};

/// Which input ranks a layer accepts, as PyTorch checks them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchNormKind {
    /// `BatchNorm1d`: `[N, C]` or `[N, C, L]`.
    OneD,
    /// `BatchNorm2d`: `[N, C, H, W]`.
    TwoD,
}

pub struct BatchNorm<F: Float> {
    /// gamma, `[C]` (None when not affine).
    pub weight: Option<Param<F>>,
    /// beta, `[C]` (None when not affine).
    pub bias: Option<Param<F>>,
    pub running_mean: Param<F>,
    pub running_var: Param<F>,
    /// Training steps taken, a buffer of shape `[]` (checkpoints store it as int64).
    pub num_batches_tracked: Param<F>,
    pub eps: f64,
    /// Weight of the batch statistic in the running update; `None` is PyTorch's cumulative
    /// moving average (weight `1 / num_batches_tracked`).
    pub momentum: Option<f64>,
    pub kind: BatchNormKind,
    training: bool,
}

impl<F: Float> BatchNorm<F> {
    /// A layer over `num_features` channels with PyTorch's defaults, in training mode.
    pub fn new(kind: BatchNormKind, num_features: usize) -> Self {
        let c = [num_features];
        BatchNorm {
            weight: Some(Param::new(constant(&c, 1.0))),
            bias: Some(Param::new(constant(&c, 0.0))),
            running_mean: Param::buffer(constant(&c, 0.0)),
            running_var: Param::buffer(constant(&c, 1.0)),
            num_batches_tracked: Param::buffer(Tensor::zeros(IxDyn(&[]))),
            eps: 1e-5,
            momentum: Some(0.1),
            kind,
            training: true,
        }
    }

    /// `nn.BatchNorm1d(num_features)`.
    pub fn new_1d(num_features: usize) -> Self {
        Self::new(BatchNormKind::OneD, num_features)
    }

    /// `nn.BatchNorm2d(num_features)`.
    pub fn new_2d(num_features: usize) -> Self {
        Self::new(BatchNormKind::TwoD, num_features)
    }

    pub fn with_eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    pub fn with_momentum(mut self, momentum: Option<f64>) -> Self {
        self.momentum = momentum;
        self
    }

    /// `affine=False`: no weight or bias.
    pub fn without_affine(mut self) -> Self {
        self.weight = None;
        self.bias = None;
        self
    }

    pub fn num_features(&self) -> usize {
        self.running_mean.len()
    }

    pub fn is_training(&self) -> bool {
        self.training
    }

    fn check_input(&self, shape: &[usize]) {
        let ok = match self.kind {
            BatchNormKind::OneD => shape.len() == 2 || shape.len() == 3,
            BatchNormKind::TwoD => shape.len() == 4,
        };
        assert!(
            ok && shape[1] == self.num_features(),
            "{:?} batch norm over {} channels: unexpected input shape {shape:?}",
            self.kind,
            self.num_features()
        );
    }

    /// `relu(self.forward(x))`, fused into one op in training mode
    /// ([`Var::batch_norm_train_relu`]: the same bits, one pass over memory less each way).
    pub fn forward_relu<'t>(&mut self, x: Var<'t, F>) -> Var<'t, F> {
        self.normalise(x, true)
    }

    /// The layer's forward, followed by a relu when `then_relu`.
    pub(crate) fn normalise<'t>(&mut self, x: Var<'t, F>, then_relu: bool) -> Var<'t, F> {
        self.check_input(&x.shape());
        let tape = x.tape();
        let weight = self.weight.as_ref().map(|w| tape.param(w));
        let bias = self.bias.as_ref().map(|b| tape.param(b));
        if self.training {
            let (y, stats) = if then_relu {
                x.batch_norm_train_relu(weight, bias, self.eps)
            } else {
                x.batch_norm_train(weight, bias, self.eps)
            };
            self.update_running_stats(&stats.mean, &stats.var_unbiased);
            y
        } else {
            let y = x.batch_norm_eval(
                self.running_mean.value(),
                self.running_var.value(),
                weight,
                bias,
                self.eps,
            );
            if then_relu { y.relu() } else { y }
        }
    }

    /// `running = (1 - m) running + m batch` for mean and (unbiased) variance; counts the step.
    fn update_running_stats(&mut self, mean: &Tensor<F>, var_unbiased: &Tensor<F>) {
        let count = self.num_batches_tracked.value_mut();
        count.mapv_inplace(|n| n + F::one());
        let steps = count.first().copied().expect("scalar buffer").f64();
        let m = F::c(self.momentum.unwrap_or(1.0 / steps));
        let keep = F::one() - m;
        for (running, batch) in [
            (&mut self.running_mean, mean),
            (&mut self.running_var, var_unbiased),
        ] {
            running
                .value_mut()
                .zip_mut_with(batch, |r, &b| *r = keep * *r + m * b);
        }
    }
}

impl<F: Float> Module<F> for BatchNorm<F> {
    /// `[N, C, ...]` -> same shape. Training mode also updates the running statistics (even
    /// under `no_grad`, as PyTorch).
    fn forward<'t>(&mut self, x: Var<'t, F>) -> Var<'t, F> {
        self.normalise(x, false)
    }

    fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(&str, &'a Param<F>)) {
        if let Some(w) = &self.weight {
            f(&join(prefix, "weight"), w);
        }
        if let Some(b) = &self.bias {
            f(&join(prefix, "bias"), b);
        }
        f(&join(prefix, "running_mean"), &self.running_mean);
        f(&join(prefix, "running_var"), &self.running_var);
        f(
            &join(prefix, "num_batches_tracked"),
            &self.num_batches_tracked,
        );
    }

    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<F>)) {
        if let Some(w) = &mut self.weight {
            f(&join(prefix, "weight"), w);
        }
        if let Some(b) = &mut self.bias {
            f(&join(prefix, "bias"), b);
        }
        f(&join(prefix, "running_mean"), &mut self.running_mean);
        f(&join(prefix, "running_var"), &mut self.running_var);
        f(
            &join(prefix, "num_batches_tracked"),
            &mut self.num_batches_tracked,
        );
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
    }

    fn is_training(&self) -> bool {
        self.training
    }
}
