//! Parameter-free pooling layers, so models can list them like PyTorch's `nn.MaxPool2d`,
//! `nn.AvgPool2d` and `nn.AdaptiveAvgPool2d(1)` + flatten. The math is in `ops/pool.rs`.

use crate::float::Float;
use crate::nn::module::Module;
use crate::param::Param;
use crate::tape::Var;

/// Window geometry shared by the two windowed layers (PyTorch's `stride` defaults to `kernel`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolWindow {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
}

impl PoolWindow {
    /// Square window of side `kernel`, stride `kernel`, no padding.
    pub fn square(kernel: usize) -> Self {
        PoolWindow {
            kernel: [kernel; 2],
            stride: [kernel; 2],
            padding: [0; 2],
        }
    }
}

/// `nn.MaxPool2d`.
pub struct MaxPool2d(pub PoolWindow);

/// `nn.AvgPool2d` (`count_include_pad=True`).
pub struct AvgPool2d(pub PoolWindow);

/// `[N, C, H, W] -> [N, C]`: spatial mean (`nn.AdaptiveAvgPool2d(1)` then flatten).
pub struct GlobalAvgPool2d;

impl<F: Float> Module<F> for MaxPool2d {
    fn forward<'t>(&mut self, x: Var<'t, F>) -> Var<'t, F> {
        x.max_pool2d(self.0.kernel, self.0.stride, self.0.padding)
    }

    fn visit<'a>(&'a self, _prefix: &str, _f: &mut dyn FnMut(&str, &'a Param<F>)) {}

    fn visit_mut(&mut self, _prefix: &str, _f: &mut dyn FnMut(&str, &mut Param<F>)) {}
}

impl<F: Float> Module<F> for AvgPool2d {
    fn forward<'t>(&mut self, x: Var<'t, F>) -> Var<'t, F> {
        x.avg_pool2d(self.0.kernel, self.0.stride, self.0.padding)
    }

    fn visit<'a>(&'a self, _prefix: &str, _f: &mut dyn FnMut(&str, &'a Param<F>)) {}

    fn visit_mut(&mut self, _prefix: &str, _f: &mut dyn FnMut(&str, &mut Param<F>)) {}
}

impl<F: Float> Module<F> for GlobalAvgPool2d {
    fn forward<'t>(&mut self, x: Var<'t, F>) -> Var<'t, F> {
        x.global_avg_pool2d()
    }

    fn visit<'a>(&'a self, _prefix: &str, _f: &mut dyn FnMut(&str, &'a Param<F>)) {}

    fn visit_mut(&mut self, _prefix: &str, _f: &mut dyn FnMut(&str, &mut Param<F>)) {}
}
