//! ResNet-20/32/56 for CIFAR (He et al., "Deep Residual Learning for Image Recognition", 2016,
//! section 4.2), as Yerlan Idelbayev's `pytorch_resnet_cifar10` (`resnet.py`) implements it:
//!
//! ```text
//! conv1 3x3 16 -> bn1 -> relu
//! layer1: n BasicBlocks, 16 channels
//! layer2: n BasicBlocks, 32 channels, the first with stride 2
//! layer3: n BasicBlocks, 64 channels, the first with stride 2
//! global average pool -> linear
//! ```
//!
//! with depth = 6n + 2 (n = 3, 5, 9 for ResNet-20, -32, -56). A BasicBlock is
//! `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))` with 3x3 convolutions without bias.
//! Where the shape changes the shortcut is the paper's **option A**, parameter-free: subsample
//! by the stride and zero-pad the new channels, half in front and half behind.
//!
//! Parameter names are the reference's state_dict names (`conv1.weight`, `bn1.running_mean`,
//! `layer2.0.conv1.weight`, ..., `linear.weight`), so checkpoints load into it. Initialisation as
//! there: `kaiming_normal_` (fan-in, gain sqrt 2) on every conv and linear weight, PyTorch's
//! default uniform linear bias, batchnorm weight 1 and bias 0. Parameter counts: 269,722
//! (ResNet-20), 464,154 (-32), 853,018 (-56) for 10 classes.
//!
//! Differences from the reference: any input channel count and size (the reference takes 3x32x32;
//! its `avg_pool2d(out, out.size()[3])` is the global average pool for square maps), and the
//! shortcut subsamples by the block's stride where the reference always takes every second pixel
//! (the same in every block the architecture has).

use crate::error::{Error, Result};
use crate::float::Float;
use crate::models::conv_bn::ConvBnPair;
use crate::models::{batchnorm_values, delegate_to_children, linear_values, product, sum};
use crate::nn::init::{Fan, kaiming_normal};
use crate::nn::{BatchNorm, Conv2d, Linear, Module, Weight};
use crate::ops::conv::Conv2dConfig;
use crate::rng::Rng;
use crate::tape::Var;

/// Channels of the three stages.
const STAGE_CHANNELS: [usize; 3] = [16, 32, 64];

/// A 3x3 convolution with padding 1 and no bias, weight `kaiming_normal_` as in the reference.
fn conv3x3<F: Float>(inputs: usize, outputs: usize, stride: usize, rng: &mut Rng) -> Conv2d<F> {
    Conv2d {
        weight: Weight::new(kaiming_normal(&[outputs, inputs, 3, 3], 0.0, Fan::In, rng)),
        bias: None,
        cfg: Conv2dConfig {
            stride: [stride; 2],
            padding: [1, 1],
            ..Conv2dConfig::default()
        },
    }
}

/// The residual path of a [`BasicBlock`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shortcut {
    /// `x` itself (same channels, stride 1).
    Identity,
    /// Option A: `x[:, :, ::stride, ::stride]` with `before` zero channels in front and `after`
    /// behind (the reference pads `planes // 4` on each side, which is (out - in) / 2 when the
    /// channels double).
    SubsamplePad {
        stride: usize,
        before: usize,
        after: usize,
    },
}

impl Shortcut {
    /// The shortcut from `inputs` to `outputs` channels at `stride`.
    pub fn new(inputs: usize, outputs: usize, stride: usize) -> Self {
        if stride == 1 && inputs == outputs {
            return Shortcut::Identity;
        }
        assert!(
            outputs >= inputs,
            "option-A shortcut: cannot go from {inputs} to fewer ({outputs}) channels"
        );
        let before = (outputs - inputs) / 2;
        Shortcut::SubsamplePad {
            stride,
            before,
            after: outputs - inputs - before,
        }
    }

    /// Applies the shortcut to x [N, C, H, W].
    pub fn apply<'t, F: Float>(&self, x: Var<'t, F>) -> Var<'t, F> {
        match *self {
            Shortcut::Identity => x,
            Shortcut::SubsamplePad {
                stride,
                before,
                after,
            } => {
                let shape = x.shape();
                x.slice(2, 0, shape[2], stride)
                    .slice(3, 0, shape[3], stride)
                    .pad(1, before, after)
            }
        }
    }
}

/// Values of `ResNet::new(blocks, channels, classes)` (see
/// [`crate::models::ModelSpec::values`]).
pub fn values(blocks: u128, channels: u128, classes: u128) -> u128 {
    let conv3x3 = |inputs: u128, outputs: u128| product(&[outputs, inputs, 9]);
    let mut terms = vec![
        conv3x3(channels, STAGE_CHANNELS[0] as u128),
        batchnorm_values(STAGE_CHANNELS[0] as u128),
    ];
    let mut inputs = STAGE_CHANNELS[0] as u128;
    for outputs in STAGE_CHANNELS.map(|c| c as u128) {
        let first = sum(&[
            conv3x3(inputs, outputs),
            conv3x3(outputs, outputs),
            product(&[2, batchnorm_values(outputs)]),
        ]);
        let rest = sum(&[
            product(&[2, conv3x3(outputs, outputs)]),
            product(&[2, batchnorm_values(outputs)]),
        ]);
        terms.extend([
            product(&[blocks.min(1), first]),
            product(&[blocks.saturating_sub(1), rest]),
        ]);
        if blocks > 0 {
            inputs = outputs;
        }
    }
    terms.push(linear_values(inputs, classes));
    sum(&terms)
}

/// `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`.
pub struct BasicBlock<F: Float> {
    /// `conv1`, `bn1`, `conv2`, `bn2` (named without a prefix of their own, as in the reference).
    pub body: ConvBnPair<F>,
    pub shortcut: Shortcut,
}

impl<F: Float> BasicBlock<F> {
    /// From `inputs` to `outputs` channels; `stride` applies to conv1 and the shortcut.
    pub fn new(inputs: usize, outputs: usize, stride: usize, rng: &mut Rng) -> Self {
        let conv1 = conv3x3(inputs, outputs, stride, rng);
        let conv2 = conv3x3(outputs, outputs, 1, rng);
        BasicBlock {
            body: ConvBnPair::new(conv1, conv2),
            shortcut: Shortcut::new(inputs, outputs, stride),
        }
    }

    fn children(&self) -> Vec<(String, &dyn Module<F>)> {
        self.body.children()
    }

    fn children_mut(&mut self) -> Vec<(String, &mut dyn Module<F>)> {
        self.body.children_mut()
    }
}

impl<F: Float> Module<F> for BasicBlock<F> {
    /// [N, in, H, W] -> [N, out, ceil(H / stride), ceil(W / stride)].
    fn forward<'t>(&mut self, x: Var<'t, F>) -> Var<'t, F> {
        self.body.forward(x).add_relu(self.shortcut.apply(x))
    }

    delegate_to_children!();
}

/// The CIFAR ResNet of depth 6n + 2.
pub struct ResNet<F: Float> {
    pub conv1: Conv2d<F>,
    pub bn1: BatchNorm<F>,
    /// `layer1`, `layer2`, `layer3`: n blocks each.
    pub stages: [Vec<BasicBlock<F>>; 3],
    pub linear: Linear<F>,
}

impl<F: Float> ResNet<F> {
    /// ResNet-`depth` (20, 32, 44, 56, 110, ...: 6n + 2) for images with `channels` channels.
    pub fn cifar(depth: usize, channels: usize, classes: usize, rng: &mut Rng) -> Result<Self> {
        if depth < 8 || !(depth - 2).is_multiple_of(6) {
            return Err(Error::invalid(format!(
                "ResNet depth must be 6n + 2 with n >= 1 (20, 32, 56, ...), got {depth}"
            )));
        }
        if channels == 0 || classes == 0 {
            return Err(Error::invalid(format!(
                "ResNet needs at least one input channel and one class, got {channels} and {classes}"
            )));
        }
        Ok(Self::new((depth - 2) / 6, channels, classes, rng))
    }

    /// `blocks` BasicBlocks per stage (the reference's `ResNet(BasicBlock, [n, n, n])`).
    pub fn new(blocks: usize, channels: usize, classes: usize, rng: &mut Rng) -> Self {
        let conv1 = conv3x3(channels, STAGE_CHANNELS[0], 1, rng);
        let mut inputs = STAGE_CHANNELS[0];
        let stages = STAGE_CHANNELS.map(|outputs| {
            let first_stride = if outputs == STAGE_CHANNELS[0] { 1 } else { 2 };
            (0..blocks)
                .map(|i| {
                    let stride = if i == 0 { first_stride } else { 1 };
                    let block = BasicBlock::new(inputs, outputs, stride, rng);
                    inputs = outputs;
                    block
                })
                .collect()
        });
        let mut linear = Linear::new(inputs, classes, true, rng);
        linear.weight = Weight::new(kaiming_normal(&[classes, inputs], 0.0, Fan::In, rng));
        ResNet {
            conv1,
            bn1: BatchNorm::new_2d(STAGE_CHANNELS[0]),
            stages,
            linear,
        }
    }

    /// Blocks per stage (n).
    pub fn blocks_per_stage(&self) -> usize {
        self.stages[0].len()
    }

    fn children(&self) -> Vec<(String, &dyn Module<F>)> {
        let mut all: Vec<(String, &dyn Module<F>)> =
            vec![("conv1".into(), &self.conv1), ("bn1".into(), &self.bn1)];
        for (s, stage) in self.stages.iter().enumerate() {
            for (i, block) in stage.iter().enumerate() {
                all.push((format!("layer{}.{i}", s + 1), block));
            }
        }
        all.push(("linear".into(), &self.linear));
        all
    }

    fn children_mut(&mut self) -> Vec<(String, &mut dyn Module<F>)> {
        let mut all: Vec<(String, &mut dyn Module<F>)> = vec![
            ("conv1".into(), &mut self.conv1),
            ("bn1".into(), &mut self.bn1),
        ];
        for (s, stage) in self.stages.iter_mut().enumerate() {
            for (i, block) in stage.iter_mut().enumerate() {
                all.push((format!("layer{}.{i}", s + 1), block));
            }
        }
        all.push(("linear".into(), &mut self.linear));
        all
    }
}

impl<F: Float> Module<F> for ResNet<F> {
    /// x: [N, C, H, W] -> logits [N, classes].
    fn forward<'t>(&mut self, x: Var<'t, F>) -> Var<'t, F> {
        let mut x = self.bn1.forward_relu(self.conv1.forward(x));
        for block in self.stages.iter_mut().flatten() {
            x = block.forward(x);
        }
        self.linear.forward(x.global_avg_pool2d())
    }

    delegate_to_children!();
}
