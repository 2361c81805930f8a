//! LeNet-5-Caffe: the LeNet-5 variant of Caffe's MNIST example (`examples/mnist/lenet.prototxt`),
//! the LeNet-5 of the pruning literature (Han et al. 2015, SNIP, RigL, STR's baselines):
//!
//! ```text
//! conv1 20@5x5 -> maxpool 2 -> conv2 50@5x5 -> maxpool 2 -> fc1 500 -> relu -> fc2 classes
//! ```
//!
//! 431,080 parameters and 2,293,000 multiply-accumulates per 28x28 image (conv1 288,000, conv2
//! 1,600,000, fc1 400,000, fc2 5,000).
//!
//! **Relus after the convolutions.** Caffe's network has none: its only nonlinearities are the
//! max-pools and the relu after `ip1`. The PyTorch ports in the sparsity literature
//! (`LeNet_5_Caffe` in Tim Dettmers' `sparse_learning`, after Milad Alizadeh's SNIP code, and
//! the PyTorch training-step benchmark we race) put a relu after each convolution. The Caffe network is the
//! default here; [`LeNet5Options::relu_after_conv`] gives the PyTorch ports' variant.
//!
//! Parameter names are `conv1`, `conv2`, `fc1`, `fc2` (Caffe calls the linear layers `ip1`,
//! `ip2`; `sparse_learning` calls them `fc3`, `fc4`), with PyTorch's layouts and PyTorch's default
//! initialisation (Caffe's prototxt uses Xavier weights and zero biases).

use crate::error::{Error, Result};
use crate::float::Float;
use crate::models::{delegate_to_children, linear_values, product, sum};
use crate::nn::{Conv2d, Linear, Module};
use crate::ops::conv::Conv2dConfig;
use crate::rng::Rng;
use crate::tape::Var;

/// Variants of [`LeNet5`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeNet5Options {
    /// A relu after each convolution, as the PyTorch ports have (false: Caffe's network).
    pub relu_after_conv: bool,
}

pub struct LeNet5<F: Float> {
    pub conv1: Conv2d<F>,
    pub conv2: Conv2d<F>,
    pub fc1: Linear<F>,
    pub fc2: Linear<F>,
    pub options: LeNet5Options,
}

/// Side of the feature map after `5x5 conv (valid) -> 2x2 max-pool`.
fn conv_pool(side: usize) -> usize {
    side.saturating_sub(4) / 2
}

/// Values of the model for `(channels, height, width)` images and `classes` outputs (see
/// [`crate::models::ModelSpec::values`]).
pub fn values(input: (usize, usize, usize), classes: u128) -> u128 {
    let (c, h, w) = input;
    let features = product(&[
        50,
        conv_pool(conv_pool(h)) as u128,
        conv_pool(conv_pool(w)) as u128,
    ]);
    sum(&[
        product(&[20, c as u128, 25]),
        20,
        50 * 20 * 25 + 50,
        linear_values(features, 500),
        linear_values(500, classes),
    ])
}

impl<F: Float> LeNet5<F> {
    /// For `(channels, height, width)` images and `classes` outputs (fc1 sees 50 x 4 x 4 = 800
    /// features for 28x28 images, 50 x 5 x 5 for 32x32). Fails for images smaller than 16x16.
    pub fn new(
        input: (usize, usize, usize),
        classes: usize,
        options: LeNet5Options,
        rng: &mut Rng,
    ) -> Result<Self> {
        let (c, h, w) = input;
        let (fh, fw) = (conv_pool(conv_pool(h)), conv_pool(conv_pool(w)));
        if c == 0 || fh == 0 || fw == 0 {
            return Err(Error::invalid(format!(
                "--model lenet5 needs images of at least 1x16x16, got {c}x{h}x{w}"
            )));
        }
        let conv = Conv2dConfig::default();
        Ok(LeNet5 {
            conv1: Conv2d::new(c, 20, [5, 5], conv, true, rng),
            conv2: Conv2d::new(20, 50, [5, 5], conv, true, rng),
            fc1: Linear::new(50 * fh * fw, 500, true, rng),
            fc2: Linear::new(500, classes, true, rng),
            options,
        })
    }

    fn children(&self) -> Vec<(String, &dyn Module<F>)> {
        vec![
            ("conv1".into(), &self.conv1),
            ("conv2".into(), &self.conv2),
            ("fc1".into(), &self.fc1),
            ("fc2".into(), &self.fc2),
        ]
    }

    fn children_mut(&mut self) -> Vec<(String, &mut dyn Module<F>)> {
        vec![
            ("conv1".into(), &mut self.conv1),
            ("conv2".into(), &mut self.conv2),
            ("fc1".into(), &mut self.fc1),
            ("fc2".into(), &mut self.fc2),
        ]
    }
}

/// Convolution, the optional relu, then 2x2 max-pooling.
/// (One pass on the sparse kernels in inference: `Conv2d::forward_pool`.)
fn conv_relu_pool<'t, F: Float>(conv: &mut Conv2d<F>, relu: bool, x: Var<'t, F>) -> Var<'t, F> {
    conv.forward_pool(x, relu)
}

impl<F: Float> Module<F> for LeNet5<F> {
    /// x: [N, C, H, W] -> logits [N, classes].
    fn forward<'t>(&mut self, x: Var<'t, F>) -> Var<'t, F> {
        let relu = self.options.relu_after_conv;
        let x = conv_relu_pool(&mut self.conv1, relu, x);
        let x = conv_relu_pool(&mut self.conv2, relu, x);
        let x = self.fc1.forward(x.flatten(1)).relu();
        self.fc2.forward(x)
    }

    delegate_to_children!();
}
