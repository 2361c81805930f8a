//! The slice loops of large elementwise ops (split over threads in fixed chunks, compiled for the
//! widest vectors) against plain per-element references, over lengths that cross their chunk
//! and lane boundaries and the parallel threshold: `mul` of two same-shape operands (a masked
//! weight), the contiguous path of the unary elementwise ops (relu and the rest) and STR's soft
//! threshold with one threshold per layer. Each must give the same bits on 1 and 3 threads.

use ndarray::{ArrayD, IxDyn};
use sparsegrad::ops::sparsity::ThresholdFn;
use sparsegrad::prelude::*;
use sparsegrad::rng::{seeded, standard_normal};

/// Around the lane (32), chunk (4096) and parallel (65536) boundaries.
const LENGTHS: [usize; 7] = [0, 1, 31, 33, 4095, 4097 * 3 + 5, 65536 + 4096 * 2 + 77];

fn normal(len: usize, scale: f32, seed: u64) -> ArrayD<f32> {
    let mut rng = seeded(seed);
    ArrayD::from_shape_simple_fn(IxDyn(&[len]), || scale * standard_normal(&mut rng) as f32)
}

fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

fn bits(t: &ArrayD<f32>) -> Vec<u32> {
    t.iter().map(|v| v.to_bits()).collect()
}

/// y = a * b, then dL/da and dL/db for L = sum(y * c).
fn mul_run(a: &ArrayD<f32>, b: &ArrayD<f32>, c: &ArrayD<f32>) -> [ArrayD<f32>; 3] {
    let tape = Tape::<f32>::new();
    let (av, bv) = (tape.leaf(a.clone()), tape.leaf(b.clone()));
    let y = av * bv;
    let value = (*y.value()).clone();
    let grads = (y * tape.constant(c.clone())).sum().backward();
    [
        value,
        grads.wrt(av).unwrap().clone(),
        grads.wrt(bv).unwrap().clone(),
    ]
}

#[test]
fn same_shape_mul_is_the_per_element_product_on_any_thread_count() {
    for len in LENGTHS {
        let (a, b, c) = (
            normal(len, 1.0, 1),
            normal(len, 1.0, 2),
            normal(len, 1.0, 3),
        );
        let one = in_pool(1, || mul_run(&a, &b, &c));
        let three = in_pool(3, || mul_run(&a, &b, &c));
        let expected = [&a * &b, &c * &b, &c * &a];
        for k in 0..3 {
            assert_eq!(bits(&one[k]), bits(&expected[k]), "len {len}, output {k}");
            assert_eq!(bits(&three[k]), bits(&expected[k]), "len {len}, output {k}");
        }
    }
}

/// A constant mask times a weight: only the weight gets a gradient, g * mask.
#[test]
fn mul_by_a_constant_mask_passes_the_masked_gradient() {
    let len = 70_001;
    let (w, g) = (normal(len, 1.0, 4), normal(len, 1.0, 5));
    let mask = w.mapv(|v| if v.abs() > 0.5 { 1.0f32 } else { 0.0 });
    let tape = Tape::<f32>::new();
    let wv = tape.leaf(w.clone());
    let y = wv * tape.constant(mask.clone());
    assert_eq!(bits(&y.value()), bits(&(&w * &mask)));
    let grads = (y * tape.constant(g.clone())).sum().backward();
    assert_eq!(bits(grads.wrt(wv).unwrap()), bits(&(&g * &mask)));
}

/// STR on `w` with threshold sigmoid(s): (y, dL/dw if w is trainable, dL/ds) for L = sum(y * c).
fn soft_threshold_run(
    w: &ArrayD<f32>,
    s: f32,
    c: &ArrayD<f32>,
    w_trainable: bool,
) -> (ArrayD<f32>, Option<ArrayD<f32>>, f32) {
    let tape = Tape::<f32>::new();
    let wv = if w_trainable {
        tape.leaf(w.clone())
    } else {
        tape.constant(w.clone())
    };
    let sv = tape.leaf(ArrayD::from_elem(IxDyn(&[]), s));
    let y = wv.soft_threshold(sv, &ThresholdFn::Sigmoid);
    let value = (*y.value()).clone();
    let grads = (y * tape.constant(c.clone())).sum().backward();
    let dw = w_trainable.then(|| grads.wrt(wv).unwrap().clone());
    (value, dw, grads.wrt(sv).unwrap()[[]])
}

#[test]
fn layer_soft_threshold_matches_the_per_element_formula_on_any_thread_count() {
    let s = -3.2f32;
    let t = (1.0 / (1.0 + (-(s as f64)).exp())) as f32;
    for len in LENGTHS {
        let (w, c) = (normal(len, 0.05, 6), normal(len, 1.0, 7));
        let (y, dw, ds) = in_pool(1, || soft_threshold_run(&w, s, &c, true));
        let alive = |w: f32| w.abs() > t;
        let sign = |w: f32| if w > 0.0 { 1.0 } else { -1.0 };
        // sign(w) relu(|w| - t): a pruned negative entry is -0.0.
        let y_expected = w.mapv(|w| sign(w) * (w.abs() - t).max(0.0));
        let dw_expected = ndarray::Zip::from(&c)
            .and(&w)
            .map_collect(|&c, &w| if alive(w) { c } else { 0.0 });
        assert_eq!(bits(&y), bits(&y_expected), "len {len}");
        assert_eq!(bits(&dw.unwrap()), bits(&dw_expected), "len {len}");
        // d/ds = -g'(s) sum over alive entries of c sign(w), g' = g (1 - g); summed here in
        // element order, so equal to rounding.
        let dg = (t as f64) * (1.0 - t as f64);
        let sum: f64 = ndarray::Zip::from(&c).and(&w).fold(0.0, |acc, &c, &w| {
            acc + if alive(w) { (c * sign(w)) as f64 } else { 0.0 }
        });
        let ds_expected = -dg * sum;
        assert!(
            (ds as f64 - ds_expected).abs() <= 1e-5 * (1.0 + ds_expected.abs()),
            "len {len}: ds {ds} against {ds_expected}"
        );
        // The same bits on three threads, and for a frozen weight (the threshold's pass alone).
        let (y3, dw3, ds3) = in_pool(3, || soft_threshold_run(&w, s, &c, true));
        assert_eq!(bits(&y3), bits(&y), "len {len}");
        assert_eq!(bits(&dw3.unwrap()), bits(&dw_expected), "len {len}");
        assert_eq!(ds3.to_bits(), ds.to_bits(), "len {len}");
        let (_, none, ds_frozen) = in_pool(3, || soft_threshold_run(&w, s, &c, false));
        assert!(none.is_none());
        assert_eq!(
            ds_frozen.to_bits(),
            ds.to_bits(),
            "len {len}: frozen weight"
        );
    }
}

/// `x` with the values that test a select or a max (signed zeros, NaN, infinities) at spread
/// positions.
fn with_special_values(mut x: ArrayD<f32>) -> ArrayD<f32> {
    let special = [
        -0.0,
        0.0,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        -1e-30,
        1e-30,
    ];
    let len = x.len();
    for (k, v) in x.iter_mut().enumerate() {
        if k % 97 < special.len() && len > 1 {
            *v = special[k % 97];
        }
    }
    x
}

/// `op(x)` and dL/dx for L = sum(op(x) * c), `x` stored with the layout it has.
fn unary_run(
    x: &ArrayD<f32>,
    c: &ArrayD<f32>,
    op: impl for<'t> Fn(Var<'t, f32>) -> Var<'t, f32>,
) -> [ArrayD<f32>; 2] {
    let tape = Tape::<f32>::new();
    let xv = tape.leaf(x.clone());
    let y = op(xv);
    let value = (*y.value()).clone();
    let grads = (y * tape.constant(c.clone())).sum().backward();
    [value, grads.wrt(xv).unwrap().clone()]
}

#[test]
fn relu_is_max_with_zero_and_passes_the_gradient_where_positive() {
    for len in LENGTHS {
        let (x, c) = (
            with_special_values(normal(len, 1.0, 8)),
            normal(len, 1.0, 9),
        );
        let y_expected = x.mapv(|x| x.max(0.0));
        // g * 1[x > 0] as the op writes it: times one or zero (NaN x gives g * 0).
        let dx_expected = ndarray::Zip::from(&c)
            .and(&x)
            .map_collect(|&g, &x| g * if x > 0.0 { 1.0 } else { 0.0 });
        for threads in [1, 3] {
            let [y, dx] = in_pool(threads, || unary_run(&x, &c, |v| v.relu()));
            assert_eq!(bits(&y), bits(&y_expected), "len {len}, {threads} threads");
            assert_eq!(
                bits(&dx),
                bits(&dx_expected),
                "len {len}, {threads} threads"
            );
        }
    }
}

/// Every unary op gives the same bits on a contiguous operand (the vectorised slice loop) as on
/// the same values stored transposed (ndarray's `Zip`, element by element).
#[test]
fn unary_ops_give_the_same_bits_contiguous_or_strided() {
    type Op = for<'t> fn(Var<'t, f32>) -> Var<'t, f32>;
    let ops: [(&str, Op); 9] = [
        ("relu", |v| v.relu()),
        ("neg", |v| -v),
        ("abs", |v| v.abs()),
        ("exp", |v| v.exp()),
        ("sqrt", |v| v.abs().sqrt()),
        ("sigmoid", |v| v.sigmoid()),
        ("tanh", |v| v.tanh()),
        ("leaky_relu", |v| v.leaky_relu(0.01)),
        ("mul_scalar", |v| v.mul_scalar(0.3)),
    ];
    let (rows, cols) = (300, 257);
    let x = with_special_values(normal(rows * cols, 1.0, 10))
        .into_shape_with_order(IxDyn(&[rows, cols]))
        .unwrap();
    let c = normal(rows * cols, 1.0, 11)
        .into_shape_with_order(IxDyn(&[rows, cols]))
        .unwrap();
    // The same logical matrix stored column-major: its slice view is not in element order.
    let mut strided = ArrayD::zeros(IxDyn(&[cols, rows])).reversed_axes();
    strided.assign(&x);
    assert!(strided.as_slice().is_none());
    for (name, op) in ops {
        for threads in [1, 3] {
            let contiguous = in_pool(threads, || unary_run(&x, &c, op));
            let zipped = in_pool(threads, || unary_run(&strided, &c, op));
            for k in 0..2 {
                let standard = zipped[k].as_standard_layout().into_owned();
                assert_eq!(bits(&contiguous[k]), bits(&standard), "{name}, output {k}");
            }
        }
    }
}
