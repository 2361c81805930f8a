//! Plain dense training, `--method dense`: no transform, no hook.

use crate::error::Result;
use crate::methods::options::TrainContext;
use crate::methods::plugin::{Method, NoOptions, Plugin};

/// Plain dense training.
pub struct Dense;

impl Plugin<TrainContext> for Dense {
    type Options = NoOptions;
    const SHARED: &'static [&'static str] = &[];

    fn build(_: &NoOptions, _: &TrainContext) -> Result<Self> {
        Ok(Dense)
    }
}

impl Method for Dense {
    fn name(&self) -> &'static str {
        "dense"
    }
}
