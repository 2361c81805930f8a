//! conv2d: im2col/col2im kernels, the op's forward and gradients against the naive direct
//! convolution, finite-difference gradient checks, thread-count determinism, and the Conv2d layer.
//!
//! Shapes are random but small (CI budget): batch 1-3, 1-3 groups of 1-3 channels, kernels 1-3,
//! stride 1-3, padding 0-2, dilation 1-2, inputs just large enough for the dilated kernel plus 0-4.

use std::any::Any;

use ndarray::{Array1, Array4, Dimension, Ix1, Ix4, IxDyn};
use proptest::prelude::*;
use sparsegrad::check::{CheckOptions, gradcheck};
use sparsegrad::kernels::conv_gemm::{ConvProblem, conv2d_backward, conv2d_forward};
use sparsegrad::kernels::direct_conv::{
    conv2d_direct, conv2d_direct_input_grad, conv2d_direct_weight_grad,
};
use sparsegrad::kernels::im2col::{Window, col2im, im2col};
use sparsegrad::nn::{Conv2d, Module, WeightTransform, named_params};
use sparsegrad::ops::conv::Conv2dConfig;
use sparsegrad::prelude::*;
use sparsegrad::rng::{seeded, uniform};

/// One random convolution problem.
#[derive(Clone, Debug)]
struct Case {
    batch: usize,
    c_in: usize,
    c_out: usize,
    hw: [usize; 2],
    kernel: [usize; 2],
    cfg: Conv2dConfig,
    seed: u64,
}

impl Case {
    fn x_shape(&self) -> [usize; 4] {
        [self.batch, self.c_in, self.hw[0], self.hw[1]]
    }
    fn w_shape(&self) -> [usize; 4] {
        [
            self.c_out,
            self.c_in / self.cfg.groups,
            self.kernel[0],
            self.kernel[1],
        ]
    }
    fn window(&self) -> Window {
        self.cfg.window(self.hw, self.kernel).expect("case fits")
    }
    fn y_shape(&self) -> [usize; 4] {
        let [oh, ow] = self.window().out_hw;
        [self.batch, self.c_out, oh, ow]
    }
    /// Input, weight, bias and an output gradient, uniform in [-1, 1).
    fn tensors<F: Float>(&self) -> (Array4<F>, Array4<F>, Array1<F>, Array4<F>) {
        let mut rng = seeded(self.seed);
        let mut draw = || F::c(uniform(&mut rng, -1.0, 1.0));
        (
            Array4::from_shape_simple_fn(self.x_shape(), &mut draw),
            Array4::from_shape_simple_fn(self.w_shape(), &mut draw),
            Array1::from_shape_simple_fn(self.c_out, &mut draw),
            Array4::from_shape_simple_fn(self.y_shape(), &mut draw),
        )
    }
}

/// Cases with `groups` groups of `cin_g` input and `cout_g` output channels each.
fn case_with(
    max_batch: usize,
    groups: impl Strategy<Value = usize>,
    cin_g: impl Strategy<Value = usize>,
    cout_g: impl Strategy<Value = usize>,
) -> impl Strategy<Value = Case> {
    let axis = (1..=3usize, 1..=3usize, 0..=2usize, 1..=2usize, 0..=4usize);
    (
        1..=max_batch,
        groups,
        cin_g,
        cout_g,
        axis.clone(),
        axis,
        any::<u64>(),
    )
        .prop_map(|(batch, groups, cin_g, cout_g, ax_h, ax_w, seed)| {
            let (mut kernel, mut stride, mut padding, mut dilation, mut hw) =
                ([0; 2], [0; 2], [0; 2], [0; 2], [0; 2]);
            for (a, (k, s, p, d, extra)) in [ax_h, ax_w].into_iter().enumerate() {
                let span = d * (k - 1) + 1;
                (kernel[a], stride[a], padding[a], dilation[a]) = (k, s, p, d);
                hw[a] = span.saturating_sub(2 * p).max(1) + extra;
            }
            Case {
                batch,
                c_in: groups * cin_g,
                c_out: groups * cout_g,
                hw,
                kernel,
                cfg: Conv2dConfig {
                    stride,
                    padding,
                    dilation,
                    groups,
                },
                seed,
            }
        })
}

fn any_case() -> impl Strategy<Value = Case> {
    case_with(3, 1..=3usize, 1..=3usize, 1..=3usize)
}

/// "Same" convolutions (stride 1, padding d(k-1)/2, odd kernels): output rows as wide as input
/// rows, the case im2col copies a whole band at once.
fn same_case() -> impl Strategy<Value = Case> {
    (any_case(), 0..=1usize, 0..=1usize).prop_map(|(mut case, mh, mw)| {
        for (a, m) in [mh, mw].into_iter().enumerate() {
            case.kernel[a] = 2 * m + 1;
            case.cfg.padding[a] = case.cfg.dilation[a] * m;
        }
        case.cfg.stride = [1, 1];
        case
    })
}

/// Random cases with "same" convolutions over-represented.
fn mixed_case() -> impl Strategy<Value = Case> {
    prop_oneof![any_case(), same_case()]
}

/// groups = C_in: one input channel per group, channel multiplier 1-2.
fn depthwise_case() -> impl Strategy<Value = Case> {
    case_with(2, 2..=4usize, Just(1usize), 1..=2usize)
}

fn assert_close<F: Float>(
    what: &str,
    got: &ndarray::ArrayD<F>,
    want: &ndarray::ArrayD<F>,
    tol: f64,
) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.f64().abs()));
    for ((idx, &g), &w) in got.indexed_iter().zip(want.iter()) {
        assert!(
            (g.f64() - w.f64()).abs() <= tol * scale,
            "{what} at {:?}: got {g}, want {w}",
            idx.slice()
        );
    }
}

/// The op's output and (where asked) gradients, seeded with `g`.
struct OpRun<F: Float> {
    y: ndarray::ArrayD<F>,
    dx: Option<ndarray::ArrayD<F>>,
    dw: Option<ndarray::ArrayD<F>>,
    db: Option<ndarray::ArrayD<F>>,
}

/// Runs `conv2d` on a tape; `x_leaf` / `w_leaf` choose leaves (gradient wanted) or constants.
fn run_op<F: Float>(
    case: &Case,
    tensors: &(Array4<F>, Array4<F>, Array1<F>, Array4<F>),
    x_leaf: bool,
    w_leaf: bool,
    with_bias: bool,
) -> OpRun<F> {
    let (x, w, b, g) = tensors;
    let tape = Tape::<F>::new();
    let input =
        |t: ndarray::ArrayD<F>, leaf: bool| if leaf { tape.leaf(t) } else { tape.constant(t) };
    let xv = input(x.clone().into_dyn(), x_leaf);
    let wv = input(w.clone().into_dyn(), w_leaf);
    let bv = with_bias.then(|| tape.leaf(b.clone().into_dyn()));
    let y = xv.conv2d(wv, bv, &case.cfg);
    let y_value = (*y.value()).clone();
    if !(x_leaf || w_leaf || with_bias) {
        return OpRun {
            y: y_value,
            dx: None,
            dw: None,
            db: None,
        };
    }
    let grads = y.backward_with(g.clone().into_dyn());
    OpRun {
        y: y_value,
        dx: grads.wrt(xv).cloned(),
        dw: grads.wrt(wv).cloned(),
        db: bv.and_then(|b| grads.wrt(b).cloned()),
    }
}

/// Forward and every gradient of the op against the direct reference (f64).
fn check_against_direct(case: &Case, x_leaf: bool, w_leaf: bool, with_bias: bool) {
    let t = case.tensors::<f64>();
    let (x, w, b, g) = &t;
    let run = run_op(case, &t, x_leaf, w_leaf, with_bias);
    let y_ref = conv2d_direct(x.view(), w.view(), with_bias.then(|| b.view()), &case.cfg);
    assert_close("forward", &run.y, &y_ref.into_dyn(), 1e-12);
    assert_eq!(
        run.dx.is_some(),
        x_leaf,
        "input gradient present iff asked for"
    );
    assert_eq!(
        run.dw.is_some(),
        w_leaf,
        "weight gradient present iff asked for"
    );
    if let Some(dx) = &run.dx {
        let want = conv2d_direct_input_grad(g.view(), w.view(), case.hw, &case.cfg);
        assert_close("input gradient", dx, &want.into_dyn(), 1e-12);
    }
    if let Some(dw) = &run.dw {
        let want = conv2d_direct_weight_grad(x.view(), g.view(), case.kernel, &case.cfg);
        assert_close("weight gradient", dw, &want.into_dyn(), 1e-12);
    }
    if let Some(db) = &run.db {
        // db[o] = sum over n, oh, ow of g[n, o, oh, ow].
        let want = g
            .sum_axis(ndarray::Axis(3))
            .sum_axis(ndarray::Axis(2))
            .sum_axis(ndarray::Axis(0));
        assert_close("bias gradient", db, &want.into_dyn(), 1e-12);
    }
}

/// gradcheck of conv2d with respect to input, weight and bias (f64 central differences).
fn gradcheck_case(case: &Case) {
    let (x, w, b, _) = case.tensors::<f64>();
    let cfg = case.cfg;
    let report = gradcheck(
        move |v| v[0].conv2d(v[1], Some(v[2]), &cfg),
        &[x.into_dyn(), w.into_dyn(), b.into_dyn()],
        &CheckOptions::default(),
    );
    if let Err(e) = report {
        panic!("{case:?}: {e}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn conv2d_matches_direct_forward_and_gradients(
        case in mixed_case(), x_leaf in any::<bool>(), w_leaf in any::<bool>(), with_bias in any::<bool>()
    ) {
        check_against_direct(&case, x_leaf, w_leaf, with_bias);
    }

    #[test]
    fn conv2d_matches_direct_depthwise(case in depthwise_case(), with_bias in any::<bool>()) {
        check_against_direct(&case, true, true, with_bias);
    }

    /// The batched driver under every chunking and tiling (the op only uses the defaults, so small
    /// test shapes alone would never split an image across tiles or put several images in one).
    #[test]
    fn conv2d_matches_direct_for_any_chunking_and_tiling(
        case in prop_oneof![case_with(5, 1..=2usize, 1..=3usize, 1..=3usize), same_case()],
        chunk_len in 1..=5usize,
        tile_cols in 1..=60usize,
    ) {
        let (x, w, b, g) = case.tensors::<f64>();
        let mut p = ConvProblem::new(case.batch, case.c_in, case.c_out, case.cfg.groups, case.window());
        p.chunk_len = chunk_len;
        p.tile_cols = tile_cols;
        let flat = |a: &Array4<f64>| a.as_slice().expect("standard").to_vec();
        let y = conv2d_forward(&p, &flat(&x), &flat(&w), Some(b.as_slice().unwrap()));
        let y_ref = conv2d_direct(x.view(), w.view(), Some(b.view()), &case.cfg);
        assert_close("forward", &Array4::from_shape_vec(case.y_shape(), y).unwrap().into_dyn(), &y_ref.into_dyn(), 1e-12);
        let grads = conv2d_backward(&p, &flat(&x), &flat(&w), &flat(&g), [true, true, true]);
        let dx = Array4::from_shape_vec(case.x_shape(), grads.input.unwrap()).unwrap();
        let dw = Array4::from_shape_vec(case.w_shape(), grads.weight.unwrap()).unwrap();
        let db = Array1::from_vec(grads.bias.unwrap());
        let dx_ref = conv2d_direct_input_grad(g.view(), w.view(), case.hw, &case.cfg);
        let dw_ref = conv2d_direct_weight_grad(x.view(), g.view(), case.kernel, &case.cfg);
        let db_ref = g.sum_axis(ndarray::Axis(3)).sum_axis(ndarray::Axis(2)).sum_axis(ndarray::Axis(0));
        assert_close("input gradient", &dx.into_dyn(), &dx_ref.into_dyn(), 1e-12);
        assert_close("weight gradient", &dw.into_dyn(), &dw_ref.into_dyn(), 1e-12);
        assert_close("bias gradient", &db.into_dyn(), &db_ref.into_dyn(), 1e-12);
    }

    /// f32 (the training type, with its own tile sizes) against the f64 reference.
    #[test]
    fn conv2d_matches_direct_f32(case in any_case()) {
        let t32 = case.tensors::<f32>();
        let run = run_op(&case, &t32, true, true, true);
        let (x, w, b, g) = (
            t32.0.mapv(f64::from), t32.1.mapv(f64::from), t32.2.mapv(f64::from), t32.3.mapv(f64::from),
        );
        let widen = |a: &ndarray::ArrayD<f32>| a.mapv(f64::from);
        let y_ref = conv2d_direct(x.view(), w.view(), Some(b.view()), &case.cfg);
        assert_close("forward", &widen(&run.y), &y_ref.into_dyn(), 1e-5);
        let dx_ref = conv2d_direct_input_grad(g.view(), w.view(), case.hw, &case.cfg);
        let dw_ref = conv2d_direct_weight_grad(x.view(), g.view(), case.kernel, &case.cfg);
        assert_close("input gradient", &widen(run.dx.as_ref().unwrap()), &dx_ref.into_dyn(), 1e-5);
        assert_close("weight gradient", &widen(run.dw.as_ref().unwrap()), &dw_ref.into_dyn(), 1e-5);
    }

    #[test]
    fn grad_conv2d_gradcheck(case in case_with(2, 1..=2usize, 1..=2usize, 1..=2usize)) {
        gradcheck_case(&case);
    }

    #[test]
    fn grad_conv2d_gradcheck_depthwise(case in depthwise_case()) {
        gradcheck_case(&case);
    }

    /// col2im is the adjoint of im2col: <im2col(x), c> = <x, col2im(c)> over any band of rows.
    #[test]
    fn conv2d_im2col_col2im_adjoint(case in mixed_case(), a in 0.0..1.0f64, b in 0.0..1.0f64) {
        let win = case.window();
        let rows = row_band(&win, a, b);
        let (x, ..) = case.tensors::<f64>();
        let image = x.index_axis(ndarray::Axis(0), 0).to_owned().into_raw_vec_and_offset().0;
        let (k, width) = (case.c_in * win.taps(), rows.len() * win.out_hw[1]);
        let ld = width + 2; // a row stride wider than the block must be honoured
        let mut rng = seeded(case.seed ^ 1);
        let c: Vec<f64> = (0..k * ld).map(|_| uniform(&mut rng, -1.0, 1.0)).collect();
        let mut cols = vec![f64::NAN; k * ld];
        im2col(&win, &image, case.c_in, rows.clone(), &mut cols, ld);
        let mut back = vec![0.0; image.len()];
        col2im(&win, &mut c.clone(), ld, case.c_in, rows.clone(), &mut back);
        let mut lhs = 0.0;
        for r in 0..k {
            for q in 0..width {
                let v = cols[r * ld + q];
                prop_assert!(v.is_finite(), "im2col left ({r}, {q}) unwritten");
                lhs += v * c[r * ld + q];
            }
            for q in width..ld {
                prop_assert!(cols[r * ld + q].is_nan(), "im2col wrote past the block at ({r}, {q})");
            }
        }
        let rhs: f64 = image.iter().zip(&back).map(|(a, b)| a * b).sum();
        prop_assert!((lhs - rhs).abs() <= 1e-12 * (1.0 + lhs.abs()), "{lhs} vs {rhs}");
    }

    /// im2col against its definition, element by element, over any band of rows.
    #[test]
    fn conv2d_im2col_matches_definition(case in mixed_case(), a in 0.0..1.0f64, b in 0.0..1.0f64) {
        let win = case.window();
        let rows = row_band(&win, a, b);
        let (x, ..) = case.tensors::<f64>();
        let image = x.index_axis(ndarray::Axis(0), 0);
        let flat = image.to_owned().into_raw_vec_and_offset().0;
        let out_w = win.out_hw[1];
        let width = rows.len() * out_w;
        let mut cols = vec![f64::NAN; case.c_in * win.taps() * width];
        im2col(&win, &flat, case.c_in, rows.clone(), &mut cols, width);
        let [kh, kw] = win.kernel;
        for c in 0..case.c_in {
            for i in 0..kh {
                for j in 0..kw {
                    for q in rows.start * out_w..rows.end * out_w {
                        let (oh, ow) = (q / out_w, q % out_w);
                        let ih = (oh * win.stride[0] + i * win.dilation[0]) as isize - win.padding[0] as isize;
                        let iw = (ow * win.stride[1] + j * win.dilation[1]) as isize - win.padding[1] as isize;
                        let inside = ih >= 0 && iw >= 0 && (ih as usize) < case.hw[0] && (iw as usize) < case.hw[1];
                        let want = if inside { image[[c, ih as usize, iw as usize]] } else { 0.0 };
                        let got = cols[((c * kh + i) * kw + j) * width + q - rows.start * out_w];
                        prop_assert_eq!(got, want, "c {} tap ({}, {}) position {}", c, i, j, q);
                    }
                }
            }
        }
    }
}

/// A non-empty band of output rows chosen by two fractions.
fn row_band(win: &Window, a: f64, b: f64) -> std::ops::Range<usize> {
    let out_h = win.out_hw[0];
    let (lo, hi) = ((a * out_h as f64) as usize, (b * out_h as f64) as usize);
    lo.min(hi).min(out_h - 1)..(lo.max(hi) + 1).min(out_h)
}

/// Forward, dX, dW and db with a pool of `threads` threads, as bit patterns.
fn run_in_pool(threads: usize, case: &Case) -> Vec<Vec<u32>> {
    let t = case.tensors::<f32>();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let run = pool.install(|| run_op(case, &t, true, true, true));
    [Some(run.y), run.dx, run.dw, run.db]
        .into_iter()
        .map(|a| {
            a.expect("all computed")
                .iter()
                .map(|v| v.to_bits())
                .collect()
        })
        .collect()
}

#[test]
fn conv2d_bit_identical_across_thread_counts() {
    let cfg = Conv2dConfig {
        padding: [1, 1],
        ..Conv2dConfig::default()
    };
    // 37 images: several chunks of 3 (the last one short), several small images per tile.
    let small = Case {
        batch: 37,
        c_in: 3,
        c_out: 8,
        hw: [10, 9],
        kernel: [3, 3],
        cfg,
        seed: 7,
    };
    // 40x40 images: each image split over several tiles; grouped, strided.
    let large = Case {
        batch: 20,
        c_in: 4,
        c_out: 6,
        hw: [40, 40],
        kernel: [3, 3],
        cfg: Conv2dConfig {
            stride: [1, 2],
            groups: 2,
            ..cfg
        },
        seed: 8,
    };
    for case in [small, large] {
        let one = run_in_pool(1, &case);
        for threads in [2, 3] {
            let many = run_in_pool(threads, &case);
            for (name, (a, b)) in [
                "output",
                "input gradient",
                "weight gradient",
                "bias gradient",
            ]
            .iter()
            .zip(one.iter().zip(&many))
            {
                assert!(
                    a == b,
                    "{name} differs between 1 and {threads} threads for {case:?}"
                );
            }
        }
    }
}

#[test]
fn conv2d_accepts_non_contiguous_input() {
    let case = Case {
        batch: 2,
        c_in: 2,
        c_out: 3,
        hw: [5, 4],
        kernel: [2, 3],
        cfg: Conv2dConfig {
            padding: [1, 0],
            ..Conv2dConfig::default()
        },
        seed: 3,
    };
    let (x, w, b, _) = case.tensors::<f64>();
    // The same logical input stored with H and W swapped in memory.
    let mut stored = Array4::<f64>::zeros([2, 2, 4, 5]);
    stored.assign(&x.view().permuted_axes([0, 1, 3, 2]));
    let x_strided = stored.permuted_axes([0, 1, 3, 2]);
    assert!(!x_strided.is_standard_layout());
    let tape = Tape::<f64>::new();
    let y = tape.constant(x_strided.into_dyn()).conv2d(
        tape.leaf(w.clone().into_dyn()),
        Some(tape.leaf(b.clone().into_dyn())),
        &case.cfg,
    );
    let want = conv2d_direct(x.view(), w.view(), Some(b.view()), &case.cfg);
    assert_close("forward", &y.value(), &want.into_dyn(), 1e-12);
}

#[test]
fn conv2d_empty_batch_gives_empty_output_and_zero_weight_gradient() {
    let tape = Tape::<f64>::new();
    let x = tape.leaf(ndarray::ArrayD::zeros(IxDyn(&[0, 2, 5, 5])));
    let w = tape.leaf(ndarray::ArrayD::ones(IxDyn(&[3, 2, 3, 3])));
    let b = tape.leaf(ndarray::ArrayD::ones(IxDyn(&[3])));
    let y = x.conv2d(w, Some(b), &Conv2dConfig::default());
    assert_eq!(y.shape(), [0, 3, 3, 3]);
    let grads = y.sum().backward();
    assert!(grads.wrt(w).unwrap().iter().all(|&v| v == 0.0));
    assert!(grads.wrt(b).unwrap().iter().all(|&v| v == 0.0));
    assert_eq!(grads.wrt(x).unwrap().shape(), [0, 2, 5, 5]);
}

#[test]
#[should_panic(expected = "op `conv2d`")]
fn conv2d_rejects_weight_with_wrong_channels() {
    let tape = Tape::<f32>::new();
    let x = tape.constant(ndarray::ArrayD::zeros(IxDyn(&[1, 4, 5, 5])));
    let w = tape.constant(ndarray::ArrayD::zeros(IxDyn(&[2, 4, 3, 3])));
    let cfg = Conv2dConfig {
        groups: 2,
        ..Conv2dConfig::default()
    };
    let _ = x.conv2d(w, None, &cfg); // groups 2 needs weight [_, 2, _, _]
}

#[test]
#[should_panic(expected = "op `conv2d`")]
fn conv2d_rejects_kernel_larger_than_input() {
    let tape = Tape::<f32>::new();
    let x = tape.constant(ndarray::ArrayD::zeros(IxDyn(&[1, 1, 2, 2])));
    let w = tape.constant(ndarray::ArrayD::zeros(IxDyn(&[1, 1, 3, 3])));
    let _ = x.conv2d(w, None, &Conv2dConfig::default());
}

/// A transform whose effective weight is zero: if the layer used it, only the bias is left.
struct ZeroWeight;

impl WeightTransform<f64> for ZeroWeight {
    fn name(&self) -> &'static str {
        "zero"
    }
    fn apply<'t>(&self, raw: Var<'t, f64>) -> Var<'t, f64> {
        raw.mul_scalar(0.0)
    }
    fn effective(&self, raw: &Tensor<f64>) -> Tensor<f64> {
        raw.mapv(|_| 0.0)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

#[test]
fn conv2d_layer_computes_with_the_weight_hook() {
    let mut rng = seeded(11);
    let cfg = Conv2dConfig {
        padding: [1, 1],
        ..Conv2dConfig::default()
    };
    let mut layer = Conv2d::<f64>::new(3, 4, [3, 3], cfg, true, &mut rng);
    let x = Array4::from_shape_simple_fn([2, 3, 6, 5], || uniform(&mut rng, -1.0, 1.0)).into_dyn();
    let bias = layer
        .bias
        .as_ref()
        .unwrap()
        .value()
        .clone()
        .into_dimensionality::<Ix1>()
        .unwrap();
    let is_bias_only = |y: &Tensor<f64>| {
        let y = y.view().into_dimensionality::<Ix4>().unwrap();
        y.indexed_iter().all(|((_, o, _, _), &v)| v == bias[o])
    };

    let tape = Tape::<f64>::new();
    let raw_out = layer.forward(tape.constant(x.clone()));
    assert!(
        !is_bias_only(&raw_out.value()),
        "the raw weight must change the output"
    );

    layer.weight.transform = Some(Box::new(ZeroWeight));
    let tape = Tape::<f64>::new();
    let y = layer.forward(tape.constant(x));
    assert!(
        is_bias_only(&y.value()),
        "a zeroed effective weight leaves only the bias"
    );
    let grads = y.sum().backward();
    let raw_grad = grads
        .of(&layer.weight.raw)
        .expect("the raw weight is on the tape");
    assert!(
        raw_grad.iter().all(|&v| v == 0.0),
        "d/d raw of 0 * raw is 0"
    );
    let db = grads
        .of(layer.bias.as_ref().unwrap())
        .expect("bias gradient");
    assert!(
        db.iter().all(|&v| v == 2.0 * 6.0 * 5.0),
        "db = number of outputs per channel"
    );
}

#[test]
fn conv2d_layer_names_init_and_sizes() {
    let mut rng = seeded(5);
    let mut layer = Conv2d::<f32>::new(20, 50, [5, 5], Conv2dConfig::default(), true, &mut rng);
    let names: Vec<String> = named_params(&layer).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["weight", "bias"]);
    let mut weights = Vec::new();
    layer.visit_weights("features.3", &mut |n, _| weights.push(n.to_string()));
    layer.visit_weights_mut("features.3", &mut |n, _| weights.push(n.to_string()));
    assert_eq!(weights, ["features.3.weight", "features.3.weight"]);
    let mut full = Vec::new();
    layer.visit("features.3", &mut |n, _| full.push(n.to_string()));
    assert_eq!(full, ["features.3.weight", "features.3.bias"]);

    // PyTorch default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = 20 * 5 * 5.
    let bound = 1.0 / (500f32).sqrt();
    let w = layer.weight.raw.value();
    assert_eq!(w.shape(), [50, 20, 5, 5]);
    assert!(w.iter().all(|v| v.abs() <= bound));
    assert!(
        w.iter().any(|v| v.abs() > 0.9 * bound),
        "spread over the whole range"
    );
    assert!(
        layer
            .bias
            .as_ref()
            .unwrap()
            .value()
            .iter()
            .all(|v| v.abs() <= bound)
    );

    // LeNet-5-Caffe conv2 on 12x12: 8x8 outputs, 50*8*8*20*5*5 MACs per image.
    assert_eq!(layer.output_hw([12, 12]), [8, 8]);
    assert_eq!(layer.macs([12, 12]), 50 * 64 * 500);
    assert_eq!(
        (layer.in_channels(), layer.out_channels(), layer.kernel()),
        (20, 50, [5, 5])
    );

    // Grouped, strided, dilated: (32 + 2 - 2*2 - 1) / 2 + 1 = 15.
    let cfg = Conv2dConfig {
        stride: [2, 2],
        padding: [1, 1],
        dilation: [2, 2],
        groups: 4,
    };
    let grouped = Conv2d::<f32>::new(8, 12, [3, 3], cfg, false, &mut rng);
    assert_eq!(grouped.weight.raw.shape(), [12, 2, 3, 3]);
    assert_eq!(grouped.output_hw([32, 32]), [15, 15]);
    assert_eq!(grouped.macs([32, 32]), 12 * 15 * 15 * 2 * 9);
    assert!(grouped.bias.is_none());
}
