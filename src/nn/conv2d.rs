//! 2-D convolution layer: y = conv2d(x, W) + b with W of shape [C_out, C_in / groups, kh, kw]
//! (PyTorch `nn.Conv2d` layout, initialisation and state_dict names). A masked weight may run on
//! the sparse kernels (`nn::sparse`).

use crate::float::Float;
use crate::kernels::sparse_conv::SparseConvShape;
use crate::kernels::sparse_select::SparseLayer;
use crate::nn::init::torch_default_layer;
use crate::nn::module::{Module, join, visit_weight_and_bias, visit_weight_and_bias_mut};
use crate::nn::weight::Weight;
use crate::ops::conv::Conv2dConfig;
use crate::param::Param;
use crate::rng::Rng;
use crate::tape::Var;

pub struct Conv2d<F: Float> {
    pub weight: Weight<F>,
    pub bias: Option<Param<F>>,
    pub cfg: Conv2dConfig,
}

impl<F: Float> Conv2d<F> {
    /// PyTorch's default initialisation (see [`torch_default_layer`]; fan_in = C_in/groups * kh * kw).
    /// Panics when the channels are not positive multiples of `cfg.groups`.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: [usize; 2],
        cfg: Conv2dConfig,
        bias: bool,
        rng: &mut Rng,
    ) -> Self {
        assert!(
            cfg.groups >= 1
                && in_channels.is_multiple_of(cfg.groups)
                && out_channels.is_multiple_of(cfg.groups)
                && in_channels > 0
                && out_channels > 0,
            "Conv2d: {in_channels} input and {out_channels} output channels are not positive multiples of groups {}",
            cfg.groups
        );
        let shape = [out_channels, in_channels / cfg.groups, kernel[0], kernel[1]];
        let (w, b) = torch_default_layer::<F>(&shape, rng);
        Conv2d {
            weight: Weight::new(w),
            bias: bias.then(|| Param::new(b)),
            cfg,
        }
    }

    pub fn in_channels(&self) -> usize {
        self.weight.raw.shape()[1] * self.cfg.groups
    }

    pub fn out_channels(&self) -> usize {
        self.weight.raw.shape()[0]
    }

    /// `[kh, kw]`.
    pub fn kernel(&self) -> [usize; 2] {
        let s = self.weight.raw.shape();
        [s[2], s[3]]
    }

    /// Output spatial size `[OH, OW]` for an input of spatial size `input_hw`.
    pub fn output_hw(&self, input_hw: [usize; 2]) -> [usize; 2] {
        self.cfg.output_hw(input_hw, self.kernel())
    }

    /// Multiply-accumulates of the forward pass per image (bias excluded):
    /// `C_out * OH * OW * (C_in / groups) * kh * kw`. A dense count; FLOPs are about 2x this.
    pub fn macs(&self, input_hw: [usize; 2]) -> usize {
        let [oh, ow] = self.output_hw(input_hw);
        let w = self.weight.raw.shape();
        w[0] * oh * ow * w[1] * w[2] * w[3]
    }
}

impl<F: Float> Conv2d<F> {
    /// `forward(x)`, then a relu if `relu`, then 2x2 max pooling with stride 2: one pass on the
    /// sparse kernels when no gradient flows (`Var::sparse_conv2d_pool_kept`), the same values
    /// as the three steps.
    pub fn forward_pool<'t>(&mut self, x: Var<'t, F>, relu: bool) -> Var<'t, F> {
        self.run(x, Some(relu))
    }

    /// The convolution, or with `pool = Some(relu)` the convolution, optional relu and pooling.
    fn run<'t>(&mut self, x: Var<'t, F>, pool: Option<bool>) -> Var<'t, F> {
        let tape = x.tape();
        let bias = self.bias.as_ref().map(|b| tape.param(b));
        let xs = x.shape();
        let kernel = self.kernel();
        if let Some(norms) = &mut self.weight.input_norms {
            norms.add_conv(&x.value(), kernel, &self.cfg);
        }
        let layer = (xs.len() == 4).then(|| {
            SparseLayer::Conv2d(SparseConvShape {
                batch: xs[0],
                in_channels: xs[1],
                out_channels: self.out_channels(),
                groups: self.cfg.groups,
                in_hw: [xs[2], xs[3]],
                kernel: self.kernel(),
                stride: self.cfg.stride,
                padding: self.cfg.padding,
                dilation: self.cfg.dilation,
            })
        });
        let kept = layer.and_then(|l| self.weight.sparse_kept(&l));
        let w = match &kept {
            Some(_) => tape.param(&self.weight.raw),
            None => self.weight.on(tape),
        };
        let y = match (kept, pool) {
            (Some(kept), Some(relu)) => {
                // Uses per entry count the convolution's output positions, before pooling.
                if let Some(SparseLayer::Conv2d(s)) = layer {
                    let [oh, ow] = s.out_hw().unwrap_or([0, 0]);
                    self.weight.record_uses(oh * ow);
                }
                return x.sparse_conv2d_pool_kept(w, bias, &self.cfg, &kept, relu);
            }
            (Some(kept), None) => x.sparse_conv2d_kept(w, bias, &self.cfg, &kept),
            (None, _) => x.conv2d(w, bias, &self.cfg),
        };
        // Each weight entry is applied once per output position (per group) of every image.
        let shape = y.shape();
        self.weight.record_uses(shape[2] * shape[3]);
        match pool {
            Some(relu) => {
                let y = if relu { y.relu() } else { y };
                y.max_pool2d([2, 2], [2, 2], [0, 0])
            }
            None => y,
        }
    }
}

impl<F: Float> Module<F> for Conv2d<F> {
    /// x: [N, C_in, H, W] -> [N, C_out, OH, OW].
    fn forward<'t>(&mut self, x: Var<'t, F>) -> Var<'t, F> {
        self.run(x, None)
    }

    fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(&str, &'a Param<F>)) {
        visit_weight_and_bias(&self.weight, self.bias.as_ref(), prefix, f);
    }

    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<F>)) {
        visit_weight_and_bias_mut(&mut self.weight, self.bias.as_mut(), prefix, f);
    }

    fn visit_weights_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Weight<F>)) {
        f(&join(prefix, "weight"), &mut self.weight);
    }

    fn visit_weights<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(&str, &'a Weight<F>)) {
        f(&join(prefix, "weight"), &self.weight);
    }
}
