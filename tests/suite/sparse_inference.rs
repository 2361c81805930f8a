//! The sparse ops without a backward pass (inference under `no_grad`, where they take their
//! batch-split and fused kernels): the same bits as the same ops when a gradient flows (so equal
//! to the dense masked path to rounding), the kept weights following every change of a weight,
//! bit-identical across thread counts.

use std::sync::Arc;

use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;
use sparsegrad::kernels::sparse_pattern::SparsePattern;
use sparsegrad::ops::conv::Conv2dConfig;
use sparsegrad::ops::sparse::KeptWeight;
use sparsegrad::prelude::*;
use sparsegrad::rng::{seeded, uniform};

use crate::sparse_ops::LinearCase;

fn random_tensor<F: Float>(shape: &[usize], seed: u64) -> ArrayD<F> {
    let mut rng = seeded(seed);
    ArrayD::from_shape_simple_fn(IxDyn(shape), || F::c(uniform(&mut rng, -1.0, 1.0)))
}

/// A random `[rows, cols]` pattern keeping each entry with probability `density`.
fn random_pattern(rows: usize, cols: usize, density: f64, seed: u64) -> SparsePattern {
    let mut rng = seeded(seed);
    let mask: Vec<f64> = (0..rows * cols)
        .map(|_| f64::from(u8::from(uniform(&mut rng, 0.0, 1.0) < density)))
        .collect();
    SparsePattern::from_mask(rows, cols, &mask)
}

fn bits<F: Float>(a: &ArrayD<F>) -> Vec<u64> {
    a.iter().map(|v| v.f64().to_bits()).collect()
}

/// A sparse linear case with random rows (`mixed` off) and whether the op gets a bias; batches
/// past two 64-example chunks, with ragged last chunks.
fn linear_case() -> impl Strategy<Value = (LinearCase, bool)> {
    (
        1..=150usize,
        1..=40usize,
        1..=40usize,
        0.0..=1.0f64,
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(batch, inputs, outputs, density, bias, seed)| {
            let case = LinearCase {
                batch,
                inputs,
                outputs,
                density,
                mixed: false,
                seed,
            };
            (case, bias)
        })
}

/// The op's output, with a bias if `bias`, with `grad` (a gradient flows from the weight) or
/// under `no_grad`.
fn linear_output<F: Float>(case: &LinearCase, bias: bool, grad: bool) -> ArrayD<F> {
    let (pattern, _) = case.pattern();
    let [x, w, b, _] = case.tensors::<F>();
    let tape = Tape::<F>::new();
    let _guard = (!grad).then(|| tape.no_grad());
    let (x, w) = (tape.constant(x), tape.leaf(w));
    let b = bias.then(|| tape.constant(b));
    let y = x.sparse_linear(w, b, &pattern);
    assert_eq!(y.requires_grad(), grad);
    (*y.value()).clone()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn sparse_linear_inference_has_the_bits_of_the_training_forward((case, bias) in linear_case()) {
        let output = |grad| linear_output::<f32>(&case, bias, grad);
        prop_assert_eq!(bits(&output(false)), bits(&output(true)));
        let output = |grad| linear_output::<f64>(&case, bias, grad);
        prop_assert_eq!(bits(&output(false)), bits(&output(true)));
    }
}

fn in_pool<R: Send>(threads: usize, f: impl Fn() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

#[test]
fn sparse_inference_bit_identical_across_thread_counts() {
    let linear = LinearCase {
        batch: 150,
        inputs: 70,
        outputs: 45,
        density: 0.1,
        mixed: false,
        seed: 5,
    };
    let output = || bits(&linear_output::<f32>(&linear, true, false));
    assert_eq!(in_pool(1, output), in_pool(3, output), "linear");
}

/// A layer's kept weights are gathered once per weight value (`Weight::sparse_kept`): after an
/// in-place update (`Param::value_mut`) or a new value (`Param::set_value`), the next forward
/// pass sees the new weights. Doubling weight and bias doubles every output exactly.
#[test]
fn kept_weights_follow_every_change_of_the_weight() {
    use sparsegrad::nn::{Linear, Module, SparseKernels, set_sparse_kernels};
    use sparsegrad::sparsity::mask::Mask;

    let mut rng = seeded(3);
    let mut layer = Linear::<f32>::new(20, 30, true, &mut rng);
    let mask = Tensor::from_shape_simple_fn(IxDyn(&[30, 20]), || {
        if uniform(&mut rng, 0.0, 1.0) < 0.3 {
            1.0
        } else {
            0.0
        }
    });
    layer.weight.transform = Some(Box::new(Mask::from_tensor(mask).unwrap()));
    layer.weight.reapply_mask();
    set_sparse_kernels(&mut layer, SparseKernels::On);
    let x = random_tensor::<f32>(&[70, 20], 4);
    let forward = |layer: &mut Linear<f32>| {
        let tape = Tape::<f32>::new();
        let _guard = tape.no_grad();
        let y = (*layer.forward(tape.constant(x.clone())).value()).clone();
        assert!(layer.weight.ran_sparse());
        y
    };
    let double = |layer: &mut Linear<f32>, in_place: bool| {
        let bias = layer.bias.as_mut().unwrap();
        bias.value_mut().mapv_inplace(|v| v * 2.0);
        if in_place {
            layer.weight.raw.value_mut().mapv_inplace(|v| v * 2.0);
        } else {
            let doubled = layer.weight.raw.value().mapv(|v| v * 2.0);
            layer.weight.raw.set_value(doubled);
        }
    };
    let y1 = forward(&mut layer);
    assert_eq!(
        bits(&forward(&mut layer)),
        bits(&y1),
        "the cache gives the same bits"
    );
    double(&mut layer, true);
    let y2 = forward(&mut layer);
    assert_eq!(bits(&y2), bits(&y1.mapv(|v| v * 2.0)), "after value_mut");
    double(&mut layer, false);
    assert_eq!(
        bits(&forward(&mut layer)),
        bits(&y1.mapv(|v| v * 4.0)),
        "after set_value"
    );
}

#[derive(Clone, Debug)]
struct ConvPoolCase {
    batch: usize,
    c_in: usize,
    c_out: usize,
    hw: [usize; 2],
    kernel: usize,
    stride: usize,
    padding: usize,
    density: f64,
    relu: bool,
    seed: u64,
}

fn conv_pool_case() -> impl Strategy<Value = ConvPoolCase> {
    (
        (1..=3usize, 1..=3usize, 1..=4usize),
        (2..=13usize, 2..=13usize, 1..=3usize, 1..=2usize, 0..=1usize),
        (0.0..=1.0f64, any::<bool>(), any::<u64>()),
    )
        .prop_map(
            |((batch, c_in, c_out), (h, w, kernel, stride, padding), (density, relu, seed))| {
                ConvPoolCase {
                    batch,
                    c_in,
                    c_out,
                    // At least the kernel, so the convolution's output is never empty.
                    hw: [h.max(kernel), w.max(kernel)],
                    kernel,
                    stride,
                    padding,
                    density,
                    relu,
                    seed,
                }
            },
        )
}

impl ConvPoolCase {
    /// The fused op (`fused`) or the three ops, under `no_grad`.
    fn output<F: Float>(&self, fused: bool) -> ArrayD<F> {
        let k = self.kernel;
        let pattern = Arc::new(random_pattern(
            self.c_out,
            self.c_in * k * k,
            self.density,
            self.seed,
        ));
        let cfg = Conv2dConfig {
            stride: [self.stride; 2],
            padding: [self.padding; 2],
            ..Conv2dConfig::default()
        };
        let tape = Tape::<F>::new();
        let _guard = tape.no_grad();
        let x = tape.constant(random_tensor(
            &[self.batch, self.c_in, self.hw[0], self.hw[1]],
            self.seed ^ 1,
        ));
        let wv = random_tensor(&[self.c_out, self.c_in, k, k], self.seed ^ 2);
        let kept = KeptWeight::gather(&pattern, &wv);
        let w = tape.constant(wv);
        let b = Some(tape.constant(random_tensor(&[self.c_out], self.seed ^ 3)));
        let y = if fused {
            x.sparse_conv2d_pool_kept(w, b, &cfg, &kept, self.relu)
        } else {
            let y = x.sparse_conv2d_kept(w, b, &cfg, &kept);
            let y = if self.relu { y.relu() } else { y };
            let [h, w] = [y.shape()[2], y.shape()[3]];
            if h < 2 || w < 2 {
                return ArrayD::zeros(IxDyn(&[0]));
            }
            y.max_pool2d([2, 2], [2, 2], [0, 0])
        };
        (*y.value()).clone()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The fused convolution, relu and 2x2 pooling gives the bits of the three ops.
    #[test]
    fn sparse_conv2d_pool_has_the_bits_of_the_three_ops(case in conv_pool_case()) {
        let unfused = case.output::<f32>(false);
        prop_assume!(!unfused.is_empty());
        prop_assert_eq!(bits(&case.output::<f32>(true)), bits(&unfused));
        prop_assert_eq!(bits(&case.output::<f64>(true)), bits(&case.output::<f64>(false)));
    }
}

#[test]
fn sparse_conv2d_pool_bit_identical_across_thread_counts() {
    let case = ConvPoolCase {
        batch: 5,
        c_in: 3,
        c_out: 4,
        hw: [13, 12],
        kernel: 3,
        stride: 1,
        padding: 1,
        density: 0.3,
        relu: true,
        seed: 7,
    };
    let one = in_pool(1, || bits(&case.output::<f32>(true)));
    assert_eq!(one, in_pool(3, || bits(&case.output::<f32>(true))));
}
