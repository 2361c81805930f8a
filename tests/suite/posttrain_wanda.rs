//! Wanda (`sparsegrad posttrain --method wanda`, `src/methods/wanda.rs`): the recorded input
//! norms against a hand im2col / hand sums, the scores |W_ij| ||X_j|| against a hand
//! computation, the per-row and per-layer masks, and whole runs on a dense LeNet-300-100 with and
//! without the reconstruction fine-tuning (exact global count, every row pruned by floor or
//! ceil of its share, the lowest scores of each row pruned).

use sparsegrad::methods::wanda::{prune_mask, wanda_scores};
use sparsegrad::nn::input_norms::InputNorms;
use sparsegrad::nn::{Conv2d, Linear, Module};
use sparsegrad::ops::conv::Conv2dConfig;
use sparsegrad::posttrain::{self, PosttrainConfig};
use sparsegrad::rng::{derived, seeded, uniform};
use sparsegrad::run::dir::MODEL_FILE;
use sparsegrad::run::meta::load_model;
use sparsegrad::tape::{Tape, Tensor};
use sparsegrad::train::Progress;

use crate::posttrain::{dense_model, load_dense};
use crate::scratch::Scratch;

fn random(shape: &[usize], seed: u64) -> Tensor<f32> {
    let mut rng = seeded(seed);
    Tensor::from_shape_simple_fn(ndarray::IxDyn(shape), || {
        uniform(&mut rng, -1.0, 1.0) as f32
    })
}

fn forward(layer: &mut dyn Module<f32>, x: &Tensor<f32>) {
    let tape = Tape::new();
    layer.forward(tape.constant(x.clone()));
}

/// A Linear layer records sum_n x_nj² per input column over all passes; the scores are
/// |W_ij| sqrt of it, by hand.
#[test]
fn linear_scores_are_weight_magnitude_times_input_column_norm() {
    let mut layer = Linear::<f32>::new(3, 2, true, &mut derived(0, 1));
    layer.weight.raw.set_value(
        Tensor::from_shape_vec(
            ndarray::IxDyn(&[2, 3]),
            vec![0.5, -2.0, 1.0, -0.25, 0.75, 3.0],
        )
        .unwrap(),
    );
    layer.weight.input_norms = Some(InputNorms::default());
    let x1 = Tensor::from_shape_vec(ndarray::IxDyn(&[2, 3]), vec![1.0, 2.0, 0.0, -3.0, 0.5, 1.0])
        .unwrap();
    let x2 = Tensor::from_shape_vec(ndarray::IxDyn(&[1, 3]), vec![2.0, -1.0, 4.0]).unwrap();
    forward(&mut layer, &x1);
    forward(&mut layer, &x2);
    let norms = layer.weight.input_norms.clone().unwrap();
    // Columns: 1 + 9 + 4 = 14, 4 + 0.25 + 1 = 5.25, 0 + 1 + 16 = 17.
    assert_eq!(norms.squares, vec![14.0, 5.25, 17.0]);
    assert_eq!(norms.rows, 3);
    let scores = wanda_scores(layer.weight.raw.value(), &norms).unwrap();
    let want = [
        0.5 * 14f64.sqrt(),
        2.0 * 5.25f64.sqrt(),
        1.0 * 17f64.sqrt(),
        0.25 * 14f64.sqrt(),
        0.75 * 5.25f64.sqrt(),
        3.0 * 17f64.sqrt(),
    ];
    for (s, w) in scores.iter().zip(want) {
        assert!((s - w).abs() < 1e-12, "{s} vs {w}");
    }
    // Per row, pruning 1 each: row 0 drops col 0 (1.87 < 4.12 < 4.58), row 1 col 0 (0.94).
    assert_eq!(
        prune_mask(&scores, 2, 2, true),
        vec![0.0, 1.0, 1.0, 0.0, 1.0, 1.0]
    );
    // Per layer, pruning 2: the two lowest of the layer (0.94, 1.72), both in row 1.
    assert_eq!(
        prune_mask(&scores, 2, 2, false),
        vec![1.0, 1.0, 1.0, 0.0, 0.0, 1.0]
    );
}

/// A convolution records the squared norms of its unfolded patches: for every (channel, tap)
/// the sum over images and output positions of the input it reads, zero padding reading 0;
/// checked against an explicit im2col, with stride, padding, dilation and two groups.
#[test]
fn conv_norms_are_the_norms_of_the_unfolded_patches() {
    let cfg = Conv2dConfig {
        stride: [2, 1],
        padding: [1, 2],
        dilation: [1, 2],
        groups: 2,
    };
    let (n, c_in, h, w, kh, kw) = (2, 4, 6, 5, 3, 2);
    let mut conv = Conv2d::<f32>::new(c_in, 6, [kh, kw], cfg, false, &mut derived(0, 2));
    conv.weight.input_norms = Some(InputNorms::default());
    let x = random(&[n, c_in, h, w], 4);
    forward(&mut conv, &x);
    let norms = conv.weight.input_norms.clone().unwrap();
    let [oh, ow] = conv.output_hw([h, w]);
    let per_group = c_in / 2;
    assert_eq!(
        (norms.groups, norms.columns, norms.rows),
        (2, per_group * kh * kw, n * oh * ow)
    );
    for g in 0..2 {
        for c in 0..per_group {
            for i in 0..kh {
                for j in 0..kw {
                    let mut want = 0.0f64;
                    for image in 0..n {
                        for a in 0..oh {
                            for b in 0..ow {
                                let r = (a * 2 + i) as isize - 1;
                                let q = (b + 2 * j) as isize - 2;
                                if r >= 0 && q >= 0 && (r as usize) < h && (q as usize) < w {
                                    let v = x[[image, g * per_group + c, r as usize, q as usize]];
                                    want += (v as f64).powi(2);
                                }
                            }
                        }
                    }
                    let got = norms.squared_norm(g, (c * kh + i) * kw + j);
                    assert!(
                        (got - want).abs() < 1e-9 * want.max(1.0),
                        "g{g} c{c} ({i},{j}): {got} vs {want}"
                    );
                }
            }
        }
    }
    // Rows 0-2 (group 0) use the first group's norms, rows 3-5 the second's.
    let scores = wanda_scores(conv.weight.raw.value(), &norms).unwrap();
    let weight = conv.weight.raw.value();
    let columns = per_group * kh * kw;
    for (k, s) in scores.iter().enumerate() {
        let (row, col) = (k / columns, k % columns);
        let want =
            (weight.as_slice().unwrap()[k] as f64).abs() * norms.squared_norm(row / 3, col).sqrt();
        assert_eq!(*s, want);
    }
}

/// The per-row rule prunes floor(count / rows) in every row and one more in the rows whose next
/// score is lowest; ties go to the lower index.
#[test]
fn per_row_counts_share_the_remainder_by_next_lowest_score() {
    let scores = [5.0, 1.0, 3.0, 2.0, 2.0, 9.0, 0.5, 7.0, 4.0];
    // 3 rows, 4 prunes: 1 per row (1.0, 2.0 (first of the tie), 0.5) plus one more where the
    // next is lowest: row 0 next 3.0, row 1 next 2.0, row 2 next 4.0 -> row 1.
    assert_eq!(
        prune_mask(&scores, 3, 4, true),
        vec![1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0]
    );
    assert_eq!(prune_mask(&scores, 3, 0, true), vec![1.0; 9]);
    assert_eq!(prune_mask(&scores, 3, 9, true), vec![0.0; 9]);
}

/// Whole runs: exact global count round(r0 N) with and without fine-tuning, every row's pruned
/// count the floor or ceiling of the layer's share; without fine-tuning the survivors keep their
/// dense values bit for bit.
#[test]
fn whole_runs_meet_the_target_per_row_with_and_without_fine_tuning() {
    let r0 = 0.7;
    let dir = Scratch::new("wanda-run");
    for finetune in [false, true] {
        let config = PosttrainConfig {
            checkpoint: Some(dense_model(&dir)),
            method: "wanda".parse().unwrap(),
            target_sparsity: Some(r0),
            calib: 256,
            iters: 16,
            warmup: 4,
            log_every: 8,
            no_finetune: !finetune,
            out: Some(dir.join(format!("run-{finetune}"))),
            ..PosttrainConfig::default()
        };
        let s = posttrain::run(&config, false, &mut Progress::plain()).unwrap();
        let want = (r0 * s.params_total as f64).round() as usize;
        assert_eq!(
            s.params_total - s.params_nonzero,
            want,
            "finetune {finetune}"
        );
        let (sparse, _) = load_model(&config.out_dir().join(MODEL_FILE)).unwrap();
        let (dense, _) = load_dense();
        let mut dense_weights = Vec::new();
        dense.visit_weights("", &mut |_, w| dense_weights.push(w.raw.value().clone()));
        let mut l = 0;
        sparse.visit_weights("", &mut |name, w| {
            let (v, d) = (w.raw.value(), &dense_weights[l]);
            l += 1;
            let rows = v.shape()[0];
            let columns = v.len() / rows;
            let pruned: Vec<usize> = (0..rows)
                .map(|i| {
                    (0..columns)
                        .filter(|&j| v.as_slice().unwrap()[i * columns + j] == 0.0)
                        .count()
                })
                .collect();
            let (lo, hi) = (pruned.iter().min().unwrap(), pruned.iter().max().unwrap());
            assert!(hi - lo <= 1, "{name}: per-row counts {lo}..{hi}");
            if !finetune {
                for (a, b) in v.iter().zip(d.iter()) {
                    assert!(
                        *a == 0.0 || a.to_bits() == b.to_bits(),
                        "{name}: a survivor changed"
                    );
                }
            }
        });
    }
}
