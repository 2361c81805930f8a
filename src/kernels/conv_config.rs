//! The hyper-parameters of a 2-D convolution ([`Conv2dConfig`]), shared by the kernels and the
//! `conv2d` op. It lives with the kernels so that kernels never import from `ops`; the op
//! re-exports it as `sparsegrad::ops::conv::Conv2dConfig`.

use crate::kernels::im2col::Window;

/// Hyper-parameters of a 2-D convolution, per axis `[height, width]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dConfig {
    pub stride: [usize; 2],
    /// Zero padding added on both sides of each axis.
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    /// Input and output channels are split into this many independent groups
    /// (`groups = C_in` is a depthwise convolution).
    pub groups: usize,
}

impl Default for Conv2dConfig {
    /// Stride 1, no padding, no dilation, one group (PyTorch's defaults).
    fn default() -> Self {
        Conv2dConfig {
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
        }
    }
}

impl Conv2dConfig {
    /// The sliding window over an `in_hw` input with a `kernel`-sized weight, or `None` if the
    /// dilated kernel does not fit in the padded input (or a stride, dilation or kernel is zero).
    pub fn window(&self, in_hw: [usize; 2], kernel: [usize; 2]) -> Option<Window> {
        Window::new(in_hw, kernel, self.stride, self.padding, self.dilation)
    }

    /// Output spatial size for an `in_hw` input and a `kernel`-sized weight; panics (naming the
    /// sizes) when the kernel does not fit.
    pub fn output_hw(&self, in_hw: [usize; 2], kernel: [usize; 2]) -> [usize; 2] {
        self.window(in_hw, kernel)
            .unwrap_or_else(|| {
                panic!("op `conv2d`: kernel {kernel:?} does not fit input {in_hw:?} with {self:?}")
            })
            .out_hw
    }
}
