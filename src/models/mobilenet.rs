//! MobileNetV1 (Howard et al. 2017) for 32x32 images, as Kuang Liu's `pytorch-cifar`
//! (`models/mobilenet.py`) adapts it to CIFAR: the ImageNet network without its stride-2 stem,
//!
//! ```text
//! conv1 3x3 32 (stride 1) -> bn1 -> relu
//! 13 depthwise-separable blocks (layers.0 .. layers.12), output channels (stride):
//!   64, 128 (2), 128, 256 (2), 256, 512 (2), 512 x 5, 1024 (2), 1024
//! average pool -> linear
//! ```
//!
//! A block is `relu(bn2(conv2(relu(bn1(conv1(x))))))` with `conv1` a 3x3 depthwise convolution
//! (`groups` = channels, carrying the block's stride) and `conv2` a 1x1 pointwise convolution,
//! both without bias. Names are the reference's state_dict names (`layers.3.conv1.weight`,
//! `layers.3.bn2.running_var`, ...); initialisation is PyTorch's default, as there. 3,217,226
//! parameters and 46,354,432 multiply-accumulates per 32x32 image for 10 classes at width 1.
//!
//! **Width multiplier** (the paper's alpha, `--width`): every channel count c becomes
//! `round_channels(alpha c)`, rounded to the nearest multiple of 8, at least 8, and up by 8 more
//! if rounding lost over 10% (the `_make_divisible` rule of the TensorFlow MobileNet code). Width
//! 1 is the reference; small widths keep at least 8 channels per layer.
//!
//! Differences from the reference: the final pool is a global average pool (the reference's
//! `avg_pool2d(out, 2)` is the same on the 2x2 map a 32x32 image gives, and the global pool also
//! takes other sizes, e.g. 28x28 MNIST); any input channel count.

use crate::error::{Error, Result};
use crate::float::Float;
use crate::models::conv_bn::ConvBnPair;
use crate::models::{batchnorm_values, delegate_to_children, linear_values, product, sum};
use crate::nn::{BatchNorm, Conv2d, Linear, Module};
use crate::ops::conv::Conv2dConfig;
use crate::rng::Rng;
use crate::tape::Var;

/// Channels of the stem convolution at width 1.
const STEM_CHANNELS: usize = 32;

/// (output channels at width 1, stride) of the 13 blocks.
const BLOCKS: [(usize, usize); 13] = [
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
];

/// `channels x width`, rounded to a multiple of 8 (at least 8), never more than 10% below.
pub fn round_channels(channels: usize, width: f64) -> usize {
    const DIVISOR: usize = 8;
    let scaled = channels as f64 * width;
    let rounded = ((scaled + DIVISOR as f64 / 2.0) as usize / DIVISOR * DIVISOR).max(DIVISOR);
    if (rounded as f64) < 0.9 * scaled {
        rounded.saturating_add(DIVISOR)
    } else {
        rounded
    }
}

/// Values of `MobileNet::new(channels, classes, width)` (see
/// [`crate::models::ModelSpec::values`]).
pub fn values(channels: u128, classes: u128, width: f64) -> u128 {
    let stem = round_channels(STEM_CHANNELS, width) as u128;
    let mut terms = vec![product(&[stem, channels, 9]), batchnorm_values(stem)];
    let mut inputs = stem;
    for (outputs, _) in BLOCKS {
        let outputs = round_channels(outputs, width) as u128;
        // Depthwise 3x3 (one filter per channel), then pointwise 1x1, each with batchnorm.
        terms.extend([
            product(&[inputs, 9]),
            batchnorm_values(inputs),
            product(&[outputs, inputs]),
            batchnorm_values(outputs),
        ]);
        inputs = outputs;
    }
    terms.push(linear_values(inputs, classes));
    sum(&terms)
}

fn conv<F: Float>(
    inputs: usize,
    outputs: usize,
    kernel: usize,
    cfg: Conv2dConfig,
    rng: &mut Rng,
) -> Conv2d<F> {
    Conv2d::new(inputs, outputs, [kernel, kernel], cfg, false, rng)
}

/// Depthwise 3x3 convolution (with the stride), then pointwise 1x1, each with batchnorm and relu.
pub struct SeparableBlock<F: Float> {
    /// `conv1` (depthwise), `bn1`, `conv2` (pointwise), `bn2`, named as in the reference.
    pub body: ConvBnPair<F>,
}

impl<F: Float> SeparableBlock<F> {
    pub fn new(inputs: usize, outputs: usize, stride: usize, rng: &mut Rng) -> Self {
        let depthwise = Conv2dConfig {
            stride: [stride; 2],
            padding: [1, 1],
            groups: inputs,
            ..Conv2dConfig::default()
        };
        let conv1 = conv(inputs, inputs, 3, depthwise, rng);
        let conv2 = conv(inputs, outputs, 1, Conv2dConfig::default(), rng);
        SeparableBlock {
            body: ConvBnPair::new(conv1, conv2),
        }
    }

    fn children(&self) -> Vec<(String, &dyn Module<F>)> {
        self.body.children()
    }

    fn children_mut(&mut self) -> Vec<(String, &mut dyn Module<F>)> {
        self.body.children_mut()
    }
}

impl<F: Float> Module<F> for SeparableBlock<F> {
    fn forward<'t>(&mut self, x: Var<'t, F>) -> Var<'t, F> {
        self.body.forward_relu(x)
    }

    delegate_to_children!();
}

pub struct MobileNet<F: Float> {
    pub conv1: Conv2d<F>,
    pub bn1: BatchNorm<F>,
    pub layers: Vec<SeparableBlock<F>>,
    pub linear: Linear<F>,
}

impl<F: Float> MobileNet<F> {
    /// For images with `channels` channels, `classes` outputs and width multiplier `width`.
    pub fn new(channels: usize, classes: usize, width: f64, rng: &mut Rng) -> Result<Self> {
        if !(width > 0.0 && width.is_finite()) || channels == 0 || classes == 0 {
            return Err(Error::invalid(format!(
                "MobileNet needs a positive --width, input channels and classes, got {width}, {channels} and {classes}"
            )));
        }
        let stem = round_channels(STEM_CHANNELS, width);
        let pad1 = Conv2dConfig {
            padding: [1, 1],
            ..Conv2dConfig::default()
        };
        let conv1 = conv(channels, stem, 3, pad1, rng);
        let mut inputs = stem;
        let layers = BLOCKS
            .iter()
            .map(|&(outputs, stride)| {
                let outputs = round_channels(outputs, width);
                let block = SeparableBlock::new(inputs, outputs, stride, rng);
                inputs = outputs;
                block
            })
            .collect();
        Ok(MobileNet {
            conv1,
            bn1: BatchNorm::new_2d(stem),
            layers,
            linear: Linear::new(inputs, classes, true, rng),
        })
    }

    fn children(&self) -> Vec<(String, &dyn Module<F>)> {
        let mut all: Vec<(String, &dyn Module<F>)> =
            vec![("conv1".into(), &self.conv1), ("bn1".into(), &self.bn1)];
        for (i, block) in self.layers.iter().enumerate() {
            all.push((format!("layers.{i}"), block));
        }
        all.push(("linear".into(), &self.linear));
        all
    }

    fn children_mut(&mut self) -> Vec<(String, &mut dyn Module<F>)> {
        let mut all: Vec<(String, &mut dyn Module<F>)> = vec![
            ("conv1".into(), &mut self.conv1),
            ("bn1".into(), &mut self.bn1),
        ];
        for (i, block) in self.layers.iter_mut().enumerate() {
            all.push((format!("layers.{i}"), block));
        }
        all.push(("linear".into(), &mut self.linear));
        all
    }
}

impl<F: Float> Module<F> for MobileNet<F> {
    /// x: [N, C, H, W] -> logits [N, classes].
    fn forward<'t>(&mut self, x: Var<'t, F>) -> Var<'t, F> {
        let mut x = self.bn1.forward_relu(self.conv1.forward(x));
        for block in &mut self.layers {
            x = block.forward(x);
        }
        self.linear.forward(x.global_avg_pool2d())
    }

    delegate_to_children!();
}
