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

use crate::error::{Error, Result};
use crate::nn::Module;
use crate::rng::Rng;
use crate::train::config::MODELS;

/// What to build: a model name and the data it will see.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    /// One of `train::config::MODELS`.
    pub name: String,
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
    /// an absurd spec gives a huge count rather than an overflow; 0 for an unknown model name.
    pub fn values(&self) -> u128 {
        let (c, h, w) = self.input;
        let (c128, classes) = (c as u128, self.classes as u128);
        match self.name.as_str() {
            "lenet300" => lenet300::values(product(&[c128, h as u128, w as u128]), classes),
            "lenet5" => lenet5::values(self.input, classes),
            "resnet20" | "resnet32" | "resnet56" => {
                let depth: u128 = self.name["resnet".len()..].parse().expect("a depth");
                resnet::values((depth - 2) / 6, c128, classes)
            }
            "mobilenet" => mobilenet::values(c128, classes, self.width),
            "fastgrnn" => fastgrnn::values(self.input, classes, self.width),
            _ => 0,
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
    let (c, h, w) = spec.input;
    let name = spec.name.as_str();
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
    if spec.width != 1.0 && !matches!(name, "mobilenet" | "fastgrnn") {
        return Err(Error::invalid(format!(
            "--width {} applies to mobilenet and fastgrnn only, not to --model {name}",
            spec.width
        )));
    }
    Ok(match name {
        "lenet300" => Box::new(LeNet300::new(c * h * w, spec.classes, rng)), // bounded above
        "lenet5" => Box::new(LeNet5::new(
            spec.input,
            spec.classes,
            LeNet5Options::default(),
            rng,
        )?),
        "resnet20" | "resnet32" | "resnet56" => {
            let depth = name["resnet".len()..].parse().expect("a depth");
            Box::new(ResNet::cifar(depth, c, spec.classes, rng)?)
        }
        "mobilenet" => Box::new(MobileNet::new(c, spec.classes, spec.width, rng)?),
        "fastgrnn" => Box::new(FastGrnnClassifier::new(
            spec.input,
            spec.classes,
            spec.width,
            rng,
        )?),
        other => {
            return Err(Error::invalid(format!(
                "unknown --model `{other}` (expected one of: {})",
                MODELS.join(", ")
            )));
        }
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

        fn visit_low_rank(&self, prefix: &str, f: &mut dyn FnMut(&str, &str, &str)) {
            for (name, child) in self.children() {
                child.visit_low_rank(&$crate::nn::join(prefix, &name), f);
            }
        }
    };
}
pub(crate) use delegate_to_children;
