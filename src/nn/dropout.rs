//! Dropout layer (`nn.Dropout`): inverted dropout in training mode, the identity in evaluation.

use crate::float::Float;
use crate::nn::module::Module;
use crate::param::Param;
use crate::rng::Rng;
use crate::tape::Var;

pub struct Dropout {
    /// Probability of zeroing an element.
    pub p: f64,
    /// The layer's own generator, so its masks do not shift any other random stream.
    rng: Rng,
    training: bool,
}

impl Dropout {
    /// Drops with probability `p` in [0, 1], drawing masks from `rng` (for example
    /// `rng::derived(seed, stream)`). Starts in training mode, as PyTorch modules do.
    pub fn new(p: f64, rng: Rng) -> Self {
        assert!(
            (0.0..=1.0).contains(&p),
            "Dropout: probability {p} is not in [0, 1]"
        );
        Dropout {
            p,
            rng,
            training: true,
        }
    }

    pub fn is_training(&self) -> bool {
        self.training
    }

    /// Same as [`Module::set_training`], callable without naming the element type.
    pub fn set_training(&mut self, training: bool) {
        self.training = training;
    }
}

impl<F: Float> Module<F> for Dropout {
    fn forward<'t>(&mut self, x: Var<'t, F>) -> Var<'t, F> {
        if self.training {
            x.dropout(self.p, &mut self.rng)
        } else {
            x
        }
    }

    fn visit<'a>(&'a self, _prefix: &str, _f: &mut dyn FnMut(&str, &'a Param<F>)) {}

    fn visit_mut(&mut self, _prefix: &str, _f: &mut dyn FnMut(&str, &mut Param<F>)) {}

    fn set_training(&mut self, training: bool) {
        Dropout::set_training(self, training);
    }

    fn is_training(&self) -> bool {
        Dropout::is_training(self)
    }
}
