//! The sparse ops without a backward pass (inference under `no_grad`, where they take their
//! batch-split kernels): the same bits as the same op when a gradient flows, and so equal to the
//! dense masked path to rounding; bit-identical across thread counts.

use std::sync::Arc;

use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;
use sparsegrad::kernels::sparse_pattern::SparsePattern;
use sparsegrad::prelude::*;
use sparsegrad::rng::{seeded, uniform};

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

#[derive(Clone, Debug)]
struct LinearCase {
    batch: usize,
    inputs: usize,
    outputs: usize,
    density: f64,
    bias: bool,
    seed: u64,
}

fn linear_case() -> impl Strategy<Value = LinearCase> {
    // Batches past two 64-example chunks, with ragged last chunks.
    (
        1..=150usize,
        1..=40usize,
        1..=40usize,
        0.0..=1.0f64,
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(batch, inputs, outputs, density, bias, seed)| LinearCase {
            batch,
            inputs,
            outputs,
            density,
            bias,
            seed,
        })
}

impl LinearCase {
    /// The op's output with `grad` (a gradient flows from the weight) or under `no_grad`.
    fn output<F: Float>(&self, grad: bool) -> ArrayD<F> {
        let pattern = Arc::new(random_pattern(
            self.outputs,
            self.inputs,
            self.density,
            self.seed,
        ));
        let tape = Tape::<F>::new();
        let _guard = (!grad).then(|| tape.no_grad());
        let x = tape.constant(random_tensor(&[self.batch, self.inputs], self.seed ^ 1));
        let w = tape.leaf(random_tensor(&[self.outputs, self.inputs], self.seed ^ 2));
        let b = self
            .bias
            .then(|| tape.constant(random_tensor(&[self.outputs], self.seed ^ 3)));
        let y = x.sparse_linear(w, b, &pattern);
        assert_eq!(y.requires_grad(), grad);
        (*y.value()).clone()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn sparse_linear_inference_has_the_bits_of_the_training_forward(case in linear_case()) {
        prop_assert_eq!(bits(&case.output::<f32>(false)), bits(&case.output::<f32>(true)));
        prop_assert_eq!(bits(&case.output::<f64>(false)), bits(&case.output::<f64>(true)));
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
        bias: true,
        seed: 5,
    };
    let one = in_pool(1, || bits(&linear.output::<f32>(false)));
    assert_eq!(
        one,
        in_pool(3, || bits(&linear.output::<f32>(false))),
        "linear"
    );
}
