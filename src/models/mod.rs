//! Reference architectures of the sparsity literature, one file each, and the registry from
//! `--model` names to models ([`build`]). `docs/models.md` lists each model's source reference,
//! parameter count, multiply-accumulates and differences from the reference.

pub mod conv_bn;
pub mod fastgrnn;
pub mod lenet300;
pub mod lenet5;
pub mod mobilenet;
pub mod resnet;

pub use fastgrnn::FastGrnnClassifier;
pub use lenet5::{LeNet5, LeNet5Options};
pub use lenet300::LeNet300;
pub use mobilenet::MobileNet;
pub use resnet::{BasicBlock, ResNet};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::float::Float;
use crate::nn::Module;
use crate::rng::Rng;

/// The models `--model` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ModelName {
    /// LeNet-300-100 (MLP).
    Lenet300,
    /// LeNet-5-Caffe (2 conv + 2 fc).
    Lenet5,
    /// ResNet-20 for CIFAR (option-A shortcuts).
    Resnet20,
    /// ResNet-32 for CIFAR.
    Resnet32,
    /// ResNet-56 for CIFAR.
    Resnet56,
    /// MobileNetV1 for 32x32 inputs (--width is its alpha).
    Mobilenet,
    /// FastGRNN over pixel rows (hidden size 32 x --width).
    Fastgrnn,
}

impl ModelName {
    /// The `--model` name.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelName::Lenet300 => "lenet300",
            ModelName::Lenet5 => "lenet5",
            ModelName::Resnet20 => "resnet20",
            ModelName::Resnet32 => "resnet32",
            ModelName::Resnet56 => "resnet56",
            ModelName::Mobilenet => "mobilenet",
            ModelName::Fastgrnn => "fastgrnn",
        }
    }
}

impl std::str::FromStr for ModelName {
    type Err = Error;

    /// The model named `name` (its `--model` name).
    fn from_str(name: &str) -> Result<Self> {
        <ModelName as clap::ValueEnum>::from_str(name, false).map_err(|_| {
            let names: Vec<String> = <ModelName as clap::ValueEnum>::value_variants()
                .iter()
                .map(|m| m.to_string())
                .collect();
            Error::invalid(format!(
                "unknown --model `{name}` (expected one of: {})",
                names.join(", ")
            ))
        })
    }
}

impl std::fmt::Display for ModelName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to build: a model name and the data it will see.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    pub name: ModelName,
    /// (channels, height, width) of one input image.
    pub input: (usize, usize, usize),
    pub classes: usize,
    /// Channel-width multiplier (MobileNet's alpha; FastGRNN's hidden size is 32 x width); 1.0
    /// for the standard model.
    pub width: f64,
}

/// The most values (parameters and buffers) a model may hold: 2^28, 1 GiB of f32 weights, 80x
/// MobileNet at width 1 (the largest model here at its standard size). A spec beyond it, from a
/// damaged checkpoint's metadata or absurd images, is refused before anything is allocated.
pub const MAX_MODEL_VALUES: u128 = 1 << 28;

impl ModelSpec {
    /// How many values (parameters and buffers, everything a checkpoint of the model stores) the
    /// model of this spec holds, computed from the spec alone without building it. Saturating, so
    /// an absurd spec gives a huge count rather than an overflow.
    pub fn values(&self) -> u128 {
        let (c, h, w) = self.input;
        let (c128, classes) = (c as u128, self.classes as u128);
        match self.name {
            ModelName::Lenet300 => {
                lenet300::values(product(&[c128, h as u128, w as u128]), classes)
            }
            ModelName::Lenet5 => lenet5::values(self.input, classes),
            ModelName::Resnet20 => resnet::values(3, c128, classes),
            ModelName::Resnet32 => resnet::values(5, c128, classes),
            ModelName::Resnet56 => resnet::values(9, c128, classes),
            ModelName::Mobilenet => mobilenet::values(c128, classes, self.width),
            ModelName::Fastgrnn => fastgrnn::values(self.input, classes, self.width),
        }
    }
}

/// Saturating product of sizes.
pub(crate) fn product(factors: &[u128]) -> u128 {
    factors.iter().fold(1, |acc, &f| acc.saturating_mul(f))
}

/// Saturating sum of value counts.
pub(crate) fn sum(terms: &[u128]) -> u128 {
    terms.iter().fold(0, |acc, &t| acc.saturating_add(t))
}

/// Values of `nn.Linear(inputs, outputs)` with bias.
pub(crate) fn linear_values(inputs: u128, outputs: u128) -> u128 {
    sum(&[product(&[outputs, inputs]), outputs])
}

/// Values of `nn.BatchNorm2d(features)`: weight, bias, running mean and variance, and the batch
/// counter.
pub(crate) fn batchnorm_values(features: u128) -> u128 {
    sum(&[product(&[4, features]), 1])
}

/// Builds the model of `spec`, initialised from `rng`. Every model visits its prunable weights
/// in forward order, so the first visited is the input layer and the last the classifier.
/// A spec whose model would hold more than [`MAX_MODEL_VALUES`] values is refused.
pub fn build(spec: &ModelSpec, rng: &mut Rng) -> Result<Box<dyn Module<f32>>> {
    build_as::<f32>(spec, rng)
}

/// [`build`] with any element type: an `f64` twin for gradient checks, a `Dual64` twin for
/// Hessian-vector products (`crate::hvp`). The same `rng` state gives the same initial values
/// (rounded to `F`) whatever `F` is.
pub fn build_as<F: Float>(spec: &ModelSpec, rng: &mut Rng) -> Result<Box<dyn Module<F>>> {
    let (c, h, w) = spec.input;
    let name = spec.name;
    let values = spec.values();
    if values > MAX_MODEL_VALUES {
        let count = if values == u128::MAX {
            "more values than can be counted".to_string()
        } else {
            format!("{values} values")
        };
        return Err(Error::invalid(format!(
            "--model {name} for {c}x{h}x{w} images and {} classes at width {:?} would hold \
             {count}, over the limit of {MAX_MODEL_VALUES}",
            spec.classes, spec.width
        )));
    }
    if spec.width != 1.0 && !matches!(name, ModelName::Mobilenet | ModelName::Fastgrnn) {
        return Err(Error::invalid(format!(
            "--width {} applies to mobilenet and fastgrnn only, not to --model {name}",
            spec.width
        )));
    }
    Ok(match name {
        ModelName::Lenet300 => Box::new(LeNet300::new(c * h * w, spec.classes, rng)), // bounded above
        ModelName::Lenet5 => Box::new(LeNet5::new(
            spec.input,
            spec.classes,
            LeNet5Options::default(),
            rng,
        )?),
        ModelName::Resnet20 => Box::new(ResNet::cifar(20, c, spec.classes, rng)?),
        ModelName::Resnet32 => Box::new(ResNet::cifar(32, c, spec.classes, rng)?),
        ModelName::Resnet56 => Box::new(ResNet::cifar(56, c, spec.classes, rng)?),
        ModelName::Mobilenet => Box::new(MobileNet::new(c, spec.classes, spec.width, rng)?),
        ModelName::Fastgrnn => Box::new(FastGrnnClassifier::new(
            spec.input,
            spec.classes,
            spec.width,
            rng,
        )?),
    })
}

/// The `visit`, `visit_mut`, `visit_weights`, `visit_weights_mut` and `set_training` methods of a
/// [`Module`] made of named children, for use inside its `impl Module<F>` block. The type must
/// have `children(&self) -> Vec<(String, &dyn Module<F>)>` and the `children_mut` counterpart,
/// both listing the children in forward order under their PyTorch attribute names; each child is
/// visited under `prefix.name`, so parameter names are PyTorch state_dict names and prunable
/// weights come in forward order.
macro_rules! delegate_to_children {
    () => {
        fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(&str, &'a $crate::param::Param<F>)) {
            for (name, child) in self.children() {
                child.visit(&$crate::nn::join(prefix, &name), f);
            }
        }

        fn visit_mut(
            &mut self,
            prefix: &str,
            f: &mut dyn FnMut(&str, &mut $crate::param::Param<F>),
        ) {
            for (name, child) in self.children_mut() {
                child.visit_mut(&$crate::nn::join(prefix, &name), f);
            }
        }

        fn visit_weights<'a>(
            &'a self,
            prefix: &str,
            f: &mut dyn FnMut(&str, &'a $crate::nn::Weight<F>),
        ) {
            for (name, child) in self.children() {
                child.visit_weights(&$crate::nn::join(prefix, &name), f);
            }
        }

        fn visit_weights_mut(
            &mut self,
            prefix: &str,
            f: &mut dyn FnMut(&str, &mut $crate::nn::Weight<F>),
        ) {
            for (name, child) in self.children_mut() {
                child.visit_weights_mut(&$crate::nn::join(prefix, &name), f);
            }
        }

        fn set_training(&mut self, training: bool) {
            for (_, child) in self.children_mut() {
                child.set_training(training);
            }
        }

        fn is_training(&self) -> bool {
            self.children().iter().all(|(_, child)| child.is_training())
        }

        fn visit_low_rank(&self, prefix: &str, f: &mut dyn FnMut(&str, &str, &str)) {
            for (name, child) in self.children() {
                child.visit_low_rank(&$crate::nn::join(prefix, &name), f);
            }
        }
    };
}
pub(crate) use delegate_to_children;
