//! Sparse kernels and the masked ops on them (`sparse_linear`, `sparse_conv2d`): equal to the
//! dense masked path (`x.matmul_nt(w * m)`, `x.conv2d(w * m)`) in value and every gradient,
//! gradient-checked, over random patterns with empty rows, fully dense rows and empty layers;
//! bit-identical across thread counts.

use std::sync::Arc;

use ndarray::{ArrayD, Dimension, IxDyn};
use proptest::prelude::*;
use sparsegrad::check::{CheckOptions, gradcheck};
use sparsegrad::kernels::sparse_pattern::SparsePattern;
use sparsegrad::kernels::transpose::{transpose_back, transpose_into, transpose_padded};
use sparsegrad::ops::conv::Conv2dConfig;
use sparsegrad::prelude::*;
use sparsegrad::rng::{seeded, uniform};

/// A random `[rows, cols]` 0/1 mask: each row is empty, full, or kept with probability `density`
/// (a third each when `mixed`, else all rows random).
fn random_mask(rows: usize, cols: usize, density: f64, mixed: bool, seed: u64) -> Vec<f64> {
    let mut rng = seeded(seed);
    let mut mask = Vec::with_capacity(rows * cols);
    for _ in 0..rows {
        let kind = if mixed {
            (uniform(&mut rng, 0.0, 3.0) as usize).min(2)
        } else {
            2
        };
        for _ in 0..cols {
            let keep = match kind {
                0 => false,
                1 => true,
                _ => uniform(&mut rng, 0.0, 1.0) < density,
            };
            mask.push(if keep { 1.0 } else { 0.0 });
        }
    }
    mask
}

fn random_tensor<F: Float>(shape: &[usize], seed: u64) -> ArrayD<F> {
    let mut rng = seeded(seed);
    ArrayD::from_shape_simple_fn(IxDyn(shape), || F::c(uniform(&mut rng, -1.0, 1.0)))
}

/// Density strategy: empty and full layers as well as anything between.
fn density() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0), Just(1.0), 0.0..1.0f64]
}

/// Asserts |a - b| <= tol * (1 + max |b|) elementwise.
fn assert_close<F: Float>(what: &str, a: &ArrayD<F>, b: &ArrayD<F>, tol: f64) {
    assert_eq!(a.shape(), b.shape(), "{what}: shape");
    let scale = 1.0 + b.iter().fold(0.0f64, |m, v| m.max(v.f64().abs()));
    for ((i, x), y) in a.indexed_iter().zip(b.iter()) {
        assert!(
            (x.f64() - y.f64()).abs() <= tol * scale,
            "{what} at {:?}: sparse {x} vs dense {y}",
            i.slice()
        );
    }
}

/// Output and gradients (input, weight, bias) of one op run, seeded with `seed_grad`.
type Run<F> = (ArrayD<F>, Vec<ArrayD<F>>);

/// Runs `op` (sparse or dense) on leaves x, w, b and returns its value and gradients.
fn run<F: Float>(
    tensors: &[ArrayD<F>; 4],
    op: impl for<'t> Fn(Var<'t, F>, Var<'t, F>, Var<'t, F>) -> Var<'t, F>,
) -> Run<F> {
    let tape = Tape::<F>::new();
    let [x, w, b, g] = tensors;
    let (xv, wv, bv) = (
        tape.leaf(x.clone()),
        tape.leaf(w.clone()),
        tape.leaf(b.clone()),
    );
    let y = op(xv, wv, bv);
    let value = (*y.value()).clone();
    let grads = y.backward_with(g.clone());
    let wrt = |v| grads.wrt(v).expect("gradient").clone();
    (value, vec![wrt(xv), wrt(wv), wrt(bv)])
}

fn compare<F: Float>(sparse: &Run<F>, dense: &Run<F>, tol: f64) {
    assert_close("output", &sparse.0, &dense.0, tol);
    for (name, (s, d)) in ["input gradient", "weight gradient", "bias gradient"]
        .iter()
        .zip(sparse.1.iter().zip(&dense.1))
    {
        assert_close(name, s, d, tol);
    }
}

/// A sparse linear layer: x `[batch, inputs]`, a weight `[outputs, inputs]` under a
/// `random_mask` pattern, and bias and upstream gradient; every tensor drawn from `seed`.
/// `sparse_inference.rs` runs the same cases without a gradient.
#[derive(Clone, Debug)]
pub(crate) struct LinearCase {
    pub(crate) batch: usize,
    pub(crate) inputs: usize,
    pub(crate) outputs: usize,
    pub(crate) density: f64,
    pub(crate) mixed: bool,
    pub(crate) seed: u64,
}

fn linear_case(max: usize) -> impl Strategy<Value = LinearCase> {
    (
        1..=max,
        1..=max,
        1..=max,
        density(),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(
            |(batch, inputs, outputs, density, mixed, seed)| LinearCase {
                batch,
                inputs,
                outputs,
                density,
                mixed,
                seed,
            },
        )
}

impl LinearCase {
    /// The kept pattern and the 0/1 mask it was built from.
    pub(crate) fn pattern(&self) -> (Arc<SparsePattern>, Vec<f64>) {
        let mask = random_mask(
            self.outputs,
            self.inputs,
            self.density,
            self.mixed,
            self.seed,
        );
        let p = SparsePattern::from_mask(self.outputs, self.inputs, &mask);
        (Arc::new(p), mask)
    }

    /// Input, weight, bias and upstream gradient.
    pub(crate) fn tensors<F: Float>(&self) -> [ArrayD<F>; 4] {
        [
            random_tensor(&[self.batch, self.inputs], self.seed ^ 1),
            random_tensor(&[self.outputs, self.inputs], self.seed ^ 2),
            random_tensor(&[self.outputs], self.seed ^ 3),
            random_tensor(&[self.batch, self.outputs], self.seed ^ 4),
        ]
    }

    /// Sparse and dense masked runs.
    fn runs<F: Float>(&self) -> (Run<F>, Run<F>) {
        let (pattern, mask) = self.pattern();
        let mask: ArrayD<F> = ArrayD::from_shape_vec(IxDyn(&[self.outputs, self.inputs]), mask)
            .unwrap()
            .mapv(F::c);
        let t = self.tensors::<F>();
        let sparse = run(&t, |x, w, b| x.sparse_linear(w, Some(b), &pattern));
        let dense = run(&t, |x, w, b| {
            x.matmul_nt(w * x.tape().constant(mask.clone())) + b
        });
        (sparse, dense)
    }
}

#[derive(Clone, Debug)]
struct ConvCase {
    batch: usize,
    c_in: usize,
    c_out: usize,
    hw: [usize; 2],
    kernel: [usize; 2],
    cfg: Conv2dConfig,
    density: f64,
    mixed: bool,
    seed: u64,
}

fn conv_case(max_batch: usize, max_groups: usize) -> impl Strategy<Value = ConvCase> {
    let axis = (1..=3usize, 1..=3usize, 0..=2usize, 1..=2usize, 0..=4usize);
    (
        (1..=max_batch, 1..=max_groups, 1..=3usize, 1..=3usize),
        axis.clone(),
        axis,
        density(),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(
            |((batch, groups, cin_g, cout_g), ax_h, ax_w, density, mixed, seed)| {
                let mut c = ConvCase {
                    batch,
                    c_in: groups * cin_g,
                    c_out: groups * cout_g,
                    hw: [0; 2],
                    kernel: [0; 2],
                    cfg: Conv2dConfig {
                        groups,
                        ..Conv2dConfig::default()
                    },
                    density,
                    mixed,
                    seed,
                };
                for (a, (k, s, p, d, extra)) in [ax_h, ax_w].into_iter().enumerate() {
                    let span = d * (k - 1) + 1;
                    c.kernel[a] = k;
                    (c.cfg.stride[a], c.cfg.padding[a], c.cfg.dilation[a]) = (s, p, d);
                    c.hw[a] = span.saturating_sub(2 * p).max(1) + extra;
                }
                c
            },
        )
}

impl ConvCase {
    fn w_shape(&self) -> [usize; 4] {
        [
            self.c_out,
            self.c_in / self.cfg.groups,
            self.kernel[0],
            self.kernel[1],
        ]
    }

    fn pattern(&self) -> (Arc<SparsePattern>, Vec<f64>) {
        let [o, c, kh, kw] = self.w_shape();
        let mask = random_mask(o, c * kh * kw, self.density, self.mixed, self.seed);
        (
            Arc::new(SparsePattern::from_mask(o, c * kh * kw, &mask)),
            mask,
        )
    }

    fn tensors<F: Float>(&self) -> [ArrayD<F>; 4] {
        let [oh, ow] = self.cfg.output_hw(self.hw, self.kernel);
        [
            random_tensor(
                &[self.batch, self.c_in, self.hw[0], self.hw[1]],
                self.seed ^ 1,
            ),
            random_tensor(&self.w_shape(), self.seed ^ 2),
            random_tensor(&[self.c_out], self.seed ^ 3),
            random_tensor(&[self.batch, self.c_out, oh, ow], self.seed ^ 4),
        ]
    }

    fn runs<F: Float>(&self) -> (Run<F>, Run<F>) {
        let (pattern, mask) = self.pattern();
        let mask: ArrayD<F> = ArrayD::from_shape_vec(IxDyn(&self.w_shape()), mask)
            .unwrap()
            .mapv(F::c);
        let t = self.tensors::<F>();
        let cfg = self.cfg;
        let sparse = run(&t, |x, w, b| x.sparse_conv2d(w, Some(b), &cfg, &pattern));
        let dense = run(&t, |x, w, b| {
            x.conv2d(w * x.tape().constant(mask.clone()), Some(b), &cfg)
        });
        (sparse, dense)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn sparse_linear_matches_dense_masked(case in linear_case(40)) {
        let (sparse, dense) = case.runs::<f64>();
        compare(&sparse, &dense, 1e-12);
    }

    #[test]
    fn sparse_linear_matches_dense_masked_f32(case in linear_case(40)) {
        let (sparse, dense) = case.runs::<f32>();
        compare(&sparse, &dense, 1e-5);
    }

    #[test]
    fn sparse_conv2d_matches_dense_masked(case in conv_case(3, 3)) {
        let (sparse, dense) = case.runs::<f64>();
        compare(&sparse, &dense, 1e-12);
    }

    #[test]
    fn sparse_conv2d_matches_dense_masked_f32(case in conv_case(3, 2)) {
        let (sparse, dense) = case.runs::<f32>();
        compare(&sparse, &dense, 1e-5);
    }

    #[test]
    fn grad_sparse_linear(case in linear_case(6)) {
        let (pattern, _) = case.pattern();
        let [x, w, b, _] = case.tensors::<f64>();
        let report = gradcheck(
            move |v| v[0].sparse_linear(v[1], Some(v[2]), &pattern),
            &[x, w, b],
            &CheckOptions::default(),
        );
        if let Err(e) = report {
            panic!("{case:?}: {e}");
        }
    }

    #[test]
    fn grad_sparse_conv2d(case in conv_case(2, 2)) {
        let (pattern, _) = case.pattern();
        let [x, w, b, _] = case.tensors::<f64>();
        let cfg = case.cfg;
        let report = gradcheck(
            move |v| v[0].sparse_conv2d(v[1], Some(v[2]), &cfg, &pattern),
            &[x, w, b],
            &CheckOptions::default(),
        );
        if let Err(e) = report {
            panic!("{case:?}: {e}");
        }
    }

    /// Transposes (the AVX2 8x8 blocks and the scalar edges, across the 64-row parallel bands)
    /// are exact and invert each other.
    #[test]
    fn sparse_transpose_round_trip(rows in 1..150usize, cols in 1..150usize, pad in 0..20usize) {
        let x: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
        let ld = rows + pad;
        let xt = transpose_padded(&x, rows, cols, ld);
        for r in 0..ld {
            for c in 0..cols {
                let want = if r < rows { x[r * cols + c] } else { 0.0 };
                prop_assert_eq!(xt[c * ld + r], want);
            }
        }
        // Into a reused buffer holding other values (longer or shorter): the same matrix.
        for stale in [vec![f32::NAN; cols * ld + 7], vec![-1.0; 3]] {
            let mut reused = stale;
            transpose_into(&x, rows, cols, &mut reused, ld);
            prop_assert_eq!(&reused, &xt);
        }
        prop_assert_eq!(transpose_back(&xt, rows, cols, ld), x);
    }
}

/// Forward and gradients of one f32 run in a pool of `threads`, as bit patterns.
fn bits_in_pool(threads: usize, f: impl Fn() -> Run<f32> + Send) -> Vec<Vec<u32>> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let (y, grads) = pool.install(f);
    std::iter::once(y)
        .chain(grads)
        .map(|a| a.iter().map(|v| v.to_bits()).collect())
        .collect()
}

#[test]
fn sparse_ops_bit_identical_across_thread_counts() {
    let linear = LinearCase {
        batch: 37,
        inputs: 70,
        outputs: 45,
        density: 0.1,
        mixed: true,
        seed: 5,
    };
    let conv = ConvCase {
        batch: 37,
        c_in: 4,
        c_out: 6,
        hw: [11, 10],
        kernel: [3, 3],
        cfg: Conv2dConfig {
            stride: [2, 1],
            padding: [1, 1],
            groups: 2,
            ..Conv2dConfig::default()
        },
        density: 0.3,
        mixed: true,
        seed: 6,
    };
    let one = bits_in_pool(1, || linear.runs::<f32>().0);
    assert_eq!(one, bits_in_pool(3, || linear.runs::<f32>().0), "linear");
    let one = bits_in_pool(1, || conv.runs::<f32>().0);
    assert_eq!(one, bits_in_pool(3, || conv.runs::<f32>().0), "conv");
}
