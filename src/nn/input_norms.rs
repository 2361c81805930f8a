//! [`InputNorms`]: what activation-aware pruning scores need from a layer's inputs — the
//! squared L2 norm ||X_j||² of the inputs that weight column j multiplies, summed over every
//! input row seen (Wanda, Sun et al. 2023: the calibration inputs of a Linear layer are rows of
//! X [tokens, in]; for a convolution they are the unfolded im2col patches, one row per output
//! position of every image, one column per (input channel, tap)).
//!
//! A layer records them when its [`Weight`](crate::nn::Weight)'s `input_norms` is `Some` (off
//! by default: no cost in training). The sums are in f64, accumulated in a fixed order, so they
//! do not depend on the thread count. Layers without a recorder call (recurrent weights) leave
//! it empty.

use crate::float::Float;
use crate::kernels::conv_config::Conv2dConfig;
use crate::tape::Tensor;

/// Per-column sums of squared inputs, per convolution group (Linear layers: one group).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InputNorms {
    /// `[groups][columns]` row-major: the sum of x² over the inputs column j of a row in group g
    /// multiplies.
    pub squares: Vec<f64>,
    pub groups: usize,
    pub columns: usize,
    /// Input rows accumulated (Linear: examples; convolution: examples x output positions).
    pub rows: usize,
}

impl InputNorms {
    /// ||X_j||² for a weight row of group `group` (0 for Linear layers) and column `column`
    /// (row-major over the weight's trailing dimensions: (channel, kh, kw) for a convolution).
    pub fn squared_norm(&self, group: usize, column: usize) -> f64 {
        self.squares[group * self.columns + column]
    }

    fn start(&mut self, groups: usize, columns: usize) {
        if self.groups != groups || self.columns != columns {
            *self = InputNorms {
                squares: vec![0.0; groups * columns],
                groups,
                columns,
                rows: 0,
            };
        }
    }

    /// Adds the rows of a Linear layer's input `x` [N, in].
    pub fn add_linear<F: Float>(&mut self, x: &Tensor<F>) {
        let columns = *x.shape().last().unwrap_or(&0);
        self.start(1, columns);
        let rows = x.len() / columns.max(1);
        let flat: Vec<F> = x.iter().copied().collect();
        for row in flat.chunks(columns.max(1)).take(rows) {
            for (sum, &v) in self.squares.iter_mut().zip(row) {
                *sum += v.to_f64().unwrap_or(0.0).powi(2);
            }
        }
        self.rows += rows;
    }

    /// Adds the unfolded patches of a convolution's input `x` [N, C_in, H, W] for a kernel
    /// `[kh, kw]` with `cfg`: column (c, i, j) of group g sums x[n, g C_in/groups + c, oh s + i d
    /// - p, ow s + j d - p]² over images and output positions (zero padding reads 0).
    pub fn add_conv<F: Float>(&mut self, x: &Tensor<F>, kernel: [usize; 2], cfg: &Conv2dConfig) {
        let s = x.shape();
        if s.len() != 4 {
            return;
        }
        let (n, c_in, h, w) = (s[0], s[1], s[2], s[3]);
        let per_group = c_in / cfg.groups.max(1);
        let [kh, kw] = kernel;
        self.start(cfg.groups, per_group * kh * kw);
        let [oh, ow] = cfg.output_hw([h, w], kernel);
        let x = x.view().into_dimensionality::<ndarray::Ix4>().expect("4-d");
        // Squared inputs, summed over the output positions that read each tap, per axis: the
        // rows an (i) tap reads and the columns a (j) tap reads are independent.
        let reads = |a: usize, tap: usize, out: usize, len: usize| -> Vec<usize> {
            (0..out)
                .filter_map(|o| {
                    let at = (o * cfg.stride[a] + tap * cfg.dilation[a]) as isize
                        - cfg.padding[a] as isize;
                    (at >= 0 && (at as usize) < len).then_some(at as usize)
                })
                .collect()
        };
        for g in 0..cfg.groups {
            for c in 0..per_group {
                let channel = g * per_group + c;
                for i in 0..kh {
                    let rows = reads(0, i, oh, h);
                    for j in 0..kw {
                        let cols = reads(1, j, ow, w);
                        let mut sum = 0.0;
                        for image in 0..n {
                            for &r in &rows {
                                for &q in &cols {
                                    sum +=
                                        x[[image, channel, r, q]].to_f64().unwrap_or(0.0).powi(2);
                                }
                            }
                        }
                        self.squares[(g * per_group + c) * kh * kw + i * kw + j] += sum;
                    }
                }
            }
        }
        self.rows += n * oh * ow;
    }
}
