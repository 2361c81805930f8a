//! Matrix products (`src/ops/matmul.rs`, `src/kernels/gemm.rs`): gradient properties on random
//! sizes, the forward against a naive triple loop, and GEMM's bit-identity across thread counts.

#[path = "suite/common.rs"]
mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::{assert_close, assert_grad, forward};
use ndarray::{Array2, ArrayD, Axis, IxDyn};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sparsegrad::check::strategies::tensor;
use sparsegrad::kernels::gemm::gemm;
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

// GEMM thread-count independence. To know a run really split the product, the test counts large
// allocations: matrixmultiply allocates one packing buffer (hundreds of KB here) per call, so the
// count is the number of blocks the product was split into, whichever threads ran them.

const PACKING_MIN_BYTES: usize = 64 * 1024;

thread_local! {
    static BIG_ALLOCS: Cell<usize> = const { Cell::new(0) };
}

struct CountingAlloc;

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= PACKING_MIN_BYTES {
            let _ = BIG_ALLOCS.try_with(|c| c.set(c.get() + 1));
        }
        // SAFETY: forwarded contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// `a b` computed by `gemm` inside a rayon pool of `threads` threads, with the number of blocks
/// (serial GEMM calls) it was split into.
fn gemm_in_pool(threads: usize, a: &Array2<f32>, b: &Array2<f32>) -> (Array2<f32>, usize) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let mut c = Array2::<f32>::from_elem((a.nrows(), b.ncols()), f32::NAN);
    let count = || {
        pool.broadcast(|_| BIG_ALLOCS.with(Cell::get))
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
