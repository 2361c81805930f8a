//! [`ConvBnPair`]: `bn2(conv2(relu(bn1(conv1(x)))))`, the body that ResNet's BasicBlock and
//! MobileNet's depthwise-separable block share (they differ in their convolutions and in what
//! follows the body: a residual sum then relu, or a relu), with its PyTorch attribute names.

use crate::float::Float;
use crate::nn::{BatchNorm, Conv2d, Module};
use crate::tape::Var;

pub struct ConvBnPair<F: Float> {
    pub conv1: Conv2d<F>,
    pub bn1: BatchNorm<F>,
    pub conv2: Conv2d<F>,
    pub bn2: BatchNorm<F>,
}

impl<F: Float> ConvBnPair<F> {
    /// Each convolution followed by a `BatchNorm2d` over its output channels.
    pub fn new(conv1: Conv2d<F>, conv2: Conv2d<F>) -> Self {
        ConvBnPair {
            bn1: BatchNorm::new_2d(conv1.out_channels()),
            bn2: BatchNorm::new_2d(conv2.out_channels()),
            conv1,
            conv2,
        }
    }

    /// `bn2(conv2(relu(bn1(conv1(x)))))`.
    pub fn forward<'t>(&mut self, x: Var<'t, F>) -> Var<'t, F> {
        self.run(x, false)
    }

    /// `relu(self.forward(x))`, with the last relu fused into `bn2`.
    pub fn forward_relu<'t>(&mut self, x: Var<'t, F>) -> Var<'t, F> {
        self.run(x, true)
    }

    fn run<'t>(&mut self, x: Var<'t, F>, then_relu: bool) -> Var<'t, F> {
        let y = self.bn1.forward_relu(self.conv1.forward(x));
        self.bn2.normalise(self.conv2.forward(y), then_relu)
    }

    /// The four layers in forward order, named as in the reference blocks.
    pub fn children(&self) -> Vec<(String, &dyn Module<F>)> {
        vec![
            ("conv1".into(), &self.conv1),
            ("bn1".into(), &self.bn1),
            ("conv2".into(), &self.conv2),
            ("bn2".into(), &self.bn2),
        ]
    }

    pub fn children_mut(&mut self) -> Vec<(String, &mut dyn Module<F>)> {
        vec![
            ("conv1".into(), &mut self.conv1),
            ("bn1".into(), &mut self.bn1),
            ("conv2".into(), &mut self.conv2),
            ("bn2".into(), &mut self.bn2),
        ]
    }
}
