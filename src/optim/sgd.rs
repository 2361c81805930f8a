//! Stochastic gradient descent with PyTorch's `torch.optim.SGD` semantics:
//!
//! ```text
//! d = g + wd * w                      (L2 weight decay; decoupled: w *= 1 - lr * wd instead)
//! b = d                 on the first step,   b = mu * b + (1 - dampening) * d   after
//! d = d + mu * b        (Nesterov)       or  d = b   (classic)
//! w = w - lr * d
//! ```

use std::collections::HashMap;

use ndarray::Zip;

use crate::float::Float;
use crate::optim::Optimizer;
use crate::tape::Tensor;

/// Hyper-parameters of [`Sgd`].
#[derive(Clone, Debug, PartialEq)]
pub struct SgdConfig {
    pub lr: f64,
    pub momentum: f64,
    pub dampening: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    /// Decoupled weight decay (SGDW) instead of L2 added to the gradient.
    pub decoupled: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            lr: 0.1,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            decoupled: false,
        }
    }
}

/// SGD; momentum buffers are keyed by parameter name.
pub struct Sgd<F: Float> {
    pub config: SgdConfig,
    momentum: HashMap<String, Tensor<F>>,
}

impl<F: Float> Sgd<F> {
    pub fn new(config: SgdConfig) -> Self {
        assert!(
            !config.nesterov || (config.momentum > 0.0 && config.dampening == 0.0),
            "Nesterov momentum requires momentum > 0 and zero dampening (as PyTorch)"
        );
        Sgd {
            config,
            momentum: HashMap::new(),
        }
    }

    /// The momentum buffer of a parameter, if one exists yet.
    pub fn momentum_buffer(&self, name: &str) -> Option<&Tensor<F>> {
        self.momentum.get(name)
    }
}

impl<F: Float> Optimizer<F> for Sgd<F> {
    fn update(&mut self, name: &str, w: &mut Tensor<F>, g: &Tensor<F>) {
        let c = &self.config;
        let (lr, mu, wd) = (F::c(c.lr), F::c(c.momentum), F::c(c.weight_decay));
        let l2 = if c.decoupled { F::zero() } else { wd };
        if c.decoupled && c.weight_decay != 0.0 {
            w.mapv_inplace(|v| v * (F::one() - lr * wd));
        }
        if c.momentum == 0.0 {
            Zip::from(w).and(g).for_each(|w, &g| *w -= lr * (g + l2 * *w));
            return;
        }
        let damp = F::one() - F::c(c.dampening);
        let nesterov = c.nesterov;
        let first = !self.momentum.contains_key(name);
        let buf = self.momentum.entry(name.to_string()).or_insert_with(|| Tensor::zeros(w.raw_dim()));
        Zip::from(w).and(g).and(buf).for_each(|w, &g, b| {
            let d = g + l2 * *w;
            *b = if first { d } else { mu * *b + damp * d };
            let step = if nesterov { d + mu * *b } else { *b };
            *w -= lr * step;
        });
    }

    fn mask_state(&mut self, name: &str, mask: &Tensor<F>) {
        if let Some(b) = self.momentum.get_mut(name) {
            *b *= mask;
        }
    }

    fn lr(&self) -> f64 {
        self.config.lr
    }

    fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }
}
