//! When a masked layer should run on the sparse kernels: a pure function of the layer's kind,
//! shape, batch and weight density, calibrated once on the `sparse` bench and never on timings
//! taken during a run (so a seed gives the same bytes on a loaded machine as on an idle one).
//!
//! **The model.** The sparse kernels do `density * waste` of the dense multiply-adds, where
//! `waste` is how many lanes they compute per useful one: the batch rounded up to 16 for a linear
//! layer, the `Wq`-wide output grid (plus rounding to 16) over `OH * OW` for a convolution (see
//! `sparse_conv`). They run at a lower rate than the dense GEMM (memory-bound gathers against a
//! blocked GEMM) and pay fixed costs (transposes, phase-plane copies, the dense weight gradient's
//! zero fill). So a layer goes sparse when `density * waste` is at most a per-kind threshold, and
//! when its dense work is large enough for the fixed costs not to dominate.
//!
//! **Calibration** (Intel Xeon, Sapphire-Rapids class with AVX-512, batch 128, f32, forward +
//! backward, 1 thread, preliminary on a shared machine; `docs/sparse.md` has the tables). Linear
//! (LeNet-300 fc1): sparse/dense time ~1.0 at 80% sparsity, ~0.5-0.7 at 90%, so the linear threshold
//! is 0.12 (a margin over break-even at ~0.2). Convolutions (LeNet-5 conv2, ResNet-20 3x3): 0.15-0.3
//! at 90% sparsity even with the junk columns, break-even beyond 80%; the threshold is 0.2 of
//! effective density, i.e. 80% sparse for waste 1 and about 84% for LeNet-5's waste 1.5. Layers
//! under [`MIN_DENSE_MACS`] per batch stay dense (SparseProp measured LeNet-300's 300x100 layer
//! never winning; fixed costs dominate there).
//!
//! **Inference** ([`Pass::Inference`]: no gradient will flow, as in evaluation) has no backward
//! fixed costs (the output gradient's transposes, the dense weight gradient's zero fill), so the
//! size floor is lower, [`MIN_INFERENCE_MACS`]: LeNet-300's fc2 (300x100, 3.8 M MACs at batch
//! 128) forward measured dense 113-184 us against 107-126 us sparse at 80%, 82-88 at 90%, 56-72
//! at 95% and 48-64 at 98% (1 thread, same machine, interleaved); fc3 (100x10, 0.13 M) stays
//! dense. The density thresholds are the training ones (a margin over the forward's break-even).

use crate::kernels::sparse_conv::SparseConvShape;
use crate::kernels::sparse_micro::round_up_lanes;

/// Effective density (`density * waste`) at or below which a linear layer runs sparse.
pub const LINEAR_MAX_EFFECTIVE_DENSITY: f64 = 0.12;

/// Effective density at or below which a convolution runs sparse.
pub const CONV_MAX_EFFECTIVE_DENSITY: f64 = 0.2;

/// Dense multiply-adds per batch below which a layer always runs dense (fc2 of LeNet-300 at
/// batch 128 is 3.8 M; fc1 30 M; the smallest ResNet-20 3x3 convolution 302 M).
pub const MIN_DENSE_MACS: usize = 8 << 20;

/// Dense multiply-adds per batch below which a layer runs dense in a forward-only pass.
pub const MIN_INFERENCE_MACS: usize = 2 << 20;

/// What a layer's pass computes, which sets the rule's size floor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// The forward pass of a training step, followed by the backward pass.
    Train,
    /// A forward pass without gradient (evaluation, inference).
    Inference,
}

/// A masked layer as the rule sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SparseLayer {
    Linear {
        batch: usize,
        inputs: usize,
        outputs: usize,
    },
    Conv2d(SparseConvShape),
}

impl SparseLayer {
    /// Dense multiply-adds of the forward pass over the batch.
    pub fn dense_macs(&self) -> usize {
        match *self {
            SparseLayer::Linear {
                batch,
                inputs,
                outputs,
            } => batch * inputs * outputs,
            SparseLayer::Conv2d(s) => {
                let [oh, ow] = s.out_hw().unwrap_or([0, 0]);
                let [rows, cols] = s.weight_matrix();
                s.batch * oh * ow * rows * cols
            }
        }
    }

    /// Lanes the sparse kernels compute per useful lane (at least 1).
    pub fn waste(&self) -> f64 {
        match *self {
            SparseLayer::Linear { batch, .. } => {
                round_up_lanes(batch.max(1)) as f64 / batch.max(1) as f64
            }
            SparseLayer::Conv2d(s) => {
                let Some([oh, ow]) = s.out_hw() else {
                    return f64::INFINITY;
                };
                let wq = (s.in_hw[1] + 2 * s.padding[1]).div_ceil(s.stride[1]);
                round_up_lanes(oh * wq) as f64 / (oh * ow) as f64
            }
        }
    }
}

/// Whether `layer` with kept fraction `density` runs on the sparse kernels in a `pass` (see the
/// module documentation). Pure: the same answer for the same arguments on every machine and load.
pub fn prefer_sparse(layer: &SparseLayer, density: f64, pass: Pass) -> bool {
    let threshold = match layer {
        SparseLayer::Linear { .. } => LINEAR_MAX_EFFECTIVE_DENSITY,
        SparseLayer::Conv2d(_) => CONV_MAX_EFFECTIVE_DENSITY,
    };
    let floor = match pass {
        Pass::Train => MIN_DENSE_MACS,
        Pass::Inference => MIN_INFERENCE_MACS,
    };
    layer.dense_macs() >= floor && density * layer.waste() <= threshold
}
