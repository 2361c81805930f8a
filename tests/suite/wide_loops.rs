//! The slice loops of large elementwise ops (split over threads in fixed chunks, compiled for the
//! widest vectors) against plain per-element references, over lengths that cross their chunk
//! and lane boundaries and the parallel threshold: `mul` of two same-shape operands (a masked
//! weight) and STR's soft threshold with one threshold per layer. Each must give the same bits
//! on 1 and 3 threads.

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
