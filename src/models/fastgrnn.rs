//! A FastGRNN sequence classifier (Kusupati et al., NeurIPS 2018) over the rows of an image, as
//! EdgeML's `RNNClassifierModel` (`edgeml_pytorch/trainer/fastmodel.py`, one FastGRNN layer,
//! `linear=True`) builds it: the cell runs over the sequence and a linear layer classifies the
//! last hidden state.
//!
//! An image [C, H, W] is read as H time steps of C x W features (row by row, all channels of a
//! row together): 28 steps of 28 pixels for MNIST, 32 steps of 96 values for CIFAR.
//!
//! Sizes: hidden size `round(32 x width)` (at least 1; `--width` scales it as it scales MobileNet's
//! channels). W and U are **low rank by default, at full rank**: W = W2 W1 with rank
//! min(input, hidden) and U = U2 U1 with rank hidden. The factorisation changes nothing the model
//! can express, but it is the form in which STR's structured variant (soft-thresholding rank-1
//! components) and EdgeML's low-rank training operate; [`FastGrnnClassifier::with_config`] takes
//! any [`FastGrnnConfig`] (full-rank or other ranks).
//!
//! Names are EdgeML's: `rnn_list.0.cell.W1`, `W2`, `U1`, `U2`, `bias_gate`, `bias_update`,
//! `zeta`, `nu`, then `hidden2keyword.weight` and `.bias`. (EdgeML's state_dict also lists the
//! cell a second time under `rnn_list.0.unrollRNN.RNNCell.*`, the same tensors through the
//! unrolling wrapper; exports here hold each tensor once, so load them with `strict=False`.)
//! The model returns logits; EdgeML's default `apply_softmax=True` returns their log-softmax.
//!
//! FLOP accounting: each cell weight is applied once per time step, so the forward pass records
//! T uses per example on every cell weight (`Weight::record_uses`).

use crate::error::{Error, Result};
use crate::float::Float;
use crate::models::{delegate_to_children, linear_values, product, sum};
use crate::nn::{FastGrnnCell, FastGrnnConfig, Linear, Module, Weight, unroll_sequence};
use crate::rng::Rng;
use crate::tape::Var;

/// Hidden size at width 1.
pub const BASE_HIDDEN: usize = 32;

/// Where the cell sits in EdgeML's `RNNClassifierModel` (`rnn_list.0` is its first layer).
const CELL_NAME: &str = "rnn_list.0.cell";
const CLASSIFIER_NAME: &str = "hidden2keyword";

/// Hidden size at `width`.
fn hidden_size(width: f64) -> usize {
    ((BASE_HIDDEN as f64 * width).round() as usize).max(1)
}

/// Values of `FastGrnnClassifier::new(input, classes, width)` (see
/// [`crate::models::ModelSpec::values`]).
pub fn values(input: (usize, usize, usize), classes: u128, width: f64) -> u128 {
    let (c, _, w) = input;
    let features = product(&[c as u128, w as u128]);
    let hidden = hidden_size(width) as u128;
    let w_rank = features.min(hidden);
    sum(&[
        // W1 [r, features], W2 [hidden, r]; U1 [hidden, hidden], U2 [hidden, hidden].
        product(&[w_rank, sum(&[features, hidden])]),
        product(&[2, hidden, hidden]),
        // bias_gate, bias_update [1, hidden]; zeta, nu [1, 1].
        product(&[2, hidden]),
        2,
        linear_values(hidden, classes),
    ])
}

pub struct FastGrnnClassifier<F: Float> {
    pub cell: FastGrnnCell<F>,
    pub hidden2keyword: Linear<F>,
}

impl<F: Float> FastGrnnClassifier<F> {
    /// For `(channels, height, width)` images (height steps of channels x width features),
    /// `classes` outputs and hidden size `round(32 x width)`, with full-rank low-rank factors.
    pub fn new(
        input: (usize, usize, usize),
        classes: usize,
        width: f64,
        rng: &mut Rng,
    ) -> Result<Self> {
        let (c, h, w) = input;
        let features = c * w;
        if !(width > 0.0 && width.is_finite()) || features == 0 || h == 0 || classes == 0 {
            return Err(Error::invalid(format!(
                "--model fastgrnn needs a positive --width, a non-empty image and classes, got {width}, {c}x{h}x{w} and {classes}"
            )));
        }
        let hidden = hidden_size(width);
        let config = FastGrnnConfig::new(features, hidden).low_rank(features.min(hidden), hidden);
        Self::with_config(&config, classes, rng)
    }

    /// A classifier around a cell of any configuration (input size = channels x image width).
    pub fn with_config(config: &FastGrnnConfig, classes: usize, rng: &mut Rng) -> Result<Self> {
        let cell = FastGrnnCell::new(config, rng)?;
        let hidden2keyword = Linear::new(config.hidden_size, classes, true, rng);
        Ok(FastGrnnClassifier {
            cell,
            hidden2keyword,
        })
    }

    fn children(&self) -> Vec<(String, &dyn Module<F>)> {
        vec![
            (CELL_NAME.into(), &self.cell),
            (CLASSIFIER_NAME.into(), &self.hidden2keyword),
        ]
    }

    fn children_mut(&mut self) -> Vec<(String, &mut dyn Module<F>)> {
        vec![
            (CELL_NAME.into(), &mut self.cell),
            (CLASSIFIER_NAME.into(), &mut self.hidden2keyword),
        ]
    }
}

impl<F: Float> Module<F> for FastGrnnClassifier<F> {
    /// x: [N, C, H, W] -> logits [N, classes].
    fn forward<'t>(&mut self, x: Var<'t, F>) -> Var<'t, F> {
        let shape = x.shape();
        assert_eq!(
            shape.len(),
            4,
            "FastGrnnClassifier: expected images [N, C, H, W], got {shape:?}"
        );
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3]);
        // [N, C, H, W] -> [H, N, C, W] -> [H, N, C * W]: step t is image row t, all channels.
        let steps = x.permute(&[2, 0, 1, 3]).reshape(&[h, n, c * w]);
        let last = unroll_sequence(&self.cell, steps, None).last;
        self.cell
            .visit_weights("", &mut |_, weight: &Weight<F>| weight.record_uses(h));
        self.hidden2keyword.forward(last)
    }

    delegate_to_children!();
}
