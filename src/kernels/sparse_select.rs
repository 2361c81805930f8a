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
//! under [`MIN_DENSE_MACS`] per batch stay dense, where the sparse path's fixed costs (transposes,
//! the dense weight gradient's zero fill, about 0.1 ms forward+backward and 0.04 ms forward) would
//! dominate. Measured on LeNet-300's fc2 (300x100, 3.8 M MACs at batch 128; SparseProp found its
//! own kernels never win there), forward+backward, dense / sparse at 80 / 90 / 95 / 98%: 0.435 /
//! 0.381, 0.233, 0.167, 0.131 ms on 1 thread and 0.320 / 0.370, 0.245, 0.193, 0.189 ms on 2;
//! forward alone 0.154 / 0.109, 0.077, 0.062, 0.045 ms on 1 thread. Break-even is near 1 M MACs,
//! so the floor of 2 M keeps a margin of two; fc3 (100x10, 0.13 M) stays dense.

use crate::kernels::sparse_conv::SparseConvShape;
use crate::kernels::sparse_micro::round_up_lanes;

/// Effective density (`density * waste`) at or below which a linear layer runs sparse.
pub const LINEAR_MAX_EFFECTIVE_DENSITY: f64 = 0.12;

/// Effective density at or below which a convolution runs sparse.
pub const CONV_MAX_EFFECTIVE_DENSITY: f64 = 0.2;

/// Dense multiply-adds per batch below which a layer always runs dense (fc2 of LeNet-300 at
/// batch 128 is 3.8 M; fc1 30 M; the smallest ResNet-20 3x3 convolution 302 M; fc3 0.13 M).
pub const MIN_DENSE_MACS: usize = 2 << 20;

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

/// Whether `layer` with kept fraction `density` runs on the sparse kernels (see the module
/// documentation). Pure: the same answer for the same arguments on every machine and load.
pub fn prefer_sparse(layer: &SparseLayer, density: f64) -> bool {
    let threshold = match layer {
        SparseLayer::Linear { .. } => LINEAR_MAX_EFFECTIVE_DENSITY,
        SparseLayer::Conv2d(_) => CONV_MAX_EFFECTIVE_DENSITY,
    };
    layer.dense_macs() >= MIN_DENSE_MACS && density * layer.waste() <= threshold
}
