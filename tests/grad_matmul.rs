//! Matrix products (`src/ops/matmul.rs`, `src/kernels/gemm.rs`): gradient properties on random
//! sizes, the forward against a naive triple loop, and GEMM's bit-identity across thread counts.

#[path = "suite/common.rs"]
mod common;

use common::{assert_close, assert_grad, forward};
use ndarray::{Array2, ArrayD, Axis, IxDyn};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sparsegrad::check::strategies::tensor;
use sparsegrad::kernels::gemm::{gemm, serial_calls_on_this_thread};
use sparsegrad::tape::{Tape, Tensor};

/// `c[i, j] = sum_p a[i, p] b[p, j]`, the textbook way.
fn naive(a: &Tensor<f64>, b: &Tensor<f64>) -> Tensor<f64> {
    let (m, k, n) = (a.shape()[0], a.shape()[1], b.shape()[1]);
    assert_eq!(b.shape()[0], k);
    let mut c = ArrayD::zeros(IxDyn(&[m, n]));
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0;
            for p in 0..k {
                s += a[[i, p]] * b[[p, j]];
            }
            c[[i, j]] = s;
        }
    }
    c
}

fn t2(x: &Tensor<f64>) -> Tensor<f64> {
    x.view().reversed_axes().to_owned()
}

/// Matrices `[m, k]` and `[k, n]`, dims in 1..=6.
fn matmul_pair() -> impl Strategy<Value = (Tensor<f64>, Tensor<f64>)> {
    (1..=6usize, 1..=6usize, 1..=6usize)
        .prop_flat_map(|(m, k, n)| (tensor(vec![m, k], -2.0, 2.0), tensor(vec![k, n], -2.0, 2.0)))
}

proptest! {
    #![proptest_config(common::proptest_config())]

    #[test]
    fn grad_matmul((a, b) in matmul_pair()) {
        assert_grad(|v| v[0].matmul(v[1]), &[a, b]);
    }

    #[test]
    fn grad_matmul_nt(
        (a, b) in (1..=6usize, 1..=6usize, 1..=6usize).prop_flat_map(|(m, k, n)| {
            (tensor(vec![m, k], -2.0, 2.0), tensor(vec![n, k], -2.0, 2.0))
        })
    ) {
        assert_close(&forward(|v| v[0].matmul_nt(v[1]), &[a.clone(), b.clone()]), &naive(&a, &t2(&b)));
        assert_grad(|v| v[0].matmul_nt(v[1]), &[a, b]);
    }

    /// `x W^T + b` against the triple loop plus the bias, and its gradient w.r.t. x, W and b.
    #[test]
    fn grad_linear(
        (x, w, b) in (1..=6usize, 1..=6usize, 1..=6usize).prop_flat_map(|(n, i, o)| {
            (tensor(vec![n, i], -2.0, 2.0), tensor(vec![o, i], -2.0, 2.0), tensor(vec![o], -2.0, 2.0))
        })
    ) {
        let inputs = [x.clone(), w.clone(), b.clone()];
        let expected = &naive(&x, &t2(&w)) + &b;
        assert_close(&forward(|v| v[0].linear(v[1], Some(v[2])), &inputs), &expected);
        assert_grad(|v| v[0].linear(v[1], Some(v[2])), &inputs);
        assert_grad(|v| v[0].linear(v[1], None), &[x, w]);
    }

    /// `linear` is `matmul_nt` followed by a broadcast `add`, bit for bit, in the value and in
    /// every gradient (f32, so any change of summation order would show).
    #[test]
    fn linear_has_the_bits_of_matmul_nt_plus_add(
        (x, w, b, g) in (1..=40usize, 1..=300usize, 1..=40usize).prop_flat_map(|(n, i, o)| {
            (tensor(vec![n, i], -2.0, 2.0), tensor(vec![o, i], -2.0, 2.0),
             tensor(vec![o], -2.0, 2.0), tensor(vec![n, o], -2.0, 2.0))
        })
    ) {
        let f32s = |t: &Tensor<f64>| t.mapv(|v| v as f32);
        let run = |fused: bool| {
            let tape = Tape::<f32>::new();
            let (vx, vw, vb) = (tape.leaf(f32s(&x)), tape.leaf(f32s(&w)), tape.leaf(f32s(&b)));
            let y = if fused { vx.linear(vw, Some(vb)) } else { vx.matmul_nt(vw) + vb };
            let bits = |t: &Tensor<f32>| t.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            let value = bits(&y.value());
            let grads = (y * tape.constant(f32s(&g))).sum().backward();
            let wrt = |v| bits(grads.wrt(v).expect("a gradient"));
            (value, wrt(vx), wrt(vw), wrt(vb))
        };
        prop_assert_eq!(run(true), run(false));
    }

    #[test]
    fn grad_bmm(
        (a, b) in (1..=3usize, 1..=5usize, 1..=5usize, 1..=5usize).prop_flat_map(|(batch, m, k, n)| {
            (tensor(vec![batch, m, k], -2.0, 2.0), tensor(vec![batch, k, n], -2.0, 2.0))
        })
    ) {
        let y = forward(|v| v[0].bmm(v[1]), &[a.clone(), b.clone()]);
        prop_assert_eq!(y.shape()[0], a.shape()[0]);
        for i in 0..a.shape()[0] {
            let expected = naive(
                &a.index_axis(Axis(0), i).to_owned(),
                &b.index_axis(Axis(0), i).to_owned(),
            );
            assert_close(&y.index_axis(Axis(0), i).to_owned(), &expected);
        }
        assert_grad(|v| v[0].bmm(v[1]), &[a, b]);
    }

    /// Forward against the triple loop, with each operand stored row-major or transposed in memory
    /// (the GEMM wrapper passes strides through).
    #[test]
    fn matmul_matches_naive_loop(
        (a, b) in matmul_pair(),
        a_col_major in any::<bool>(),
        b_col_major in any::<bool>(),
    ) {
        let expected = naive(&a, &b);
        let store = |x: &Tensor<f64>, col_major: bool| {
            if col_major { t2(&t2(x).as_standard_layout().into_owned()) } else { x.clone() }
        };
        let tape = Tape::<f64>::new();
        let (va, vb) = (tape.leaf(store(&a, a_col_major)), tape.leaf(store(&b, b_col_major)));
        assert_close(&va.matmul(vb).value(), &expected);
    }
}

#[test]
fn matmul_matches_naive_loop_on_edge_sizes() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for (m, k, n) in [
        (1, 1, 1),
        (1, 7, 1),
        (7, 1, 9),
        (1, 9, 13),
        (13, 9, 1),
        (3, 17, 5),
        (33, 20, 17),
    ] {
        let mut random = |r: usize, c: usize| {
            ArrayD::from_shape_simple_fn(IxDyn(&[r, c]), || rng.random_range(-1.0..1.0))
        };
        let (a, b) = (random(m, k), random(k, n));
        let y = forward(|v| v[0].matmul(v[1]), &[a.clone(), b.clone()]);
        assert_eq!(y.shape(), &[m, n]);
        let expected = naive(&a, &b);
        for (y, e) in y.iter().zip(&expected) {
            assert!((y - e).abs() <= 1e-12, "{m}x{k}x{n}: {y} vs {e}");
        }
    }
}

// GEMM thread-count independence. To know a run really split the product, the test counts the
// serial GEMM calls (`serial_calls_on_this_thread`) summed over the pool's threads.

/// `a b` computed by `gemm` inside a rayon pool of `threads` threads, with the number of blocks
/// (serial GEMM calls) it was split into.
fn gemm_in_pool(threads: usize, a: &Array2<f32>, b: &Array2<f32>) -> (Array2<f32>, usize) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let mut c = Array2::<f32>::from_elem((a.nrows(), b.ncols()), f32::NAN);
    let count = || {
        pool.broadcast(|_| serial_calls_on_this_thread())
            .iter()
            .sum::<usize>()
    };
    let before = count();
    pool.install(|| gemm(1.0, a.view(), b.view(), 0.0, c.view_mut()));
    let blocks = count() - before;
    (c, blocks)
}

fn random_f32(rng: &mut ChaCha8Rng, rows: usize, cols: usize) -> Array2<f32> {
    Array2::from_shape_simple_fn((rows, cols), || rng.random_range(-1.0f32..1.0))
}

fn assert_bit_identical(x: &Array2<f32>, y: &Array2<f32>, what: &str) {
    assert_eq!(x.dim(), y.dim());
    let differing = x
        .iter()
        .zip(y)
        .filter(|(p, q)| p.to_bits() != q.to_bits())
        .count();
    assert_eq!(
        differing, 0,
        "{what}: {differing} elements differ in their bits"
    );
}

#[test]
fn gemm_is_bit_identical_across_thread_counts() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    // 300 rows split by rows; 20 rows are too few to split, so that product splits by columns.
    for (m, k, n) in [(300, 200, 500), (20, 300, 2000)] {
        let (a, b) = (random_f32(&mut rng, m, k), random_f32(&mut rng, k, n));
        let (one, blocks_one) = gemm_in_pool(1, &a, &b);
        assert_eq!(
            blocks_one, 1,
            "{m}x{k}x{n}: a 1-thread pool split the product"
        );
        for threads in [2, 4] {
            let (many, blocks) = gemm_in_pool(threads, &a, &b);
            // Otherwise the comparison below would be serial against serial.
            assert!(
                blocks >= 2,
                "{m}x{k}x{n}: a {threads}-thread pool ran the product as {blocks} block(s)"
            );
            assert_bit_identical(&many, &one, &format!("{m}x{k}x{n}, {threads} threads vs 1"));
        }
        // And the common result is the product (f32 accumulation against f64).
        let exact = naive(&a.mapv(f64::from).into_dyn(), &b.mapv(f64::from).into_dyn());
        let worst = one
            .iter()
            .zip(&exact)
            .map(|(&x, &y)| (f64::from(x) - y).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-3, "{m}x{k}x{n}: off the f64 product by {worst}");
    }
}

/// A small output with a long K (a weight gradient) is cut along K into chunks fixed by the
/// shape: the same chunks, and so the same bits, on 1 and 3 threads.
#[test]
fn long_k_gemm_is_split_along_k_and_bit_identical_across_thread_counts() {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let (m, k, n) = (16, 20_000, 144);
    let a = random_f32(&mut rng, m, k);
    // Stored transposed, as a weight gradient's im2col operand.
    let b_t = random_f32(&mut rng, n, k);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let mut c = Array2::<f32>::from_elem((m, n), f32::NAN);
        let count = || {
            pool.broadcast(|_| serial_calls_on_this_thread())
                .iter()
                .sum::<usize>()
        };
        let before = count();
        pool.install(|| gemm(1.0, a.view(), b_t.t(), 0.0, c.view_mut()));
        (c, count() - before)
    };
    let (one, blocks_one) = run(1);
    let (three, blocks_three) = run(3);
    assert!(blocks_one > 1, "K was not split ({blocks_one} block)");
    assert_eq!(
        blocks_one, blocks_three,
        "the K chunks depend on the thread count"
    );
    assert_bit_identical(&three, &one, "16x20000x144, 3 threads vs 1");
    let exact = naive(
        &a.mapv(f64::from).into_dyn(),
        &b_t.t().mapv(f64::from).into_dyn(),
    );
    let worst = one
        .iter()
        .zip(&exact)
        .map(|(&x, &y)| (f64::from(x) - y).abs())
        .fold(0.0, f64::max);
    assert!(worst < 1e-2, "off the f64 product by {worst}");
}

/// The packed kernels on every operand layout and ragged sizes (edge tiles in M and N, K across
/// a packing block), against the f64 product.
#[test]
fn gemm_handles_every_layout_and_ragged_sizes() {
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    for (m, k, n) in [
        (1, 1, 1),
        (7, 3, 5),
        (9, 257, 49),
        (23, 300, 97),
        (130, 40, 17),
    ] {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a = if ta {
                random_f32(&mut rng, k, m)
            } else {
                random_f32(&mut rng, m, k)
            };
            let b = if tb {
                random_f32(&mut rng, n, k)
            } else {
                random_f32(&mut rng, k, n)
            };
            let (av, bv) = (
                if ta { a.t() } else { a.view() },
                if tb { b.t() } else { b.view() },
            );
            // beta = 1 onto a known C, and a transposed C.
            let c0 = random_f32(&mut rng, m, n);
            let mut c = c0.clone();
            gemm(0.5, av, bv, 1.0, c.view_mut());
            let mut ct = c0.t().to_owned();
            gemm(0.5, av, bv, 1.0, ct.view_mut().reversed_axes());
            let exact = naive(
                &av.mapv(f64::from).into_dyn(),
                &bv.mapv(f64::from).into_dyn(),
            );
            for ((&x, &xt), (&e, &c0)) in c.iter().zip(ct.t()).zip(exact.iter().zip(&c0)) {
                let want = 0.5 * e + f64::from(c0);
                assert!(
                    (f64::from(x) - want).abs() < 1e-3,
                    "{m}x{k}x{n} {ta} {tb}: {x} vs {want}"
                );
                assert_eq!(
                    x.to_bits(),
                    xt.to_bits(),
                    "{m}x{k}x{n}: C layout changed the result"
                );
            }
        }
    }
}

/// A bias that does not match the weight's rows is refused, naming the op and both sizes.
#[test]
#[should_panic(expected = "op `linear`: bias of shape [3] for 2 outputs")]
fn linear_refuses_a_bias_of_the_wrong_length() {
    let tape = Tape::<f64>::new();
    let x = tape.leaf(ArrayD::zeros(IxDyn(&[4, 5])));
    let w = tape.leaf(ArrayD::zeros(IxDyn(&[2, 5])));
    let b = tape.leaf(ArrayD::zeros(IxDyn(&[3])));
    x.linear(w, Some(b));
}
