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
use crate::float::Float;
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

/// Builds the model of `spec`, initialised from `rng`. Every model visits its prunable weights
/// in forward order, so the first visited is the input layer and the last the classifier.
pub fn build(spec: &ModelSpec, rng: &mut Rng) -> Result<Box<dyn Module<f32>>> {
    build_as::<f32>(spec, rng)
}

/// [`build`] with any element type: an `f64` twin for gradient checks, a `Dual64` twin for
/// Hessian-vector products (`crate::hvp`). The same `rng` state gives the same initial values
/// (rounded to `F`) whatever `F` is.
pub fn build_as<F: Float>(spec: &ModelSpec, rng: &mut Rng) -> Result<Box<dyn Module<F>>> {
    let (c, h, w) = spec.input;
    let name = spec.name.as_str();
    if spec.width != 1.0 && !matches!(name, "mobilenet" | "fastgrnn") {
        return Err(Error::invalid(format!(
            "--width {} applies to mobilenet and fastgrnn only, not to --model {name}",
            spec.width
        )));
    }
    Ok(match name {
        "lenet300" => Box::new(LeNet300::new(c * h * w, spec.classes, rng)),
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
